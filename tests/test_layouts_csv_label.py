"""CSV with one label column: single and multi-label (NIH ChestX-ray14 style), patient and split columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimed_data.layouts import Item, ItemError, LayoutError, iter_items
from unimed_data.manifest import Manifest

NIH_CSV = """\
Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,Split
00000001_000.png,Cardiomegaly,0,1,58,M,PA,train
00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,train
00000002_000.png,No Finding,0,2,81,M,PA,valid

00000003_000.png,Hernia| Infiltration |Hernia,0,3,74,F,PA,
00000004_000.png,,0,4,82,M,AP,test
../outside.png,Mass,0,5,50,F,PA,test
00000006_000.png,Mass,0,6
"""


def manifest(**layout) -> Manifest:
    base = {"type": "csv_label", "csv": "Data_Entry.csv", "image_column": "Image Index"}
    return Manifest.model_validate(
        {"name": "nih", "modality": "xray", "license": "CC0", "layout": {**base, **layout}}
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "Data_Entry.csv").write_text(NIH_CSV)
    return tmp_path


def test_multi_label_cells_split_on_the_separator(root):
    layout = {
        "label_column": "Finding Labels",
        "multi_label_separator": "|",
        "image_root": "images",
        "patient_column": "Patient ID",
        "split_column": "Split",
    }
    entries = list(iter_items(manifest(**layout), root))
    items = [entry for entry in entries if isinstance(entry, Item)]
    assert [(i.source_path, i.labels, i.patient, i.split) for i in items] == [
        ("images/00000001_000.png", ["Cardiomegaly"], "1", "train"),
        ("images/00000001_001.png", ["Cardiomegaly", "Emphysema"], "1", "train"),
        ("images/00000002_000.png", ["No Finding"], "2", "valid"),
        ("images/00000003_000.png", ["Hernia", "Infiltration"], "3", None),
    ]
    assert items[0].origin == "Data_Entry.csv:2"
    reasons = [entry.reason for entry in entries if isinstance(entry, ItemError)]
    assert reasons == [
        "Data_Entry.csv:7: empty label in column 'Finding Labels'",
        "Data_Entry.csv:8: column 'Image Index': path 'images/../outside.png' leaves the dataset root",
        "Data_Entry.csv:9: expected 8 fields, found 4",
    ]


def test_without_a_separator_the_cell_is_one_label(root):
    items = [e for e in iter_items(manifest(label_column="Finding Labels"), root) if isinstance(e, Item)]
    assert items[1].labels == ["Cardiomegaly|Emphysema"]
    assert items[1].source_path == "00000001_001.png" and items[1].patient is None and items[1].split is None


def test_a_missing_column_is_a_file_level_error_naming_the_file(root):
    with pytest.raises(LayoutError, match=r"Data_Entry.csv: header lacks column\(s\) \['Patient'\]"):
        list(iter_items(manifest(label_column="Finding Labels", patient_column="Patient"), root))


def test_a_missing_csv_is_a_file_level_error(tmp_path):
    with pytest.raises(LayoutError, match=r"Data_Entry\.csv: annotation file not found"):
        list(iter_items(manifest(label_column="Finding Labels"), tmp_path))
