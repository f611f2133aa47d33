"""LLaVA-Med: alignment and instruct JSON arrays; captions from gpt turns or fig_caption."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from unimed_data.layouts import Item, ItemError, LayoutError
from unimed_data.layouts.llava_med import LlavaMedLayout, annotation_files, iter_items


def turns(caption: str) -> list[dict]:
    return [
        {"from": "human", "value": "<image>\nDescribe the image concisely."},
        {"from": "gpt", "value": caption},
        {"from": "human", "value": "More?"},
        {"from": "gpt", "value": "Second answer."},
    ]


ALIGNMENT = [
    {"id": "PMC1_Fig1", "image": "PMC1/PMC1_Fig1.jpg", "conversations": turns("CT scan of the abdomen.")},
    {"id": "PMC1_Fig2", "image": "PMC1/PMC1_Fig2.jpg", "conversations": turns("<image>\n Axial MRI. ")},
    {"id": "PMC1_Fig1", "image": "PMC1/PMC1_Fig1b.jpg", "conversations": turns("Repeated id.")},
    {"id": "PMC2_Fig1", "image": "PMC2/PMC2_Fig1.jpg", "conversations": [{"from": "human", "value": "?"}]},
    {"id": "PMC2_Fig2", "conversations": turns("No image.")},
    {"id": "PMC2_Fig3", "image": "PMC2/PMC2_Fig3.jpg", "conversations": turns("<image>")},
    "not an object",
]

INSTRUCT = [
    {
        "id": "a1",
        "pair_id": "PMC3_F1",
        "image": "PMC3_F1.jpg",
        "fig_caption": "Histology of the lesion (H&E, x200).",
        "conversations": turns("The image shows a lesion."),
    },
    {
        "id": "a2",
        "pair_id": "PMC3_F2",
        "image": "PMC3_F2.jpg",
        "fig_label": "Figure 2",
        "conversations": turns("An ultrasound of the thyroid."),
    },
    {"id": "a3", "pair_id": "PMC3_F3", "image": "PMC3_F3.jpg", "fig_caption": " ", "conversations": "bad"},
]


def write(path, entries):
    # One entry per line after the opening bracket, like the released files: entry k starts on line k + 1.
    path.write_text("[\n" + ",\n".join(json.dumps(entry) for entry in entries) + "\n]\n")


def layout(**options) -> LlavaMedLayout:
    return LlavaMedLayout.model_validate({"type": "llava_med", **options})


def test_alignment_items_and_errors(tmp_path):
    write(tmp_path / "llava_med_alignment_500k.json", ALIGNMENT)
    results = list(iter_items(layout(json="llava_med_alignment_500k.json", image_dir="images"), tmp_path))
    items = [r for r in results if isinstance(r, Item)]
    errors = [r for r in results if isinstance(r, ItemError)]
    assert [item.item_id for item in items] == ["PMC1_Fig1", "PMC1_Fig2"]
    assert [item.source_path for item in items] == ["images/PMC1/PMC1_Fig1.jpg", "images/PMC1/PMC1_Fig2.jpg"]
    assert [item.captions for item in items] == [["CT scan of the abdomen."], ["Axial MRI."]]
    assert [item.origin for item in items] == [
        "llava_med_alignment_500k.json:2",
        "llava_med_alignment_500k.json:3",
    ]
    assert all(item.split is None and item.labels == [] for item in items)
    reasons = [error.reason for error in errors]
    assert reasons == [
        "llava_med_alignment_500k.json:4: duplicate id 'PMC1_Fig1', first at llava_med_alignment_500k.json:2",
        "llava_med_alignment_500k.json:5: no gpt turn in 'conversations'",
        "llava_med_alignment_500k.json:6: no image path in key 'image'",
        "llava_med_alignment_500k.json:7: empty caption",
        "llava_med_alignment_500k.json:8: expected a JSON object",
    ]
    assert errors[0].item_id == "PMC1_Fig1" and errors[0].source_path == "images/PMC1/PMC1_Fig1b.jpg"


def test_instruct_prefers_fig_caption(tmp_path):
    write(tmp_path / "llava_med_instruct_fig_captions.json", INSTRUCT)
    options = {"json": "llava_med_instruct_fig_captions.json", "mode": "instruct"}
    results = list(iter_items(layout(**options), tmp_path))
    items = [r for r in results if isinstance(r, Item)]
    assert [item.captions for item in items] == [
        ["Histology of the lesion (H&E, x200)."],
        ["An ultrasound of the thyroid."],
    ]
    assert [item.source_path for item in items] == ["PMC3_F1.jpg", "PMC3_F2.jpg"]
    [error] = [r for r in results if isinstance(r, ItemError)]
    assert error.reason == "llava_med_instruct_fig_captions.json:4: key 'conversations' is not a list"
    # alignment mode ignores fig_caption
    items = [r for r in iter_items(layout(json=options["json"]), tmp_path) if isinstance(r, Item)]
    assert items[0].captions == ["The image shows a lesion."]


def test_compact_array_and_empty_array(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ALIGNMENT[:2]))
    items = list(iter_items(layout(json="a.json"), tmp_path))
    assert [item.origin for item in items] == ["a.json:1", "a.json:1"]
    (tmp_path / "b.json").write_text(" [ ] \n")
    assert list(iter_items(layout(json="b.json"), tmp_path)) == []


def test_file_level_problems_raise(tmp_path):
    with pytest.raises(LayoutError, match="not found"):
        list(iter_items(layout(json="missing.json"), tmp_path))
    (tmp_path / "obj.json").write_text('{"id": 1}')
    with pytest.raises(LayoutError, match="expected a JSON array"):
        list(iter_items(layout(json="obj.json"), tmp_path))
    text = "[\n" + json.dumps(ALIGNMENT[0]) + ",\n" + '{"id": "x", "image": \n' + "]\n"
    (tmp_path / "broken.json").write_text(text)
    results = iter_items(layout(json="broken.json"), tmp_path)
    assert isinstance(next(results), Item)  # entries before the break still stream out
    with pytest.raises(LayoutError, match=r"broken.json:4: invalid JSON"):
        next(results)
    (tmp_path / "trailing.json").write_text("[]\n[]")
    with pytest.raises(LayoutError, match="after the JSON array"):
        list(iter_items(layout(json="trailing.json"), tmp_path))
    (tmp_path / "nocomma.json").write_text('[\n{"id": "a"}\n{"id": "b"}]')
    with pytest.raises(LayoutError, match=r"nocomma.json:2: expected ','"):
        list(iter_items(layout(json="nocomma.json"), tmp_path))


def test_model_fields(tmp_path):
    model = layout(json="x.json")
    assert model.json_file == "x.json" and model.mode == "alignment" and model.image_dir == ""
    assert annotation_files(model, tmp_path) == [tmp_path / "x.json"]
    dumped = model.model_dump(mode="json")  # ingest records the manifest this way; it must round-trip
    assert dumped["json"] == "x.json" and LlavaMedLayout.model_validate(dumped) == model
    with pytest.raises(ValidationError):
        layout(json="x.json", mode="chat")
    with pytest.raises(ValidationError):
        layout(json="x.json", extra=1)
    with pytest.raises(ValidationError):
        layout(json="../x.json")


# UniMed's llava_med_instruct_fig_captions.json: an object whose values are lists of LLaVA-Med's
# figure records; no `image` key (the image is `<pair_id>.jpg`), inline mentions as token lists.
UNIMED_INSTRUCT = {
    "PMC100": [
        {
            "pair_id": "PMC100_F1",
            "pmcid": "PMC100",
            "fig_label": "Figure 1",
            "fig_caption": "Axial CT showing a hepatic mass.",
            "in_text_mention": [
                {"tokens": "CT revealed a mass in the liver (Figure 1)."},
                {"tokens": "Later."},
            ],
        },
        {"pair_id": "PMC100_F2", "fig_caption": "Chest X-ray.", "in_text_mention": None},
    ],
    "PMC200": [
        {"pair_id": "PMC200_F1", "fig_caption": None, "in_text_mention": [{"tokens": " Biopsy (Fig. 1). "}]},
        {"pair_id": "PMC100_F1", "fig_caption": "Listed again.", "in_text_mention": None},
        {"pair_id": "PMC200_F2", "fig_caption": " ", "in_text_mention": None},
        {"pair_id": "PMC200_F3", "fig_caption": "x", "in_text_mention": "not a list"},
        {"fig_caption": "No pair id."},
    ],
}


def write_grouped(path, groups: dict) -> None:
    """Like the released file: one entry per line inside each key's array."""
    parts = [
        f"{json.dumps(key)}: [\n" + ",\n".join(json.dumps(entry) for entry in entries) + "\n]"
        for key, entries in groups.items()
    ]
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n")


def test_unimed_instruct_object_of_lists_gives_one_item_per_figure(tmp_path):
    write_grouped(tmp_path / "llava_med_instruct_fig_captions.json", UNIMED_INSTRUCT)
    options = {"json": "llava_med_instruct_fig_captions.json", "mode": "instruct", "image_dir": "images"}
    results = list(iter_items(layout(**options, caption_source="unimed"), tmp_path))
    items = [r for r in results if isinstance(r, Item)]
    assert [(item.item_id, item.captions) for item in items] == [
        (
            "images/PMC100_F1.jpg",
            ["Axial CT showing a hepatic mass.", "CT revealed a mass in the liver (Figure 1)."],
        ),
        ("images/PMC100_F2.jpg", ["Chest X-ray."]),
        ("images/PMC200_F1.jpg", ["Biopsy (Fig. 1)."]),
    ]
    assert [item.origin for item in items] == [
        "llava_med_instruct_fig_captions.json:3",
        "llava_med_instruct_fig_captions.json:4",
        "llava_med_instruct_fig_captions.json:7",
    ]
    assert {item.caption_source for item in items} == {"unimed"}
    assert [r.reason for r in results if isinstance(r, ItemError)] == [
        "llava_med_instruct_fig_captions.json:8: duplicate pair_id 'PMC100_F1', "
        "first at llava_med_instruct_fig_captions.json:3",
        "llava_med_instruct_fig_captions.json:9: no caption in 'fig_caption', 'in_text_mention' or 'conversations'",
        "llava_med_instruct_fig_captions.json:10: key 'in_text_mention' is not a list of objects",
        "llava_med_instruct_fig_captions.json:11: no image path in key 'image' or 'pair_id'",
    ]
    assert len(results) == sum(len(entries) for entries in UNIMED_INSTRUCT.values())
    # without the option the captions stay `original` (the Item default)
    assert next(iter(iter_items(layout(**options), tmp_path))).caption_source is None


def test_unimed_instruct_object_problems_are_layout_errors(tmp_path):
    options = {"mode": "instruct"}
    (tmp_path / "a.json").write_text('{"PMC1": {"pair_id": "x"}}')
    with pytest.raises(LayoutError, match="key 'PMC1': expected a JSON array"):
        list(iter_items(layout(json="a.json", **options), tmp_path))
    (tmp_path / "b.json").write_text('{\n"PMC1": [{"pair_id": "x", "fig_caption": "c"}]\n"PMC2": []}')
    results = iter_items(layout(json="b.json", **options), tmp_path)
    assert isinstance(next(results), Item)
    with pytest.raises(LayoutError, match=r"b\.json:2: expected ',' or '}'"):
        next(results)
    (tmp_path / "c.json").write_text('{"PMC1": [], "PMC2": []} []')
    with pytest.raises(LayoutError, match="after the JSON object"):
        list(iter_items(layout(json="c.json", **options), tmp_path))
    (tmp_path / "d.json").write_text('{"PMC1": [], 7: []}')
    with pytest.raises(LayoutError, match="expected a quoted key"):
        list(iter_items(layout(json="d.json", **options), tmp_path))
    (tmp_path / "e.json").write_text(" { } ")
    assert list(iter_items(layout(json="e.json", **options), tmp_path)) == []


def test_unimed_filtered_alignment_file_reads_as_alignment(tmp_path):
    """llava_med_alignment_500k_filtered.json: an array of two-turn conversations, as released."""
    entries = [
        {
            "id": "PMC4_Fig2",
            "image": "PMC4/PMC4_Fig2.jpg",
            "conversations": [
                {"from": "human", "value": "Describe the image concisely.\n<image>"},
                {"from": "gpt", "value": "\n\nH&E stain of the tumour at x40.\n"},
            ],
        }
    ]
    (tmp_path / "llava_med_alignment_500k_filtered.json").write_text(json.dumps(entries, indent=4))
    options = {
        "json": "llava_med_alignment_500k_filtered.json",
        "image_dir": "images",
        "caption_source": "unimed",
    }
    [item] = iter_items(layout(**options), tmp_path)
    assert item == Item(
        item_id="PMC4_Fig2",
        source_path="images/PMC4/PMC4_Fig2.jpg",
        captions=["H&E stain of the tumour at x40."],
        caption_source="unimed",
        origin="llava_med_alignment_500k_filtered.json:2",
    )
    (tmp_path / "grouped.json").write_text(json.dumps({"k": entries}))
    with pytest.raises(LayoutError, match=r"expected a JSON array of entries$"):
        list(iter_items(layout(json="grouped.json"), tmp_path))  # the object shape is an instruct file
