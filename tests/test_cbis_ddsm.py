"""MedSLIP's CBIS-DDSM tasks: a miniature TCIA tree (DICOMs written with pydicom in the NBIA Data
Retriever's folder layout, the four CSVs in the real column layout) -> `cbis_ddsm` layout ->
`unimed-data evalset cbis-calc / cbis-mass` -> the probe's binary table, with a known answer."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import run_cli
from unimed_data.layouts import Item, ItemError, iter_items
from unimed_data.manifest import Manifest, find_manifest, load_manifest
from unimed_data.schema import make_key

COMMON = ["patient_id", "left or right breast", "image view", "abnormality id", "abnormality type"]
FILES = ["image file path", "cropped image file path", "ROI mask file path"]
HEADERS = {  # as TCIA ships them: calc says `breast density`, mass `breast_density`
    "calc": ["patient_id", "breast density", *COMMON[1:], "calc type", "calc distribution"],
    "mass": ["patient_id", "breast_density", *COMMON[1:], "mass shape", "mass margins"],
}
TAIL = ["assessment", "pathology", "subtlety", *FILES]
PREFIX = {("calc", "train"): "Calc-Training", ("calc", "test"): "Calc-Test"}
PREFIX |= {("mass", "train"): "Mass-Training", ("mass", "test"): "Mass-Test"}
# (kind, split): rows of (patient, side, view, abnormality id, pathology, DICOM written?)
ROWS = {
    ("calc", "train"): [
        ("P_00001", "LEFT", "CC", 1, "BENIGN", True),
        ("P_00001", "LEFT", "CC", 2, "MALIGNANT", True),  # the same image: malignant
        ("P_00002", "RIGHT", "MLO", 1, "BENIGN_WITHOUT_CALLBACK", True),
        ("P_00003", "LEFT", "MLO", 1, "MALIGNANT", True),
        ("P_00004", "RIGHT", "CC", 1, "BENIGN", True),
        ("P_00005", "LEFT", "CC", 1, "MALIGNANT", True),
        ("P_00006", "RIGHT", "CC", 1, "BENIGN", True),
        ("P_00007", "LEFT", "CC", 1, "MALIGNANT", True),
        ("P_00007", "LEFT", "MLO", 1, "BENIGN", True),
        ("P_00008", "RIGHT", "CC", 1, "MALIGNANT", False),  # DICOM missing: an error row
        ("P_00009", "RIGHT", "CC", 1, "UNPROVEN", True),  # bad pathology: an error row
    ],
    ("calc", "test"): [
        ("P_00010", "LEFT", "CC", 1, "BENIGN", True),
        ("P_00011", "RIGHT", "CC", 1, "MALIGNANT", True),
        ("P_00012", "LEFT", "MLO", 1, "BENIGN_WITHOUT_CALLBACK", True),
    ],
    ("mass", "train"): [
        ("P_00001", "LEFT", "CC", 1, "MALIGNANT", True),
        ("P_00020", "RIGHT", "CC", 1, "BENIGN", True),
        ("P_00021", "LEFT", "MLO", 1, "MALIGNANT", True),
        ("P_00022", "RIGHT", "MLO", 1, "BENIGN", True),
    ],
    ("mass", "test"): [
        ("P_00030", "LEFT", "CC", 1, "MALIGNANT", True),
        ("P_00031", "RIGHT", "CC", 1, "BENIGN", True),
    ],
}
TYPE = {"calc": "calcification", "mass": "mass"}


def write_dicom(path: Path, description: str, patient: str, value: int, size=(40, 32)) -> None:
    """A 16-bit MONOCHROME2 mammogram-like DICOM (Part 10 file) with the given SeriesDescription."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture, as CBIS-DDSM
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription, ds.PatientID = "MG", description, patient
    ds.Rows, ds.Columns = size[1], size[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    pixels = np.full((size[1], size[0]), value, dtype=np.uint16)
    pixels[: size[1] // 2] = 60000
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def csv_path(folder: str, name: str) -> str:
    """A CSV path as TCIA's CSVs spell it: folder / study uid / series uid / 00000N.dcm."""
    return f"{folder}/1.3.6.1.4.1.9590.100.1.2.1{len(folder)}/1.3.6.1.4.1.9590.100.1.2.2{len(folder)}/{name}"


def make_tree(root: Path) -> Path:
    """RAW/cbis-ddsm/: the four CSVs and the DICOMs under CBIS-DDSM/ as the NBIA Data Retriever
    names them (the CSV's uids are not on disk); returns RAW."""
    data = root / "cbis-ddsm"
    data.mkdir(parents=True)
    for (kind, split), rows in ROWS.items():
        with (data / f"{kind}_case_description_{split}_set.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADERS[kind] + TAIL)
            for n, (patient, side, view, abnormality, pathology, written) in enumerate(rows):
                image = f"{PREFIX[kind, split]}_{patient}_{side}_{view}"
                crop = f"{image}_{abnormality}"
                descriptors = [TYPE[kind], "PLEOMORPHIC", "CLUSTERED", 4, pathology, 3]
                paths = [csv_path(image, "000000.dcm"), csv_path(crop, "000000.dcm")]
                roi = csv_path(crop, "000001.dcm") + "\n"  # real ROI cells end in a newline
                writer.writerow([patient, 3, side, view, abnormality, *descriptors, *paths, roi])
                if written:
                    write_images(data / "CBIS-DDSM", image, crop, n, patient, pathology)
    return root


def write_images(tree: Path, image: str, crop: str, n: int, patient: str, pathology: str) -> None:
    """The full mammogram (once per image), and the crop and ROI mask sharing one series folder as 1-1.dcm and
    1-2.dcm, in an order that alternates (so only the header tells them apart)."""
    value = 5000 if pathology == "MALIGNANT" else 30000
    if not (tree / image).exists():  # an image with two abnormalities has one full mammogram
        full = tree / image / f"07-20-2016-DDSM-{n:05d}" / "1.000000-full mammogram images-1" / "1-1.dcm"
        write_dicom(full, "full mammogram images", patient, value)
    crops = tree / crop / f"09-06-2017-DDSM-{n:05d}" / "1.000000-ROI mask images-2"
    mask, cropped = ("1-1.dcm", "1-2.dcm") if n % 2 else ("1-2.dcm", "1-1.dcm")
    write_dicom(crops / mask, "ROI mask images", patient, 0)
    write_dicom(crops / cropped, "cropped images", patient, value, size=(16, 12))


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("raw"))


def layout_items(raw: Path, **layout) -> list:
    manifest = Manifest.model_validate(
        {
            "name": "cbis",
            "modality": "xray",
            "license": "CC BY 3.0",
            "layout": {"type": "cbis_ddsm", **layout},
        }
    )
    return list(iter_items(manifest, raw / "cbis-ddsm"))


def test_layout_combines_abnormalities_per_image_and_reports_bad_rows(raw: Path):
    entries = layout_items(raw, abnormality="calcification")
    items = {e.source_path.split("/")[1]: e for e in entries if isinstance(e, Item)}
    errors = [e for e in entries if isinstance(e, ItemError)]
    assert len(items) == 11  # 14 rows: two abnormalities of one image, two error rows
    two = items["Calc-Training_P_00001_LEFT_CC"]
    assert (two.labels, two.patient, two.split) == (["malignant"], "P_00001", "train")
    assert two.source_path.endswith("/1.000000-full mammogram images-1/1-1.dcm")
    assert items["Calc-Training_P_00002_RIGHT_MLO"].labels == ["benign"]  # BENIGN_WITHOUT_CALLBACK
    assert {e.split for e in items.values()} == {"train", "test"}
    missing, bad = sorted((e.reason for e in errors), key=lambda reason: "pathology" in reason)
    assert missing.startswith("calc_case_description_train_set.csv:")  # the CSV line of the image's row
    assert missing.endswith(
        ": no full mammogram DICOM under CBIS-DDSM/Calc-Training_P_00008_RIGHT_CC/ (expected exactly one)"
    )
    assert bad.startswith("calc_case_description_train_set.csv:") and "column 'pathology': bad value" in bad


def test_cropped_variant_finds_the_crop_by_its_series_description(raw: Path):
    entries = layout_items(raw, abnormality="calcification", image="cropped")
    items = {e.source_path.split("/")[1]: e for e in entries if isinstance(e, Item)}
    assert items["Calc-Training_P_00001_LEFT_CC_1"].labels == ["benign"]  # one item per abnormality
    assert items["Calc-Training_P_00001_LEFT_CC_2"].labels == ["malignant"]
    # the crop is 1-1.dcm in one folder and 1-2.dcm in the next: the header decides, not the name
    assert {item.source_path.rsplit("/", 1)[1] for item in items.values()} == {"1-1.dcm", "1-2.dcm"}


def test_both_types_label_pathology_and_type(raw: Path):
    labels = {tuple(e.labels) for e in layout_items(raw) if isinstance(e, Item)}
    assert labels == {
        ("benign calcification",),
        ("malignant calcification",),
        ("benign mass",),
        ("malignant mass",),
    }


def _samples(out: Path) -> dict[str, list[tuple[str, int]]]:
    """{split: [(key, class id)]} of an evaluation set."""
    found = {}
    for split in ("train", "val", "test"):
        found[split] = []
        for shard in sorted((out / split).glob("*.tar")):
            with tarfile.open(shard) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".cls"):
                        found[split].append((member.name[:-4], int(tar.extractfile(member).read())))
    return found


def _patients(name: str, raw: Path) -> dict[str, str]:
    """{sample key: patient} for every DICOM of the tree, keyed as the set names its samples."""
    data = raw / "cbis-ddsm"
    return {
        make_key(name, path.relative_to(data).as_posix()): "P_"
        + path.relative_to(data).parts[1].split("_P_")[1][:5]
        for path in data.rglob("*.dcm")
    }


def val_half_manifest(tmp_path: Path, name: str) -> Path:
    """The bundled manifest with half the train patients in val, so a small tree has a val split."""
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(find_manifest(name).read_text().replace("val_fraction: 0.1", "val_fraction: 0.5"))
    return manifest


@pytest.mark.parametrize(("name", "counts"), [("cbis-calc", (8, 3, 2)), ("cbis-mass", (4, 2, 0))])
def test_evalset_writes_medslip_task_with_patient_level_splits(raw: Path, tmp_path: Path, name, counts):
    manifest = val_half_manifest(tmp_path, name)
    out = tmp_path / name
    result = run_cli("evalset", manifest, "--root", raw, "--with-train", "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "info.json").read_text())
    word = {"cbis-calc": "calcification", "cbis-mass": "mass"}[name]
    assert (out / "classnames.txt").read_text().splitlines() == [f"benign {word}", f"malignant {word}"]
    prompts = json.loads((out / "prompts.json").read_text())  # mammography templates, not chest X-ray ones
    assert prompts[f"malignant {word}"][0] == f"a mammogram showing malignant {word}."
    train_val, test, errors = counts
    assert info["splits"]["train"] + info["splits"]["val"] == train_val and info["splits"]["test"] == test
    assert info["splits"]["val"] > 0 and info["errors"] == errors
    assert info["inputs"] == train_val + test + errors
    samples, patients = _samples(out), _patients(load_manifest(manifest).name, raw)
    by_split = {split: {patients[key] for key, _ in keys} for split, keys in samples.items()}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not by_split["val"] & by_split["test"]
    assert by_split["test"] <= {"P_00010", "P_00011", "P_00012", "P_00030", "P_00031"}
    if name == "cbis-calc":  # the image with a benign and a malignant calcification is malignant
        key = make_key("cbis-calc", next(k for k in _dicoms(raw) if "P_00001_LEFT_CC/" in k))
        assert dict(samples["train"] + samples["val"])[key] == 1
    again = tmp_path / "again"
    assert run_cli("evalset", manifest, "--root", raw, "--with-train", "--out", again).exit_code == 0
    assert _samples(again) == samples  # the val slice depends on the seed only


def _dicoms(raw: Path) -> list[str]:
    data = raw / "cbis-ddsm"
    return [path.relative_to(data).as_posix() for path in sorted(data.rglob("*.dcm"))]


def test_probe_reports_medslips_binary_table_with_a_known_answer():
    """Two feature points the probe must separate; the test's true classes make TP 3, FN 1, FP 1,
    TN 2, so malignant precision = recall = 3/4, benign 2/3, macro F1 = (2/3 + 3/4) / 2, and AUROC
    (two score levels, ties count half) = (3*2 + 0.5*3 + 0.5*2) / 12."""
    from unimed_train.eval.probe import linear_probe
    from unimed_train.eval.report import binary_probe_markdown

    benign, malignant = [1.0, 0.0], [0.0, 1.0]
    train_x = np.array([benign] * 6 + [malignant] * 6)
    train_y = np.array([0] * 6 + [1] * 6)
    test_x = np.array([benign, benign, malignant, malignant, malignant, benign, malignant])
    test_y = np.array([0, 0, 0, 1, 1, 1, 1])
    metrics = linear_probe(train_x, train_y, test_x, test_y, classnames=["benign", "malignant"], seed=0)
    assert metrics["positive"] == "malignant"
    assert metrics["positive_precision"] == pytest.approx(3 / 4)
    assert metrics["positive_recall"] == pytest.approx(3 / 4)
    assert metrics["precision"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert metrics["recall"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert metrics["f1"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert metrics["macro_auroc"] == pytest.approx(8.5 / 12)
    entry = {"model": "m", "dataset": "cbis-calc", "task": "linear_probe", "status": "ok", "metrics": metrics}
    lines = binary_probe_markdown([entry])
    header = "| model | set | probe | positive | macro AUROC | F1 | precision | recall | precision (positive) | recall (positive) |"
    assert header in lines
    assert (
        lines[-1]
        == "| m | cbis-calc | linear_probe | malignant | 70.83 | 70.83 | 70.83 | 70.83 | 75.00 | 75.00 |"
    )
    assert binary_probe_markdown([{**entry, "metrics": {"accuracy": 1.0}}]) == []


def test_evaluator_writes_the_binary_probe_table_for_cbis_calc(raw: Path, tmp_path: Path):
    """The set as written, probed with a tiny random model: results.json has the malignant class's
    precision and recall, results.md MedSLIP's table."""
    pytest.importorskip("open_clip", reason="needs the `train` extra")
    from unimed_train.eval.__main__ import main

    from tests.tiny_models import tiny_local_dir

    evalset = tmp_path / "cbis-calc"
    args = ("evalset", val_half_manifest(tmp_path, "cbis-calc"), "--root", raw, "--with-train")
    assert run_cli(*args, "--out", evalset, "--workers", "1").exit_code == 0
    report = tmp_path / "report"
    argv = ["--pretrained", tiny_local_dir(tmp_path / "model"), "--label", "tiny", "--data", str(evalset)]
    argv += ["--task", "linear_probe", "--out", str(report), "--workers", "0", "--batch-size", "4"]
    assert main(argv) == 0
    (entry,) = json.loads((report / "results.json").read_text())
    assert entry["status"] == "ok" and entry["metrics"]["positive"] == "malignant calcification"
    wanted = {"macro_auroc", "f1", "precision", "recall", "positive_precision", "positive_recall"}
    assert wanted <= set(entry["metrics"])
    md = (report / "results.md").read_text()
    assert "## Binary linear probes (MedSLIP's table)" in md
    assert "| tiny | cbis-calc | linear_probe | malignant calcification | " in md


def test_a_manifest_naming_templates_that_are_not_bundled_stops_evalset(raw: Path, tmp_path: Path):
    manifest = tmp_path / "cbis-calc.yaml"
    manifest.write_text(
        find_manifest("cbis-calc").read_text().replace("templates: mammography", "templates: nosuch")
    )
    result = run_cli("evalset", manifest, "--root", raw, "--out", tmp_path / "out", "--workers", "1")
    assert result.exit_code != 0
    assert "nosuch.txt: cannot read templates" in result.output


def test_a_missing_csv_is_one_error_line_naming_it(tmp_path: Path):
    (tmp_path / "raw" / "cbis-ddsm").mkdir(parents=True)
    result = run_cli("evalset", "cbis-calc", "--root", tmp_path / "raw", "--out", tmp_path / "out")
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "calc_case_description_train_set.csv: annotation file not found" in lines[0]
