"""PMC-OA: JSON Lines of subfigure captions; bad lines are errors naming file and line."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from unimed_data.layouts import Item, ItemError, LayoutError
from unimed_data.layouts.pmc_oa import DEFAULT_IMAGE_DIR, PmcOaLayout, annotation_files, iter_items

TRAIN = [
    {"image": "PMC212319_Fig3_4.jpg", "caption": "Chest CT of the patient showing bilateral infiltrates."},
    {"image": "PMC212319_Fig3_5.jpg", "caption": "  H&E staining, x400.  ", "alignment_type": "ocr"},
]


def layout(**options) -> PmcOaLayout:
    parts = [{"jsonl": "train.jsonl", "split": "train"}, {"jsonl": "valid.jsonl", "split": "valid"}]
    return PmcOaLayout.model_validate({"type": "pmc_oa", "parts": parts, **options})


def write(root):
    lines = [json.dumps(row) for row in TRAIN]
    lines += [
        '{"image": "PMC1_Fig1_0.jpg", "caption": "truncated',  # line 3: bad JSON
        "",  # line 4: blank, skipped
        json.dumps({"image": "PMC1_Fig2_0.jpg"}),  # line 5: no caption
        json.dumps({"image": "PMC1_Fig2_1.jpg", "caption": ["a", "b"]}),  # line 6: not a string
        json.dumps({"image": "../escape.jpg", "caption": "x"}),  # line 7: leaves the root
        json.dumps(["not", "an", "object"]),  # line 8
    ]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "valid.jsonl").write_text(
        json.dumps({"image": "PMC9_Fig1_0.jpg", "caption": "Fundus photo."}) + "\n"
    )
    return root


def test_items_and_errors(tmp_path):
    results = list(iter_items(layout(), write(tmp_path)))
    items = [r for r in results if isinstance(r, Item)]
    errors = [r for r in results if isinstance(r, ItemError)]
    assert [item.source_path for item in items] == [
        f"{DEFAULT_IMAGE_DIR}/PMC212319_Fig3_4.jpg",
        f"{DEFAULT_IMAGE_DIR}/PMC212319_Fig3_5.jpg",
        f"{DEFAULT_IMAGE_DIR}/PMC9_Fig1_0.jpg",
    ]
    assert [item.item_id for item in items] == [item.source_path for item in items]
    assert [item.captions for item in items] == [
        ["Chest CT of the patient showing bilateral infiltrates."],
        ["H&E staining, x400."],
        ["Fundus photo."],
    ]
    assert [item.split for item in items] == ["train", "train", "valid"]
    assert [item.origin for item in items] == ["train.jsonl:1", "train.jsonl:2", "valid.jsonl:1"]
    reasons = [error.reason for error in errors]
    assert reasons[0].startswith("train.jsonl:3: invalid JSON")
    assert reasons[1] == "train.jsonl:5: key 'caption': missing"
    assert errors[1].source_path == f"{DEFAULT_IMAGE_DIR}/PMC1_Fig2_0.jpg"
    assert reasons[2] == "train.jsonl:6: key 'caption': not a string (list)"
    assert reasons[3].startswith("train.jsonl:7: key 'image':") and "leaves the dataset root" in reasons[3]
    assert reasons[4] == "train.jsonl:8: expected a JSON object"
    assert len(errors) == 5


def test_image_dir_option(tmp_path):
    write(tmp_path)
    items = [r for r in iter_items(layout(image_dir="images"), tmp_path) if isinstance(r, Item)]
    assert items[0].source_path == "images/PMC212319_Fig3_4.jpg"
    items = [r for r in iter_items(layout(image_dir=""), tmp_path) if isinstance(r, Item)]
    assert items[0].source_path == "PMC212319_Fig3_4.jpg"


def test_annotation_files_and_missing_file(tmp_path):
    assert annotation_files(layout(), tmp_path) == [tmp_path / "train.jsonl", tmp_path / "valid.jsonl"]
    with pytest.raises(LayoutError, match=r"train.jsonl: annotation file not found"):
        list(iter_items(layout(), tmp_path))


def test_model_is_strict():
    with pytest.raises(ValidationError):
        PmcOaLayout.model_validate({"type": "pmc_oa", "parts": [{"jsonl": "a.jsonl", "caption": "x"}]})
    with pytest.raises(ValidationError):
        PmcOaLayout.model_validate({"type": "pmc_oa", "parts": []})
