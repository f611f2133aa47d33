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


def _nih_lists(root: Path, train: list[str], test: list[str]) -> dict:
    (root / "train_val_list.txt").write_text("\n".join(train) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return {
        "label_column": "Finding Labels",
        "multi_label_separator": "|",
        "split_lists": {"train": "train_val_list.txt", "test": "test_list.txt"},
    }


def test_split_lists_give_each_image_its_split_and_filter_unlisted_ones(root):
    (root / "Data_Entry.csv").write_text(NIH_CSV.split("\n00000004")[0] + "\n")
    layout = _nih_lists(
        root, ["00000001_000.png", "00000001_001.png"], ["00000002_000.png", "00000001_001.png"]
    )
    entries = list(iter_items(manifest(**layout), root))
    assert [(type(e).__name__, e.item_id) for e in entries] == [
        ("Item", "00000001_000.png"),
        ("ItemError", "00000001_001.png"),
        ("Item", "00000002_000.png"),
        ("Filtered", "00000003_000.png"),
    ]
    assert [e.split for e in entries if isinstance(e, Item)] == [
        "train",
        "test",
    ]  # the CSV's Split column is not read
    assert entries[1].reason == "Data_Entry.csv:3: 00000001_001.png is in lists ['train', 'test']"


def test_a_listed_image_missing_from_the_csv_stops_the_dataset(root):
    (root / "Data_Entry.csv").write_text(NIH_CSV.split("\n00000002")[0] + "\n")
    layout = _nih_lists(root, ["00000001_000.png", "00000001_001.png"], ["00000099_000.png"])
    with pytest.raises(LayoutError, match=r"split lists name 1 image\(s\) not in column 'Image Index'"):
        list(iter_items(manifest(**layout), root))
    (root / "test_list.txt").unlink()
    with pytest.raises(LayoutError, match=r"test_list\.txt: annotation file not found"):
        list(iter_items(manifest(**layout), root))


def test_a_listed_image_with_a_bad_row_is_that_rows_error_not_a_missing_image(root):
    (root / "Data_Entry.csv").write_text(NIH_CSV.split("\n../outside")[0] + "\n")
    layout = _nih_lists(root, ["00000001_000.png"], ["00000004_000.png"])  # 00000004 has no label
    entries = list(iter_items(manifest(**layout), root))
    errors = [e for e in entries if isinstance(e, ItemError)]
    assert [e.item_id for e in errors] == ["00000004_000.png"]


def test_the_nih_eval_view_reads_the_source_folder_with_the_official_lists():
    from unimed_data.manifest import find_manifest, load_manifest

    view, source = (
        load_manifest(find_manifest(name)) for name in ("nih-chestxray14-eval", "nih-chestxray14")
    )
    assert view.root == source.name and view.role == "eval" and view.split.by == "column"
    assert view.layout.split_lists == {"train": "train_val_list.txt", "test": "test_list.txt"}
    assert view.layout.model_dump(exclude={"split_lists"}) == source.layout.model_dump(
        exclude={"split_lists"}
    )
    assert view.classes == source.classes


def test_split_column_and_split_lists_exclude_each_other():
    with pytest.raises(ValueError, match="give split_column or split_lists, not both"):
        manifest(label_column="Finding Labels", split_column="Split", split_lists={"test": "test_list.txt"})
