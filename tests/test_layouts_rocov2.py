"""ROCOv2: caption CSVs joined with optional concept CSVs; bad rows name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from unimed_data.layouts import Item, ItemError, LayoutError
from unimed_data.layouts.rocov2 import Rocov2Layout, annotation_files, iter_items, parse_cuis

TRAIN_CAPTIONS = """ID,Caption
ROCOv2_2023_train_000001,"Head CT demonstrating left parotiditis."
ROCOv2_2023_train_000002,"Acquired renal cysts in end-stage renal failure: 16-year-old girl, with Alport syndrome."
ROCOv2_2023_train_000003,
ROCOv2_2023_train_000004,"Chest X-ray, PA view, showing a ""bulging"" left hilum."
"""
TRAIN_CONCEPTS = """ID,CUIs
ROCOv2_2023_train_000001,C0040405;C0030580
ROCOv2_2023_train_000002,C1306645
ROCOv2_2023_train_000002,C0040405
ROCOv2_2023_train_000003,not-a-cui
"""
VALID_CAPTIONS = """ID,Caption
ROCOv2_2023_valid_000001,"MRI of the brain, axial T2."
"""


def write(root: Path) -> Path:
    (root / "train_captions.csv").write_text(TRAIN_CAPTIONS)
    (root / "train_concepts.csv").write_text(TRAIN_CONCEPTS)
    (root / "valid_captions.csv").write_text(VALID_CAPTIONS)
    (root / "valid_concepts.csv").write_text("ID,CUIs\nROCOv2_2023_valid_000001,C0024485\n")
    return root


def layout(**options) -> Rocov2Layout:
    parts = [
        {
            "captions": "train_captions.csv",
            "concepts": "train_concepts.csv",
            "images": "train",
            "split": "train",
        },
        {
            "captions": "valid_captions.csv",
            "concepts": "valid_concepts.csv",
            "images": "valid",
            "split": "valid",
        },
    ]
    return Rocov2Layout.model_validate({"type": "rocov2", "parts": parts, **options})


def test_captions_become_items_with_image_paths_and_splits(tmp_path):
    results = list(iter_items(layout(), write(tmp_path)))
    items = [r for r in results if isinstance(r, Item)]
    errors = [r for r in results if isinstance(r, ItemError)]
    assert [item.item_id for item in items] == [
        "ROCOv2_2023_train_000001",
        "ROCOv2_2023_train_000002",
        "ROCOv2_2023_train_000004",
        "ROCOv2_2023_valid_000001",
    ]
    assert items[0].source_path == "train/ROCOv2_2023_train_000001.jpg"
    assert items[3].source_path == "valid/ROCOv2_2023_valid_000001.jpg"
    assert items[0].captions == ["Head CT demonstrating left parotiditis."]
    assert items[2].captions == ['Chest X-ray, PA view, showing a "bulging" left hilum.']
    assert [item.split for item in items] == ["train", "train", "train", "valid"]
    assert all(item.labels == [] for item in items)  # concepts off by default: the file is not even read
    assert items[0].origin == "train_captions.csv:2"
    assert len(errors) == 1
    assert errors[0].item_id == "ROCOv2_2023_train_000003"
    assert errors[0].reason.startswith("train_captions.csv:4: no caption")


def test_concepts_become_labels_and_bad_concept_rows_are_errors(tmp_path):
    results = list(iter_items(layout(concepts=True), write(tmp_path)))
    items = {r.item_id: r for r in results if isinstance(r, Item)}
    reasons = [r.reason for r in results if isinstance(r, ItemError)]
    assert items["ROCOv2_2023_train_000001"].labels == ["C0040405", "C0030580"]
    assert items["ROCOv2_2023_train_000002"].labels == ["C1306645"]  # the repeat is dropped
    assert items["ROCOv2_2023_train_000004"].labels == []  # no concepts row: kept, unlabelled
    assert items["ROCOv2_2023_valid_000001"].labels == ["C0024485"]
    assert any(
        r.startswith("train_concepts.csv:4: duplicate id 'ROCOv2_2023_train_000002'")
        and "train_concepts.csv:3" in r
        for r in reasons
    )
    assert any(r.startswith("train_concepts.csv:5: column 'CUIs': malformed CUI") for r in reasons)
    assert any(r.startswith("train_captions.csv:4: no caption") for r in reasons)


def test_concepts_need_a_file_in_every_part():
    with pytest.raises(ValidationError, match="concepts file in every part"):
        Rocov2Layout.model_validate(
            {"type": "rocov2", "concepts": True, "parts": [{"captions": "a.csv", "images": "a"}]}
        )


def test_annotation_files_include_concepts_only_when_used(tmp_path):
    assert annotation_files(layout(), tmp_path) == [
        tmp_path / "train_captions.csv",
        tmp_path / "valid_captions.csv",
    ]
    assert tmp_path / "train_concepts.csv" in annotation_files(layout(concepts=True), tmp_path)


def test_file_level_problems_raise(tmp_path):
    with pytest.raises(LayoutError, match=r"train_captions.csv: annotation file not found"):
        list(iter_items(layout(), tmp_path))
    (tmp_path / "train_captions.csv").write_text("ImageID,Text\nx,y\n")
    with pytest.raises(LayoutError, match="header lacks"):
        list(iter_items(layout(), tmp_path))


def test_layout_rejects_unknown_options_and_escaping_paths():
    with pytest.raises(ValidationError):
        Rocov2Layout.model_validate(
            {"type": "rocov2", "parts": [{"captions": "a.csv", "images": "a"}], "x": 1}
        )
    with pytest.raises(ValidationError):
        Rocov2Layout.model_validate({"type": "rocov2", "parts": [{"captions": "../a.csv", "images": "a"}]})
    with pytest.raises(ValidationError):
        Rocov2Layout.model_validate({"type": "rocov2", "parts": []})


def test_parse_cuis():
    assert parse_cuis(" C0040405 ; C0030580;C0040405 ") == ["C0040405", "C0030580"]
    with pytest.raises(ValueError):
        parse_cuis("")
