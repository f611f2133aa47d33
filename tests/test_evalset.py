"""`unimed-data evalset`: evaluation sets that CLIP_benchmark's own webdataset reader reads.

Real files throughout: PNG/JPEG made with Pillow, pydicom's test DICOMs, a CheXpert-style CSV,
and the demo build (`demo_out`).
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.conftest import run_cli


@pytest.fixture(scope="session")
def read_wds():
    """CLIP_benchmark's reader (imports torch: once per session)."""
    builder = pytest.importorskip("clip_benchmark.datasets.builder")

    def read(out: Path, split: str = "test"):
        dataset = builder.build_wds_dataset("unimed", transform=None, split=split, data_dir=str(out))
        return dataset, list(dataset)

    return read


def image(path: Path, colour: tuple[int, int, int], size=(40, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).convert(mode).save(path)
    return path


def members(out: Path, split: str = "test") -> list[tuple[str, bytes]]:
    found = []
    for index in range(int((out / split / "nshards.txt").read_text())):
        with tarfile.open(out / split / f"{index}.tar") as tar:
            found.extend((m.name, tar.extractfile(m).read()) for m in tar)
    return found


def tar_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.tar"))}


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    """Two classes (folder names with `_`), a class folder nested in a grouping folder, a
    DICOM without extension, a 16-bit PNG, and one file that is not an image at all."""
    root = tmp_path / "chest"
    image(root / "pleural_effusion" / "a.png", (200, 10, 10))
    image(root / "ward7" / "pleural_effusion" / "b.jpg", (180, 30, 30))
    image(root / "pleural_effusion" / "c.png", (60000,), mode="I;16")
    image(root / "no_finding" / "d.png", (10, 200, 10))
    image(root / "no_finding" / "e.bmp", (20, 220, 20))
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "no_finding" / "IM000001")
    (root / "no_finding" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("ignored: not an image")
    return root


def test_folder_set_has_the_clip_benchmark_layout_and_labels(class_tree, tmp_path, read_wds):
    out = tmp_path / "eval"
    args = ("evalset", "--from-folder", class_tree, "--modality", "xray", "--out", out)
    result = run_cli(*args, "--shard-size", "2", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "Inputs 7 = samples 6 + errors 1" in result.output

    assert (out / "classnames.txt").read_text() == "no finding\npleural effusion\n"
    templates = (out / "zeroshot_classification_templates.txt").read_text().splitlines()
    assert templates and all("{c}" in t for t in templates) and "a chest X-ray showing {c}." in templates
    assert not (out / "dataset_type.txt").exists()  # plain single-label classification
    assert (out / "test" / "nshards.txt").read_text().strip() == "3"
    assert sorted(p.name for p in (out / "test").iterdir()) == ["0.tar", "1.tar", "2.tar", "nshards.txt"]
    prompts = json.loads((out / "prompts.json").read_text())
    assert prompts["pleural effusion"][0] == "a chest X-ray showing pleural effusion."
    info = json.loads((out / "info.json").read_text())
    assert info["task"] == "classification" and info["modality"] == "xray" and info["name"] == "chest"
    assert info["classes"] == ["no finding", "pleural effusion"] and info["splits"] == {"test": 6}
    assert info["errors"] == 1 and info["source"].startswith("folder ")

    dataset, samples = read_wds(out)
    assert dataset.classes == ["no finding", "pleural effusion"] and dataset.templates == templates
    assert Counter(label for _, label in samples) == {0: 3, 1: 3}
    assert all(img.mode == "RGB" for img, _ in samples)

    names = [name for name, _ in members(out)]
    keys = [name.split(".")[0] for name in names if name.endswith(".jpg")]
    assert keys == sorted(keys) and all("/" not in k and "." not in k for k in keys)
    by_key = {name: data for name, data in members(out)}
    for key in keys:
        meta = json.loads(by_key[f"{key}.json"])
        assert meta["dataset"] == "chest" and meta["modality"] == "xray"
        assert int(by_key[f"{key}.cls"]) == ["no finding", "pleural effusion"].index(meta["labels"][0])


def test_a_broken_file_is_an_error_row_and_counts_add_up(class_tree, tmp_path):
    out = tmp_path / "eval"
    assert run_cli("evalset", "--from-folder", class_tree, "--modality", "xray", "--out", out).exit_code == 0
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    assert [(Path(e["source_path"]).name, e["stage"]) for e in errors] == [("broken.png", "convert")]
    assert errors[0]["reason"] == "not a recognised image format"
    assert errors[0]["source_path"] == str(class_tree / "no_finding" / "broken.png")
    info = json.loads((out / "info.json").read_text())
    assert info["inputs"] == sum(info["splits"].values()) + info["errors"] == 7


def test_holdout_writes_stratified_train_and_val(class_tree, tmp_path, read_wds):
    out = tmp_path / "eval"
    (class_tree / "no_finding" / "broken.png").unlink()
    for name in "fghijk":
        image(class_tree / "pleural_effusion" / f"{name}.png", (150, 0, ord(name)))
        image(class_tree / "no_finding" / f"{name}.png", (0, 150, ord(name)))
    args = ("evalset", "--from-folder", class_tree, "--modality", "xray", "--out", out)
    result = run_cli(*args, "--holdout-train", "0.5", "--holdout-val", "0.2", "--workers", "1")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "info.json").read_text())
    assert info["splits"] == {"train": 8, "val": 4, "test": 6}  # 9 images per class: 4, 2, 3
    for split, per_class in (("train", 4), ("val", 2), ("test", 3)):
        _, samples = read_wds(out, split)
        assert Counter(label for _, label in samples) == {0: per_class, 1: per_class}
    # Asking for no holdout later leaves no stale train/val shards behind.
    assert run_cli(*args, "--workers", "1").exit_code == 0
    assert not (out / "train").exists() and not (out / "val").exists()


CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)


def chexpert_row(path: str, **cells: str) -> str:
    columns = CHEXPERT_HEADER.split(",")[5:]
    values = [cells.get(column.replace(" ", "_"), "") for column in columns]
    return ",".join([path, "Female", "68", "Frontal", "AP", *values])


@pytest.fixture
def chexpert_manifest(tmp_path: Path) -> Path:
    """A CheXpert-style multi-label source: uncertain Edema, a study without findings, a bad
    cell (ingest error) and a listed image that does not exist (convert error)."""
    data = tmp_path / "raw" / "chx"
    rows = [
        CHEXPERT_HEADER,
        chexpert_row("test/patient1/study1/view1_frontal.png", Cardiomegaly="1.0", Edema="-1.0"),
        chexpert_row("test/patient2/study1/view1_frontal.png", No_Finding="1.0"),
        chexpert_row("test/patient3/study1/view1_frontal.png", Edema="1.0", Pleural_Effusion="1.0"),
        chexpert_row("test/patient4/study1/view1_frontal.png", Pneumonia="0.0"),
        chexpert_row("test/patient5/study1/view1_frontal.png", Edema="2.0"),
        chexpert_row("test/patient6/study1/view1_frontal.png", Cardiomegaly="1.0"),
    ]
    data.mkdir(parents=True)
    (data / "test.csv").write_text("\n".join(rows) + "\n")
    for patient in range(1, 6):
        image(data / f"test/patient{patient}/study1/view1_frontal.png", (patient * 40, 0, 0))
    manifest = tmp_path / "chx.yaml"
    manifest.write_text(
        "name: chx\nmodality: xray\nlicense: research only\n"
        "layout: {type: chexpert, csvs: [{path: test.csv, split: test}], uncertain: positive}\n"
        "split: {by: column}\n"
        "definitions: {Edema: fluid in the lung interstitium}\n"
    )
    return manifest


def test_multilabel_manifest_writes_npy_targets_without_uncertain_positives(
    chexpert_manifest, tmp_path, read_wds
):
    out = tmp_path / "eval"
    result = run_cli("evalset", chexpert_manifest, "--root", tmp_path / "raw", "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "Inputs 6 = samples 4 + errors 2" in result.output
    classes = ["Cardiomegaly", "Edema", "No Finding", "Pleural Effusion"]
    assert (out / "dataset_type.txt").read_text().strip() == "multilabel"
    assert (out / "classnames.txt").read_text().splitlines() == classes
    info = json.loads((out / "info.json").read_text())
    assert info["task"] == "multilabel" and info["splits"] == {"test": 4} and info["errors"] == 2
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    assert sorted(e["stage"] for e in errors) == ["convert", "ingest"]
    assert any("patient6" in e["source_path"] for e in errors if e["stage"] == "convert")
    prompts = json.loads((out / "prompts.json").read_text())
    assert prompts["Edema"][-1] == "a chest X-ray showing Edema, fluid in the lung interstitium."

    _, samples = read_wds(out)
    vectors = sorted(tuple(target.tolist()) for _, target in samples)
    assert vectors == [(0, 0, 0, 0), (0, 0, 1, 0), (0, 1, 0, 1), (1, 0, 0, 0)]  # Edema -1.0 is not positive
    assert all(target.dtype == np.float32 for _, target in samples)
    metas = [json.loads(data) for name, data in members(out) if name.endswith(".json")]
    assert {"labels": ["Cardiomegaly"], "uncertain_labels": ["Edema"]}.items() <= next(
        m for m in metas if m["uncertain_labels"]
    ).items()

    # The evaluator reads that listed uncertain finding as -1, which its metrics mask.
    pytest.importorskip("open_clip", reason="the evaluator needs the `train` extra")
    from torchvision.transforms import ToTensor
    from unimed_train.eval.evalsets import iter_batches, load_evalset

    batches = iter_batches(load_evalset(out), "test", ToTensor(), batch_size=8)
    read = sorted(tuple(t.value.tolist()) for _, targets in batches for t in targets)
    assert read == [(0, 0, 0, 0), (0, 0, 1, 0), (0, 1, 0, 1), (1, -1, 0, 0)]


def test_build_split_becomes_a_classification_set(demo_out, tmp_path, read_wds):
    out = tmp_path / "eval"
    result = run_cli("evalset", "--from-build", demo_out, "--split", "val,test", "--out", out)
    assert result.exit_code == 0, result.output
    source = {}
    for split in ("val", "test"):
        for shard in sorted((demo_out / split).glob("*.tar")):
            with tarfile.open(shard) as tar:
                for m in tar:
                    source[m.name] = tar.extractfile(m).read()
    labelled = {n.split(".")[0]: json.loads(d)["labels"] for n, d in source.items() if n.endswith(".json")}
    classes = sorted({label for labels in labelled.values() for label in labels})
    assert (out / "classnames.txt").read_text().splitlines() == classes
    _, samples = read_wds(out)
    assert len(samples) == len(labelled)
    expected = Counter(classes.index(labels[0]) for labels in labelled.values())
    assert Counter(label for _, label in samples) == expected
    for name, data in members(out):
        if name.endswith(".jpg"):
            assert data == source[name]  # copied, not re-encoded
    info = json.loads((out / "info.json").read_text())
    assert info["inputs"] == info["splits"]["test"] + info["errors"]


def test_build_split_becomes_a_retrieval_set_with_train(demo_out, tmp_path, read_wds):
    out = tmp_path / "eval"
    args = ("evalset", "--from-build", demo_out, "--task", "retrieval", "--train-split", "train")
    # val too: the demo's one CT test image has the same pixels as a train image, so dedupe drops it.
    result = run_cli(*args, "--split", "val,test", "--dataset", "pydicom-ct", "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "dataset_type.txt").read_text().strip() == "retrieval"
    assert not (out / "classnames.txt").exists()
    captions = {}
    for name, data in members(out) + members(out, "train"):
        key, ext = name.split(".")
        if ext == "json":
            assert json.loads(data)["dataset"] == "pydicom-ct"
        if ext == "txt":
            captions[key] = data.decode().splitlines()
    assert captions and all(len(lines) >= 1 for lines in captions.values())
    _, samples = read_wds(out)
    assert {tuple(texts) for _, texts in samples} <= {tuple(c) for c in captions.values()}
    info = json.loads((out / "info.json").read_text())
    assert (
        info["task"] == "retrieval" and info["modality"] == "ct" and set(info["splits"]) == {"train", "test"}
    )


def test_same_inputs_give_byte_identical_tars(class_tree, demo_out, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second, first):
        args = (
            "evalset",
            "--from-folder",
            class_tree,
            "--modality",
            "xray",
            "--out",
            out,
            "--shard-size",
            "2",
        )
        assert run_cli(*args, "--holdout-train", "0.3", "--workers", "1").exit_code == 0
    assert tar_bytes(first) == tar_bytes(second) and len(tar_bytes(first)) >= 3
    for out in (first, second):
        assert run_cli("evalset", "--from-build", demo_out, "--out", out / "b").exit_code == 0
    assert tar_bytes(first / "b") == tar_bytes(second / "b")


def test_templates_file_overrides_and_bad_template_is_refused(class_tree, tmp_path):
    out, templates = tmp_path / "eval", tmp_path / "t.txt"
    args = (
        "evalset",
        "--from-folder",
        class_tree,
        "--modality",
        "ct",
        "--out",
        out,
        "--templates",
        templates,
    )
    templates.write_text("a scan of {c}.\n\nthe {c}\n")
    assert run_cli(*args).exit_code == 0
    assert (out / "zeroshot_classification_templates.txt").read_text() == "a scan of {c}.\nthe {c}\n"
    templates.write_text("a scan of {c}.\nno placeholder here\n")
    result = run_cli(*args)
    assert result.exit_code == 2 and f"{templates}:2" in result.output


def test_clear_errors_for_bad_sources(tmp_path):
    out = tmp_path / "eval"
    missing = tmp_path / "nowhere"
    result = run_cli("evalset", "--from-folder", missing, "--modality", "xray", "--out", out)
    assert result.exit_code == 2 and f"{missing}: not a folder" in result.output
    empty = tmp_path / "empty"
    (empty / "some-class").mkdir(parents=True)
    result = run_cli("evalset", "--from-folder", empty, "--modality", "xray", "--out", out)
    assert result.exit_code == 2 and f"{empty}: no images in class folders" in result.output
    result = run_cli("evalset", "no-such-set", "--root", tmp_path, "--out", out)
    assert result.exit_code == 2 and "no-such-set: no such manifest file" in result.output
    result = run_cli("evalset", "refuge", "--root", tmp_path, "--out", out)
    assert (
        result.exit_code == 2 and str(tmp_path / "refuge") in result.output and "not found" in result.output
    )
    result = run_cli("evalset", "--from-build", tmp_path, "--out", out)
    assert result.exit_code == 2 and f"{tmp_path / 'test'}: no shards" in result.output
    result = run_cli("evalset", "--from-folder", empty, "--modality", "xray", "--out", out, "--with-train")
    assert result.exit_code == 2 and "--with-train applies to MANIFEST only" in result.output
    result = run_cli("evalset", "--from-folder", empty, "--modality", "xray", "--out", out, "--split", "val")
    assert result.exit_code == 2 and "--split applies to MANIFEST and --from-build only" in result.output
    assert not out.exists()


def test_help_names_the_three_sources():
    result = run_cli("evalset", "--help")
    assert result.exit_code == 0 and "--from-folder" in result.output and "--from-build" in result.output
