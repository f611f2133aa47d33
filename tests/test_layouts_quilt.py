"""Quilt-1M: the lookup CSV with subset filter, splits and pathology labels; bad rows name the line."""

from __future__ import annotations

import csv
import io

import pytest
from pydantic import ValidationError

from unimed_data.layouts import Filtered, Item, ItemError, LayoutError
from unimed_data.layouts.quilt import QuiltLayout, annotation_files, iter_items, parse_pathology

HEADER = [
    "",
    "caption",
    "image_path",
    "subset",
    "split",
    "pathology",
    "roi_text",
    "noisy_text",
    "corrected_text",
    "med_umls_ids",
    "magnification",
    "height",
    "width",
]
ROWS = [  # data rows start at line 2
    [
        "0",
        "Granulomas with giant cells.",
        "img_a.jpg",
        "quilt",
        "train",
        "['Dermatopathology', 'Soft tissue']",
    ],
    ["1", "Benign colonic mucosa.", "img_b.jpg", "openpath", "train", ""],
    ["2", "A tweet image of a melanoma.", "img_c.jpg", "laion", "val", "['Dermatopathology']"],
    ["3", "", "img_d.jpg", "quilt", "train", "[]"],  # line 5: no caption
    ["4", "Renal biopsy.", "img_e.jpg", "quilt", "test", "Renal"],  # line 6: not a list
    ["5", "Liver.", "img_f.jpg", "quilt", "train", "{'a': 1}"],  # line 7: not a list
    ["6", "Bone marrow.", "img_g.jpg", "quilt", "", "[]"],
]


def write(root, header=HEADER, rows=ROWS):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(row + ["x"] * (len(header) - len(row)))
    (root / "quilt_1M_lookup.csv").write_text(buffer.getvalue())
    return root


def layout(**options) -> QuiltLayout:
    return QuiltLayout.model_validate({"type": "quilt", **options})


def test_items_labels_splits_and_errors(tmp_path):
    results = list(iter_items(layout(), write(tmp_path)))
    items = [r for r in results if isinstance(r, Item)]
    errors = [r for r in results if isinstance(r, ItemError)]
    assert [item.source_path for item in items] == [
        "quilt_1m/img_a.jpg",
        "quilt_1m/img_b.jpg",
        "quilt_1m/img_c.jpg",
        "quilt_1m/img_g.jpg",
    ]
    assert [item.item_id for item in items] == [item.source_path for item in items]
    assert items[0].captions == ["Granulomas with giant cells."]
    assert items[0].labels == ["Dermatopathology", "Soft tissue"]
    assert items[1].labels == []
    assert [item.split for item in items] == ["train", "train", "val", None]
    assert items[0].origin == "quilt_1M_lookup.csv:2"
    assert [(e.source_path, e.reason.split(":", 2)[1]) for e in errors] == [
        ("quilt_1m/img_d.jpg", "5"),
        ("quilt_1m/img_e.jpg", "6"),
        ("quilt_1m/img_f.jpg", "7"),
    ]
    assert errors[0].reason == "quilt_1M_lookup.csv:5: no caption in column 'caption'"
    assert errors[1].reason.startswith("quilt_1M_lookup.csv:6: column 'pathology': not a Python list literal")
    assert errors[2].reason.startswith(
        "quilt_1M_lookup.csv:7: column 'pathology': expected a list of strings"
    )


def test_subsets_filter_other_rows(tmp_path):
    results = list(iter_items(layout(subsets=["quilt"]), write(tmp_path)))
    filtered = [r for r in results if isinstance(r, Filtered)]
    items = [r for r in results if isinstance(r, Item)]
    assert [f.item_id for f in filtered] == ["img_b.jpg", "img_c.jpg"]
    assert "openpath" in filtered[0].reason
    assert [item.source_path for item in items] == ["quilt_1m/img_a.jpg", "quilt_1m/img_g.jpg"]
    assert len(results) == len(ROWS)


def test_options_and_optional_columns(tmp_path):
    header = ["caption", "corrected_text", "image_path"]
    rows = [["raw", "Corrected caption.", "a.jpg"]]
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", header, rows)
    options = {"csv": "sub/quilt_1M_lookup.csv", "image_dir": "imgs", "caption_column": "corrected_text"}
    [item] = iter_items(layout(**options), tmp_path)
    assert item == Item(
        item_id="imgs/a.jpg",
        source_path="imgs/a.jpg",
        captions=["Corrected caption."],
        origin="sub/quilt_1M_lookup.csv:2",
    )
    with pytest.raises(LayoutError, match="header lacks column"):
        list(iter_items(layout(subsets=["quilt"], **options), tmp_path))


def test_annotation_files_and_missing_file(tmp_path):
    assert annotation_files(layout(), tmp_path) == [tmp_path / "quilt_1M_lookup.csv"]
    with pytest.raises(LayoutError, match="not found"):
        list(iter_items(layout(), tmp_path))


def test_long_fields_are_read(tmp_path):
    rows = [["0", "x" * 200_000, "a.jpg", "quilt", "train", "[]"]]
    [item] = iter_items(layout(), write(tmp_path, rows=rows))
    assert len(item.captions[0]) == 200_000


def test_parse_pathology():
    assert parse_pathology("") == [] and parse_pathology("nan") == [] and parse_pathology("[]") == []
    assert parse_pathology("['Cytopathology', ' Cytopathology']") == ["Cytopathology"]
    with pytest.raises(ValueError):
        parse_pathology("__import__('os')")
    with pytest.raises(ValueError):
        parse_pathology("[1, 2]")


def test_model_is_strict():
    with pytest.raises(ValidationError):
        layout(captions="caption")
    with pytest.raises(ValidationError):
        layout(subsets=[])
