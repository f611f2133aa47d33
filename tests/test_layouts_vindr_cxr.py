"""VinDr-CXR: image-level labels from the PhysioNet CSVs (three readers per train image, one
consensus row per test image), DICOM input, through the bundled manifest and `evalset`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import run_cli
from unimed_data.layouts import Item, ItemError, LayoutError, iter_items
from unimed_data.manifest import Manifest, find_manifest, load_manifest

# The release's label columns, in the order of annotations/image_labels_*.csv.
LABELS = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
    "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion",
    "COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding",
]  # fmt: skip
TRAIN = "annotations/image_labels_train.csv"
TEST = "annotations/image_labels_test.csv"


def _row(image_id: str, *positive: str, rad: str | None = None, cells: dict | None = None) -> str:
    values = {label: "1" if label in positive else "0" for label in LABELS} | (cells or {})
    return ",".join([image_id, *([rad] if rad else []), *(values[label] for label in LABELS)])


def _csv(path: Path, rows: list[str], *, rad_id: bool) -> None:
    header = ",".join(["image_id", *(["rad_id"] if rad_id else []), *LABELS])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def _dicom(path: Path, value: int) -> None:
    """A small MONOCHROME2 chest-X-ray-like DICOM file, as the release's `.dicom` files are."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
        "DX",
    )
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 24, 32, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = np.full((24, 32), value, dtype=np.uint16)
    pixels[:, :16] = 4095 - value
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def vindr(tmp_path: Path) -> Path:
    """raw/vindr-cxr/: three train images read by three radiologists, two test images."""
    root = tmp_path / "raw" / "vindr-cxr"
    train = [
        _row("a1", "Cardiomegaly", "Aortic enlargement", rad="R8"),
        _row("a1", "Cardiomegaly", rad="R9"),
        _row("b2", "No finding", rad="R8"),
        _row("a1", "No finding", rad="R10"),
        _row("b2", "Nodule/Mass", rad="R9"),
        _row("b2", "No finding", rad="R10"),
        _row("c3", "Pleural effusion", "Pneumonia", rad="R1"),
        _row("c3", "Pleural effusion", rad="R2"),
        _row("c3", "Pleural effusion", "Pneumonia", rad="R3"),
    ]
    _csv(root / TRAIN, train, rad_id=True)
    _csv(root / TEST, [_row("d4", "No finding"), _row("e5", "Lung tumor", "Nodule/Mass")], rad_id=False)
    for number, image_id in enumerate(["a1", "b2", "c3"]):
        _dicom(root / "train" / f"{image_id}.dicom", 500 + 700 * number)
    for number, image_id in enumerate(["d4", "e5"]):
        _dicom(root / "test" / f"{image_id}.dicom", 900 + 900 * number)
    return root


def _manifest(**layout) -> Manifest:
    return Manifest.model_validate(
        {"name": "vindr", "modality": "xray", "license": "DUA", "layout": {"type": "vindr_cxr", **layout}}
    )


def _labels(entries) -> dict[str, tuple[str, list[str]]]:
    return {Path(e.source_path).stem: (e.split, e.labels) for e in entries if isinstance(e, Item)}


def test_majority_of_three_readers_and_no_finding_only_when_nothing_else(vindr):
    labels = _labels(iter_items(_manifest(), vindr))
    assert labels == {
        "a1": ("train", ["Cardiomegaly"]),  # 2 of 3; Aortic enlargement 1 of 3
        "b2": ("train", ["No finding"]),  # Nodule/Mass 1 of 3
        "c3": ("train", ["Pleural effusion", "Pneumonia"]),
        "d4": ("test", ["No finding"]),
        "e5": ("test", ["Nodule/Mass", "Lung tumor"]),
    }


def test_any_reader_is_enough_with_readers_any(vindr):
    labels = _labels(iter_items(_manifest(readers="any"), vindr))
    assert labels["a1"] == ("train", ["Aortic enlargement", "Cardiomegaly"])
    assert labels["b2"] == ("train", ["Nodule/Mass"])  # a finding outvotes the others' No finding


def test_items_point_at_the_dicom_of_their_split(vindr):
    items = [e for e in iter_items(_manifest(), vindr) if isinstance(e, Item)]
    assert [item.source_path for item in items] == [
        "train/a1.dicom", "train/b2.dicom", "train/c3.dicom", "test/d4.dicom", "test/e5.dicom",
    ]  # fmt: skip
    assert items[0].origin == f"{TRAIN}:2" and all(item.patient is None for item in items)


def test_a_bad_cell_or_image_id_is_one_error_naming_the_line(vindr):
    rows = [
        _row("a1", "Cardiomegaly"),
        _row("b2", cells={"Edema": "yes"}),
        _row("../x", "Edema"),
        "c3,0",
    ]
    _csv(vindr / TEST, rows, rad_id=False)
    entries = list(iter_items(_manifest(csvs=[{"path": TEST, "split": "test", "images": "test"}]), vindr))
    errors = sorted(e.reason for e in entries if isinstance(e, ItemError))
    assert errors == [
        f"{TEST}:3: column 'Edema': expected 0 or 1, got 'yes'",
        f"{TEST}:4: bad image_id '../x'",
        f"{TEST}:5: expected 29 fields, found 2",
    ]
    assert _labels(entries) == {"a1": ("test", ["Cardiomegaly"])}


def test_missing_csv_or_image_id_column_stops_the_dataset(vindr):
    (vindr / TEST).unlink()
    with pytest.raises(LayoutError, match=r"image_labels_test\.csv: annotation file not found"):
        list(iter_items(_manifest(), vindr))
    (vindr / TEST).write_text("id,No finding\nd4,1\n")
    with pytest.raises(LayoutError, match=r"header lacks column\(s\) \['image_id'\]"):
        list(iter_items(_manifest(), vindr))


def test_bundled_manifest_reads_the_release_layout():
    manifest = load_manifest(find_manifest("vindr-cxr"))
    assert manifest.role == "eval" and manifest.access == "credentialed"
    assert [(c.path, c.split, c.images) for c in manifest.layout.csvs] == [
        (TRAIN, "train", "train"),
        (TEST, "test", "test"),
    ]
    assert manifest.download[0].fetcher == "physionet" and manifest.download[0].project == "vindr-cxr/1.0.0"
    assert manifest.readable("Other diseases") == manifest.readable("Other disease") == "other disease"


def test_evalset_from_the_manifest_converts_the_dicoms_with_train(vindr, tmp_path):
    out = tmp_path / "eval"
    result = run_cli(
        "evalset", "vindr-cxr", "--root", vindr.parent, "--out", out, "--with-train", "--workers", "1"
    )
    assert result.exit_code == 0, result.output
    assert "Inputs 5 = samples 5 + errors 0" in result.output
    info = json.loads((out / "info.json").read_text())
    assert info["task"] == "multilabel" and info["splits"] == {"train": 3, "test": 2}
    assert (out / "classnames.txt").read_text().splitlines() == [
        "cardiomegaly", "lung tumor", "no finding", "nodule or mass", "pleural effusion", "pneumonia",
    ]  # fmt: skip
