"""Caption sets: the real BIOMEDICA demo (JSONL + metadata) and CSV tables; modality from metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unimed_data.layouts import Item, ItemError, LayoutError, iter_items
from unimed_data.layouts.captions import modality_from_biomedica
from unimed_data.manifest import Manifest

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "biomedica_demo"
needs_demo = pytest.mark.skipif(not DEMO.is_dir(), reason=f"shared data not found at {DEMO}")

# What each demo item's metadata says (image_secondary_label), and the modality it must map to.
DEMO_MODALITIES = {
    "0bcdd7a0c550435199be58616ab62b4d": "ct",  # computerized tomography
    "0c04d8aba59b416d892fb3ef8f3c5a83": "endoscopy",  # endoscopy
    "0d2177e46e9b4d8cb1283ff797c778ed": "pathology",  # light microscopy, immunohistochemistry, plot
    "0e1a56dccd7f4415b0de7edfaadde784": "pathology",
    "0f9c4de0bf724d48a6b8bb78b870f4ce": "pathology",
    "1b18efbe726a4f40898c87cd7d837f52": "pathology",
    "0f8162faa3c949a5a00a6b1b4af96c82": None,  # intraoral imaging: not one of ours
    "01b560dd5d86492ea58c7c7c8777f6cc": None,  # surgical procedure
}


def manifest(**layout) -> Manifest:
    return Manifest.model_validate(
        {"name": "captions", "modality": "other", "license": "MIT", "layout": {"type": "captions", **layout}}
    )


BIOMEDICA_LAYOUT = {
    "table": "meta.jsonl",
    "image_column": "imgpath",
    "caption_column": "txt",
    "id_column": "id",
    "metadata_column": "metapath",
    "modality_from_metadata": True,
}


@needs_demo
def test_biomedica_demo_items_keep_original_captions_and_take_modality_from_metadata():
    lines = [json.loads(line) for line in (DEMO / "meta.jsonl").read_text().splitlines()]
    items = list(iter_items(manifest(**BIOMEDICA_LAYOUT), DEMO))
    assert len(items) == 8 and all(isinstance(item, Item) for item in items)
    assert [item.item_id for item in items] == [line["id"] for line in lines]
    assert [item.captions for item in items] == [[line["txt"]] for line in lines]
    assert [item.source_path for item in items] == [line["imgpath"] for line in lines]
    assert {item.item_id: item.modality for item in items} == DEMO_MODALITIES
    assert all(item.labels == [] and item.patient is None for item in items)


@needs_demo
def test_without_modality_from_metadata_no_metadata_is_read():
    layout = {key: value for key, value in BIOMEDICA_LAYOUT.items() if key != "modality_from_metadata"}
    assert {item.modality for item in iter_items(manifest(**layout), DEMO)} == {None}


def test_biomedica_label_mapping_prefers_the_specific_secondary_label():
    assert (
        modality_from_biomedica(
            {"image_primary_label": ["Clinical Imaging"], "image_secondary_label": ["x-ray radiography"]}
        )
        == "xray"
    )
    assert (
        modality_from_biomedica({"image_primary_label": "Histopathology", "image_secondary_label": []})
        == "pathology"
    )
    assert modality_from_biomedica({"image_secondary_label": ["Fundus Photography"]}) == "fundus"
    assert modality_from_biomedica({"image_secondary_label": ["chart"]}) is None
    assert modality_from_biomedica({}) is None


def test_jsonl_rows_with_problems_are_errors_naming_the_line(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "a.json").write_text(json.dumps({"image_secondary_label": ["ultrasound"]}))
    rows = [
        {
            "id": 1,
            "img": "a.jpg",
            "caps": ["A first caption.", "  ", "A second caption.", "A first caption."],
            "meta": "meta/a.json",
        },
        {"id": 2, "img": "b.jpg", "caps": "", "meta": "meta/a.json"},
        {"id": 3, "img": "c.jpg", "caps": "C.", "meta": "meta/missing.json"},
        {"id": 4, "caps": "D.", "meta": "meta/a.json"},
        {"id": 5, "img": "e.jpg", "caps": [1, 2], "meta": "meta/a.json"},
    ]
    text = "\n".join(json.dumps(row) for row in rows) + "\n{not json\n[1, 2]\n"
    (tmp_path / "pairs.jsonl").write_text(text)
    layout = {
        "table": "pairs.jsonl",
        "image_column": "img",
        "caption_column": "caps",
        "id_column": "id",
        "metadata_column": "meta",
        "modality_from_metadata": True,
    }
    entries = list(iter_items(manifest(**layout), tmp_path))
    assert entries[0] == Item(
        "1",
        "a.jpg",
        captions=["A first caption.", "A second caption."],
        modality="ultrasound",
        origin="pairs.jsonl:1",
    )
    errors = entries[1:]
    assert all(isinstance(error, ItemError) for error in errors)
    assert [error.item_id for error in errors] == ["2", "3", "4", "5", None, None]
    reasons = [error.reason for error in errors]
    assert reasons[0] == "pairs.jsonl:2: no caption in column 'caps'"
    assert reasons[1].startswith("pairs.jsonl:3: metadata 'meta/missing.json': ")
    assert reasons[2] == "pairs.jsonl:4: no image in column 'img'"
    assert reasons[3] == "pairs.jsonl:5: expected a caption string or a list of strings"
    assert reasons[4].startswith("pairs.jsonl:6: invalid JSON")
    assert reasons[5] == "pairs.jsonl:7: expected a JSON object"


def test_csv_caption_tables_default_the_id_to_the_image_path(tmp_path):
    (tmp_path / "roco.csv").write_text('image,caption\nimages/x.png,"Axial CT, contrast."\nimages/y.png,\n')
    entries = list(
        iter_items(manifest(table="roco.csv", image_column="image", caption_column="caption"), tmp_path)
    )
    assert entries[0] == Item(
        "images/x.png", "images/x.png", captions=["Axial CT, contrast."], origin="roco.csv:2"
    )
    assert entries[1] == ItemError("images/y.png", None, "roco.csv:3: no caption in column 'caption'")


def test_csv_caption_table_must_have_the_configured_columns(tmp_path):
    (tmp_path / "roco.csv").write_text("image,text\na.png,A.\n")
    with pytest.raises(LayoutError, match=r"roco.csv: header lacks column\(s\) \['caption'\]"):
        list(iter_items(manifest(table="roco.csv", image_column="image", caption_column="caption"), tmp_path))
