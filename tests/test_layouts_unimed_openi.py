"""UniMed's OpenI files: filter_cap.json annotations paired by position with the refined captions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import layout_manifest
from unimed_data.layouts import Item, ItemError, LayoutError, annotation_files, iter_items
from unimed_data.manifest import Manifest

ANNOTATIONS = [
    {"image_id": "CXR1_1_IM-0001-3001", "caption": "The heart is normal in size. The lungs are clear."},
    {"image_id": "CXR2_1_IM-0652-1001", "caption": "Borderline cardiomegaly. "},
]
REFINED = [
    ["Normal heart size.", "Clear lungs.", " "],
    ["Borderline enlargement of the cardiac silhouette."],
]


def write(root: Path, annotations: list, refined: list) -> None:
    (root / "filter_cap.json").write_text(json.dumps({"annotations": annotations}))
    (root / "openai_refined_concepts.json").write_text(json.dumps({"refined_captions": refined}))


def manifest(**layout) -> Manifest:
    return layout_manifest("openi", "xray", type="unimed_openi", **layout)


@pytest.mark.parametrize(
    ("captions", "expected"),
    [
        (
            "both",
            [
                [ANNOTATIONS[0]["caption"], "Normal heart size.", "Clear lungs."],
                ["Borderline cardiomegaly.", *REFINED[1]],
            ],
        ),
        ("original", [[ANNOTATIONS[0]["caption"]], ["Borderline cardiomegaly."]]),
        ("refined", [["Normal heart size.", "Clear lungs."], REFINED[1]]),
    ],
)
def test_entries_pair_by_position_and_keep_the_original_as_report(tmp_path, captions, expected):
    write(tmp_path, ANNOTATIONS, REFINED)
    entries = list(iter_items(manifest(captions=captions), tmp_path))
    assert all(isinstance(entry, Item) for entry in entries)
    assert [entry.captions for entry in entries] == expected
    assert [entry.report for entry in entries] == [ANNOTATIONS[0]["caption"], "Borderline cardiomegaly."]
    assert [entry.source_path for entry in entries] == [
        "image/CXR1_1_IM-0001-3001.png",
        "image/CXR2_1_IM-0652-1001.png",
    ]
    assert {entry.caption_source for entry in entries} == {"unimed"}
    assert entries[1].origin == "filter_cap.json: entry 1"


def test_lists_of_different_lengths_stop_the_dataset(tmp_path):
    write(tmp_path, ANNOTATIONS, REFINED[:1])
    with pytest.raises(LayoutError) as caught:
        list(iter_items(manifest(), tmp_path))
    message = str(caught.value)
    assert "filter_cap.json has 2 annotations" in message
    assert "openai_refined_concepts.json has 1 refined caption lists" in message


def test_bad_entries_are_errors_naming_file_and_index(tmp_path):
    annotations = [
        {"caption": "No image id."},
        {"image_id": "CXR3", "caption": 7},
        {"image_id": "CXR4", "caption": "Fine."},
        {"image_id": "CXR5", "caption": "  "},
        {"image_id": "../CXR6", "caption": "Escapes."},
        "not an object",
        {"image_id": "CXR7", "caption": "Kept."},
    ]
    refined = [["a"], ["b"], "not a list", [], ["c"], ["d"], [1]]
    write(tmp_path, annotations, refined)
    entries = list(iter_items(manifest(), tmp_path))
    assert len(entries) == len(annotations) and not any(isinstance(entry, Item) for entry in entries)
    assert [entry.reason for entry in entries] == [
        "filter_cap.json: entry 0: no image id in key 'image_id'",
        "filter_cap.json: entry 1: key 'caption' is not a string",
        "openai_refined_concepts.json: entry 2: expected a list of strings",
        "filter_cap.json: entry 3: no caption",
        "filter_cap.json: entry 4: path '../CXR6.png' leaves the dataset root",
        "filter_cap.json: entry 5: expected a JSON object",
        "openai_refined_concepts.json: entry 6: expected a list of strings",
    ]
    assert all(isinstance(entry, ItemError) for entry in entries)


def test_images_in_the_annotation_folder_are_found(tmp_path):
    write(tmp_path, ANNOTATIONS[:1], REFINED[:1])
    (tmp_path / "CXR1_1_IM-0001-3001.png").write_bytes(b"png")
    [entry] = iter_items(manifest(), tmp_path)
    assert entry.source_path == "CXR1_1_IM-0001-3001.png"


@pytest.mark.parametrize(
    ("filter_cap", "message"),
    [
        ("{", r"filter_cap.json:1: invalid JSON"),
        ('{"images": []}', "expected a JSON object with a list under 'annotations'"),
        ("[]", "expected a JSON object with a list under 'annotations'"),
    ],
)
def test_unreadable_files_are_layout_errors(tmp_path, filter_cap, message):
    write(tmp_path, [], [])
    (tmp_path / "filter_cap.json").write_text(filter_cap)
    with pytest.raises(LayoutError, match=message):
        list(iter_items(manifest(), tmp_path))


def test_model_options(tmp_path):
    model = manifest(annotations="ann/filter_cap.json")
    layout = model.layout
    assert (layout.refined, layout.image_dir, layout.captions) == (
        "openai_refined_concepts.json",
        "image",
        "both",
    )
    assert annotation_files(model, tmp_path) == [
        tmp_path / "ann" / "filter_cap.json",
        tmp_path / "openai_refined_concepts.json",
    ]
    with pytest.raises(LayoutError, match="not found"):
        list(iter_items(model, tmp_path))
    with pytest.raises(ValidationError):
        manifest(captions="all")
