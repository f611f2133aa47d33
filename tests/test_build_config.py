"""`unimed-data build CONFIG` over bundled manifests and real annotation files, and `--from-folder`."""

import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from tests.conftest import run_cli
from unimed_data.demo import pydicom_test_files

CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)


def chexpert_row(path: str, view: str, no_finding="", cardiomegaly="", edema="", effusion="") -> str:
    cells = ["" for _ in range(14)]
    cells[0], cells[2], cells[5], cells[10] = no_finding, cardiomegaly, edema, effusion
    return ",".join([f"CheXpert-v1.0-small/{path}", "Female", "70", view, "AP", *cells])


@pytest.fixture
def raw(tmp_path: Path, shared_data: Path) -> Path:
    """A raw root laid out as the bundled manifests expect, from real files."""
    raw = tmp_path / "raw"
    chexpert = raw / "chexpert-v1.0-small"
    rows = [CHEXPERT_HEADER]
    images = [
        shared_data / "samples" / "xray_cardiomegaly.jpg",
        shared_data / "samples" / "xray_pneumonia.png",
    ]
    for patient in range(1, 7):
        relative = f"train/patient{patient:05d}/study1/view1_frontal.jpg"
        (chexpert / relative).parent.mkdir(parents=True)
        with Image.open(images[patient % 2]) as image:  # six distinct images: two X-rays, four turns
            image.rotate(90 * (patient // 2), expand=True).save(chexpert / relative, image.format)
        rows.append(
            chexpert_row(relative, "Frontal", cardiomegaly="1.0", edema="-1.0" if patient % 2 else "0.0")
        )
    rows.append(chexpert_row("train/patient00001/study1/view2_lateral.jpg", "Lateral", cardiomegaly="1.0"))
    rows.append(chexpert_row("train/patient00009/study1/view1_frontal.jpg", "Frontal", no_finding="1.0"))
    (chexpert / "train.csv").write_text("\n".join(rows) + "\n")
    (chexpert / "valid.csv").write_text(CHEXPERT_HEADER + "\n")
    (raw / "odir-5k").mkdir()
    shutil.copy(shared_data / "annotations" / "08_ODIR200x3.csv", raw / "odir-5k")
    (raw / "biomedica-demo").symlink_to(shared_data / "biomedica_demo")
    return raw


def write_config(tmp_path: Path, raw: Path) -> Path:
    config = {
        "seed": 1,
        "include_eval": True,  # odir-5k is an evaluation-only set: built here for its real CSV
        "max_error_rate": 1.0,  # odir-5k's images are not there: its 600 rows are errors by design
        "datasets": [
            {"manifest": "chexpert-v1.0-small", "root": str(raw)},
            {"manifest": "odir-5k", "root": str(raw)},
            {"manifest": "biomedica-demo", "root": "raw"},  # relative to the config file
        ],
        "convert": {"max_side": 128},
        "shard": {"shard_size": 4, "prefix": "mixed"},
    }
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_build_accounts_for_every_row_of_every_source(tmp_path: Path, raw: Path):
    out = tmp_path / "out"
    result = run_cli("build", write_config(tmp_path, raw), "--out", out, "--workers", "2")
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    chexpert, odir, biomedica = (
        stats["datasets"][n] for n in ("chexpert-v1-0-small", "odir-5k", "biomedica-demo")
    )
    # CheXpert: 8 rows (inputs), the lateral one filtered by the frontal-only rule; patient 9's image is absent.
    assert (chexpert["inputs"], chexpert["filtered"], chexpert["samples"]) == (8, 1, 6)
    assert chexpert["errors"] == {"convert": 1}
    # ODIR: 600 CSV rows, 19 exact duplicate rows, and no images on disk: every row is an error.
    assert (odir["inputs"], odir["samples"], odir["errors"]) == (600, 0, {"ingest": 19, "convert": 581})
    assert biomedica["samples"] == 8 and not biomedica["errors"]
    assert stats["totals"]["balanced"] and stats["caption_sources"] == {"original": 8, "template": 6}
    assert run_cli("validate", out).exit_code == 0
    assert (out / "train" / "mixed-000000.tar").exists()
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    assert len(errors) == stats["totals"]["errors"] == 601
    assert {e["reason"] for e in errors if e["stage"] == "convert"} == {"file not found"}


def test_uncertain_labels_reach_captions_and_json(tmp_path: Path, raw: Path):
    out = tmp_path / "out"
    assert run_cli("build", write_config(tmp_path, raw), "--out", out).exit_code == 0
    metas = []
    for shard in out.glob("*/*.tar"):
        with tarfile.open(shard) as tar:
            metas += [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    chexpert = [m for m in metas if m["dataset"] == "chexpert-v1.0-small"]
    uncertain = [m for m in chexpert if m["uncertain_labels"]]
    assert len(uncertain) == 3
    for meta in uncertain:
        assert meta["uncertain_labels"] == ["pulmonary edema"]
        assert any("possible pulmonary edema" in c or "pulmonary edema may" in c for c in meta["captions"])
    assert {m["modality"] for m in metas if m["dataset"] == "biomedica-demo"} > {"other"}


def test_bad_config_names_the_file_and_field(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"datasets": [{"manifest": "odir-5k", "root": "."}], "shard": {"shard_sise": 3}})
    )
    result = run_cli("build", path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "bad.yaml" in result.output and "shard.shard_sise" in result.output
    path.write_text(yaml.safe_dump({"datasets": [{"manifest": "no-such-set", "root": "."}]}))
    result = run_cli("build", path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no-such-set" in result.output


def test_from_folder_builds_a_folder_per_class_tree(tmp_path: Path, shared_data: Path):
    tree = tmp_path / "chest"
    for name, files in {
        "cardiomegaly": ["xray_cardiomegaly.jpg"],
        "pneumonia": ["xray_pneumonia.png"],
    }.items():
        (tree / name).mkdir(parents=True)
        for file in files:
            shutil.copy(shared_data / "samples" / file, tree / name / file)
    ct = next(p for p in pydicom_test_files() if p.name == "CT_small.dcm")
    shutil.copy(ct, tree / "pneumonia" / "IM000001")  # extension-less DICOM, as scanners export
    (tree / "pneumonia" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = run_cli("build", "--from-folder", tree, "--modality", "xray", "--out", out, "--max-side", "64")
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["samples"] == 3 and stats["totals"]["balanced"]
    labels = {}
    for shard in out.glob("*/*.tar"):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    labels.setdefault(tuple(meta["labels"]), []).append(max(meta["width"], meta["height"]))
    assert labels == {("cardiomegaly",): [64], ("pneumonia",): [64, 64]}
