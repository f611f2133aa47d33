"""Folder-per-class trees: class = parent folder; sorted; hidden and non-image files skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from tests.conftest import run_cli
from unimed_data.layouts import Item, ItemError, LayoutError, iter_items
from unimed_data.manifest import Manifest

CT_SMALL = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"


def manifest(**layout) -> Manifest:
    return Manifest.model_validate(
        {"name": "tree", "modality": "ct", "license": "MIT", "layout": {"type": "folder", **layout}}
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    files = {
        "images/pneumonia/b.png": b"png",
        "images/pneumonia/a.jpeg": b"jpeg",
        "images/normal/C.JPG": b"jpg",
        "images/normal/scan.tif": b"tif",
        "images/normal/.hidden.png": b"hidden file",
        "images/.cache/x.png": b"hidden folder",
        "images/normal/notes.txt": b"not an image",
        "images/normal/README": b"an extension-less file that is not DICOM" * 10,
        "images/normal/deeper/d.bmp": b"bmp",
        "images/stray.png": b"no class folder",
    }
    for relpath, data in files.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    (root / "images/ct").mkdir()
    shutil.copyfile(CT_SMALL, root / "images/ct/IM000001")  # real DICOM without an extension
    return root


def test_classes_come_from_parent_folders_in_sorted_order(tree):
    entries = list(iter_items(manifest(path="images"), tree))
    items = [entry for entry in entries if isinstance(entry, Item)]
    assert [(item.source_path, item.labels) for item in items] == [
        ("images/ct/IM000001", ["ct"]),
        ("images/normal/C.JPG", ["normal"]),
        ("images/normal/deeper/d.bmp", ["deeper"]),
        ("images/normal/scan.tif", ["normal"]),
        ("images/pneumonia/a.jpeg", ["pneumonia"]),
        ("images/pneumonia/b.png", ["pneumonia"]),
    ]
    assert all(item.item_id == item.source_path and item.patient is None for item in items)


def test_an_image_outside_any_class_folder_is_an_error(tree):
    errors = [entry for entry in iter_items(manifest(path="images"), tree) if isinstance(entry, ItemError)]
    assert errors == [
        ItemError(
            "images/stray.png", "images/stray.png", "images/stray.png: image is not inside a class folder"
        )
    ]


def test_extensions_are_configurable_and_case_insensitive(tree):
    items = list(iter_items(manifest(path="images", extensions=["PNG", ".tif"]), tree))
    paths = [entry.source_path for entry in items]
    assert paths == [
        "images/ct/IM000001",
        "images/normal/scan.tif",
        "images/pneumonia/b.png",
        "images/stray.png",
    ]


def test_the_dataset_root_itself_is_the_default_tree(tree):
    items = list(iter_items(manifest(), tree / "images"))
    assert [entry.source_path for entry in items][:2] == ["ct/IM000001", "normal/C.JPG"]


def test_a_missing_folder_is_a_file_level_error(tmp_path):
    with pytest.raises(LayoutError, match="images: image folder not found"):
        list(iter_items(manifest(path="images"), tmp_path))


def _touch(root: Path, *relpaths: str) -> None:
    for relpath in relpaths:
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(b"img")


def _entries(entries) -> list[tuple]:
    return [
        (type(e).__name__, e.item_id, e.labels, e.split)
        if isinstance(e, Item)
        else (type(e).__name__, e.item_id)
        for e in entries
    ]


def test_tree_reads_split_and_class_folders_and_filters_the_rest(tmp_path):
    """Kaggle's chest-xray-pneumonia: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/, plus a nested copy."""
    _touch(
        tmp_path,
        "chest_xray/train/NORMAL/IM-0115-0001.jpeg",
        "chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg",
        "chest_xray/test/PNEUMONIA/person100_bacteria_475.jpeg",
        "chest_xray/chest_xray/train/NORMAL/IM-0115-0001.jpeg",
        "chest_xray/stray.jpeg",
    )
    entries = list(iter_items(manifest(path="chest_xray", tree="{split}/{class}"), tmp_path))
    assert _entries(entries) == [
        ("Filtered", "chest_xray/chest_xray/train/NORMAL/IM-0115-0001.jpeg"),
        ("Filtered", "chest_xray/stray.jpeg"),
        ("Item", "chest_xray/test/PNEUMONIA/person100_bacteria_475.jpeg", ["PNEUMONIA"], "test"),
        ("Item", "chest_xray/train/NORMAL/IM-0115-0001.jpeg", ["NORMAL"], "train"),
        ("Item", "chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg", ["PNEUMONIA"], "val"),
    ]


def test_tree_literal_and_wildcard_segments(tmp_path):
    """COVID-QU-Ex: <split>/<class>/images/ beside <split>/<class>/lung masks/."""
    _touch(tmp_path, "Train/COVID-19/images/covid_1.png", "Train/COVID-19/lung masks/covid_1.png")
    layout = {"tree": "{split}/{class}/images"}
    assert _entries(iter_items(manifest(**layout), tmp_path)) == [
        ("Item", "Train/COVID-19/images/covid_1.png", ["COVID-19"], "Train"),
        ("Filtered", "Train/COVID-19/lung masks/covid_1.png"),
    ]
    items = list(iter_items(manifest(tree="*/{class}/*"), tmp_path))
    assert [(item.labels, item.split) for item in items] == [(["COVID-19"], None)] * 2


@pytest.mark.parametrize("tree", ["{split}", "{class}/{class}", "{split}/{split}/{class}", "a//{class}"])
def test_a_tree_must_name_the_class_once(tree):
    with pytest.raises(ValueError, match=r"tree must name \{class\} once"):
        manifest(tree=tree)


def _evalset(name: str, raw: Path) -> tuple[str, dict]:
    out = raw.parent / f"eval-{name}"
    result = run_cli("evalset", name, "--root", raw, "--out", out, "--with-train", "--workers", "1")
    assert result.exit_code == 0, result.output
    return result.output, json.loads((out / "info.json").read_text())


def test_covid_qu_ex_manifest_gives_three_classes_and_the_official_splits(tmp_path):
    raw = tmp_path / "raw"
    base = raw / "covid-qu-ex" / "Lung Segmentation Data" / "Lung Segmentation Data"
    for number, (split, label) in enumerate(
        [
            ("Train", "COVID-19"),
            ("Train", "Non-COVID"),
            ("Val", "Normal"),
            ("Test", "COVID-19"),
            ("Test", "Normal"),
        ]
    ):
        for folder in ("images", "lung masks"):
            path = base / split / label / folder / f"img_{number}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (20, 20), 40 * number).save(path)
    output, info = _evalset("covid-qu-ex", raw)
    assert "Inputs 5 = samples 5 + errors 0" in output
    assert info["classes"] == ["COVID-19", "non-COVID lung infection", "normal"]
    assert info["splits"] == {"train": 2, "val": 1, "test": 2}


def test_pediatric_pneumonia_manifest_reads_the_kaggle_tree(tmp_path):
    raw = tmp_path / "raw"
    for number, relpath in enumerate(
        ["train/NORMAL/a.jpeg", "train/PNEUMONIA/b.jpeg", "val/NORMAL/c.jpeg", "test/PNEUMONIA/d.jpeg"]
    ):
        path = raw / "pediatric-pneumonia" / "chest_xray" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (20, 20), 50 * number).save(path)
    output, info = _evalset("pediatric-pneumonia", raw)
    assert "Inputs 4 = samples 4 + errors 0" in output
    assert info["classes"] == ["normal", "pneumonia"] and info["task"] == "classification"
    assert info["splits"] == {"train": 2, "val": 1, "test": 1}
