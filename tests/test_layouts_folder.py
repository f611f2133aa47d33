"""Folder-per-class trees: class = parent folder; sorted; hidden and non-image files skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

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
