"""The dedupe stage: one sample per image across sources, and no protected evaluation image in
the corpus; every removed item is listed, counts add up, and reruns change nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from tests.conftest import run_cli, shard_json_field
from unimed_data.stages.dedupe import Tables


def picture(seed: int, size=(160, 128)) -> Image.Image:
    """A distinct grey image: shapes placed by `seed`."""
    image = Image.new("L", size, 20)
    draw = ImageDraw.Draw(image)
    for i in range(6):
        x, y = (seed * 37 + i * 53) % size[0], (seed * 61 + i * 29) % size[1]
        draw.ellipse((x - 20, y - 15, x + 20, y + 15), fill=(seed * 40 + i * 30) % 200 + 50)
    return image


def captions_source(
    root: Path, name: str, images: dict[str, tuple[Image.Image, str]], tmp_path: Path
) -> Path:
    """A `captions` manifest (pairs.csv: image, caption) with its files under root/name/."""
    folder = root / name
    folder.mkdir(parents=True)
    lines = ["image,caption"]
    for file, (image, caption) in images.items():
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / file)
        lines.append(f'{file},"{caption}"')
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(
        f"name: {name}\nmodality: xray\nlicense: CC0\nsplit: {{by: fixed, split: train}}\n"
        "layout: {type: captions, table: pairs.csv, image_column: image, caption_column: caption}\n"
    )
    return manifest


def config(tmp_path: Path, root: Path, manifests: list[Path], extra: str = "") -> Path:
    path = tmp_path / "build.yaml"
    entries = ", ".join(f"{{manifest: {m}, root: '{root}'}}" for m in manifests)
    path.write_text(f"datasets: [{entries}]\n{extra}")
    return path


def shard_captions(out: Path) -> dict[str, list[str]]:
    return shard_json_field(out, "captions")


def test_one_image_in_two_sources_is_one_sample_with_both_captions(tmp_path):
    root = tmp_path / "raw"
    same = picture(1, (320, 256))
    first = captions_source(
        root,
        "atlas",
        {"a.png": (same, "a heart of normal size"), "b.png": (picture(2), "clear lungs")},
        tmp_path,
    )
    second = captions_source(
        root, "figures", {"f.jpg": (same.resize((160, 128)), "chest radiograph, PA view")}, tmp_path
    )
    out = tmp_path / "out"
    result = run_cli("build", config(tmp_path, root, [first, second]), "--out", out)
    assert result.exit_code == 0, result.output
    captions = sorted(shard_captions(out).values())
    assert captions == [["a heart of normal size", "chest radiograph, PA view"], ["clear lungs"]]
    [row] = pq.read_table(out / "duplicates.parquet").to_pylist()
    assert (row["dataset"], row["kept_dataset"], row["kind"]) == ("figures", "atlas", "near")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["duplicates"] == 1 and stats["totals"]["balanced"]
    assert stats["datasets"]["atlas"]["captions_merged"] == 1
    assert "| figures | 1 | 0 | 0 |" in (out / "README.md").read_text()


def test_the_priority_list_chooses_which_copy_stays(tmp_path):
    root = tmp_path / "raw"
    same = picture(3)
    first = captions_source(root, "atlas", {"a.png": (same, "one")}, tmp_path)
    second = captions_source(root, "figures", {"f.png": (same, "two")}, tmp_path)
    out = tmp_path / "out"
    build = config(tmp_path, root, [first, second], "dedupe: {priority: [figures]}\n")
    assert run_cli("build", build, "--out", out).exit_code == 0
    [row] = pq.read_table(out / "duplicates.parquet").to_pylist()
    assert (row["dataset"], row["kept_dataset"], row["kind"], row["distance"]) == (
        "atlas",
        "figures",
        "exact",
        0,
    )


def test_distinct_images_are_all_kept_and_no_dedupe_keeps_copies(tmp_path):
    root = tmp_path / "raw"
    images = {f"{i}.png": (picture(i), f"image {i}") for i in range(8)}
    images["copy.png"] = (picture(0), "image 0 again")
    manifest = captions_source(root, "atlas", images, tmp_path)
    out = tmp_path / "out"
    assert run_cli("build", config(tmp_path, root, [manifest]), "--out", out).exit_code == 0
    assert len(shard_captions(out)) == 8
    kept = tmp_path / "kept"
    assert run_cli("build", config(tmp_path, root, [manifest]), "--out", kept, "--no-dedupe").exit_code == 0
    assert len(shard_captions(kept)) == 9 and pq.read_table(kept / "duplicates.parquet").num_rows == 0
    assert "turned off (`--no-dedupe`)" in (kept / "README.md").read_text()


def test_images_named_by_an_evaluation_csv_are_removed_and_listed(tmp_path):
    root = tmp_path / "raw"
    paths = [f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(6)]
    pool = captions_source(
        root,
        "chexpert",
        {path: (picture(10 + i).convert("RGB"), f"radiograph {i}") for i, path in enumerate(paths)},
        tmp_path,
    )
    evals = root / "chexpert-5x200"
    evals.mkdir()
    # A 5x200-style CSV naming two images of CheXpert's training folder; its images are not here,
    # so the match is by path alone, before any image is decoded.
    (evals / "chexpert_5x200.csv").write_text(f"Path,label\n{paths[1]},Edema\n{paths[4]},Cardiomegaly\n")
    manifest = tmp_path / "chexpert-5x200.yaml"
    manifest.write_text(
        "name: chexpert-5x200\nmodality: xray\nlicense: research\nrole: eval\nsplit: {by: fixed, split: test}\n"
        "layout: {type: csv_label, csv: chexpert_5x200.csv, image_column: Path, label_column: label}\n"
    )
    out = tmp_path / "out"
    result = run_cli("build", config(tmp_path, root, [pool]), "--out", out, "--protect", f"{manifest}={root}")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "contamination.parquet").to_pylist()
    assert sorted((r["source_path"], r["eval_set"], r["kind"]) for r in rows) == [
        (str(root / "chexpert" / paths[i]), "chexpert-5x200", "path") for i in (1, 4)
    ]
    assert len(shard_captions(out)) == 4
    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["contaminated"] == 2 and stats["totals"]["balanced"]
    assert stats["protected"] == {"chexpert-5x200": {"images": 2, "unreadable": 2, "removed": 2}}
    assert (
        "- chexpert-5x200: 2 images, 2 unreadable (checked by path only); 2 pretraining items removed"
        in (out / "README.md").read_text()
    )


def test_images_of_an_evalset_folder_are_removed_even_reencoded_and_resized(tmp_path):
    tree = tmp_path / "bench" / "effusion"
    tree.mkdir(parents=True)
    for i in (20, 21):
        picture(i, (320, 256)).save(tree / f"{i}.png")
    evalset = tmp_path / "eval"
    assert (
        run_cli(
            "evalset", "--from-folder", tmp_path / "bench", "--modality", "xray", "--out", evalset
        ).exit_code
        == 0
    )
    root = tmp_path / "raw"
    images = {f"{i}.png": (picture(i), f"image {i}") for i in (30, 31, 32)}
    images["leak.jpg"] = (picture(21, (320, 256)).resize((256, 205)), "a leaked test image")
    pool = captions_source(root, "pool", images, tmp_path)
    out = tmp_path / "out"
    result = run_cli("build", config(tmp_path, root, [pool]), "--out", out, "--protect", evalset)
    assert result.exit_code == 0, result.output
    [row] = pq.read_table(out / "contamination.parquet").to_pylist()
    assert (Path(row["source_path"]).name, row["eval_set"], row["kind"]) == ("leak.jpg", "eval", "near")
    assert len(shard_captions(out)) == 3


def test_a_rerun_changes_nothing_and_two_builds_are_byte_identical(tmp_path):
    root = tmp_path / "raw"
    images = {f"{i}.png": (picture(i % 5), f"image {i}") for i in range(10)}
    manifest = captions_source(root, "atlas", images, tmp_path)
    digests = []
    for name in ("one", "two"):
        out = tmp_path / name
        assert (
            run_cli("build", config(tmp_path, root, [manifest]), "--out", out, "--workers", "1").exit_code
            == 0
        )
        digests.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/*.tar"))})
        digests[-1]["duplicates"] = (out / "duplicates.parquet").read_bytes()
    assert digests[0] == digests[1] and pq.read_table(tmp_path / "one" / "duplicates.parquet").num_rows == 5
    result = run_cli("build", config(tmp_path, root, [manifest]), "--out", tmp_path / "one", "--workers", "1")
    assert "nothing to do" in result.output


def test_a_protect_spec_that_names_nothing_is_one_error_line(tmp_path):
    root = tmp_path / "raw"
    manifest = captions_source(root, "atlas", {"a.png": (picture(1), "x")}, tmp_path)
    result = run_cli(
        "build", config(tmp_path, root, [manifest]), "--out", tmp_path / "out", "--protect", tmp_path / "raw"
    )
    assert result.exit_code != 0
    assert "not an evalset folder" in result.output


def test_look_alike_slices_of_one_patient_are_kept_and_identical_ones_merged(tmp_path):
    folder = tmp_path / "raw" / "series"
    folder.mkdir(parents=True)
    base = picture(40, (256, 256))
    neighbour = base.point(lambda v: min(255, v + 3))  # a neighbouring slice: nearly the same
    base.save(folder / "s1.png")
    neighbour.save(folder / "s2.png")
    base.save(folder / "s3.png")  # the same slice exported twice
    picture(41, (256, 256)).save(folder / "other.png")
    rows = ["s1.png,ct,p1", "s2.png,ct,p1", "s3.png,ct,p1", "other.png,ct,p2"]
    (folder / "labels.csv").write_text("path,finding,patient\n" + "\n".join(rows) + "\n")
    manifest = tmp_path / "series.yaml"
    manifest.write_text(
        "name: series\nmodality: ct\nlicense: CC0\nsplit: {by: fixed, split: train}\n"
        "layout: {type: csv_label, csv: labels.csv, image_column: path, label_column: finding, "
        "patient_column: patient}\n"
    )
    out = tmp_path / "out"
    assert run_cli("build", config(tmp_path, tmp_path / "raw", [manifest]), "--out", out).exit_code == 0
    [row] = pq.read_table(out / "duplicates.parquet").to_pylist()
    assert Path(row["source_path"]).name in ("s1.png", "s3.png") and row["kind"] == "exact"
    assert len(shard_captions(out)) == 3


CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)


def test_a_chexpert_build_loses_exactly_the_images_a_5x200_style_csv_names(tmp_path):
    raw = tmp_path / "raw"
    top = raw / "chexpert-v1.0-small"
    rows = [CHEXPERT_HEADER]
    for patient in range(8):
        path = f"train/patient{patient:05d}/study1/view1_frontal.jpg"
        (top / path).parent.mkdir(parents=True)
        picture(50 + patient, (320, 320)).convert("RGB").save(top / path)
        rows.append(f"CheXpert-v1.0-small/{path},Female,70,Frontal,AP,,,1.0" + "," * 11)
    (top / "train.csv").write_text("\n".join(rows) + "\n")
    (top / "valid.csv").write_text(CHEXPERT_HEADER + "\n")
    named = [f"CheXpert-v1.0-small/train/patient{p:05d}/study1/view1_frontal.jpg" for p in (2, 5)]
    evals = tmp_path / "evals" / "chexpert-5x200"
    evals.mkdir(parents=True)  # only the CSV: the images are not at hand
    (evals / "chexpert_5x200.csv").write_text("Path,label\n" + "".join(f"{p},Cardiomegaly\n" for p in named))
    manifest = tmp_path / "chexpert-5x200.yaml"
    manifest.write_text(
        "name: chexpert-5x200\nmodality: xray\nlicense: research\nrole: eval\nsplit: {by: fixed, split: test}\n"
        "layout: {type: csv_label, csv: chexpert_5x200.csv, image_column: Path, label_column: label}\n"
    )
    build = tmp_path / "build.yaml"
    build.write_text(f"datasets: [{{manifest: chexpert-v1.0-small, root: '{raw}'}}]\n")
    out = tmp_path / "out"
    result = run_cli("build", build, "--out", out, "--protect", f"{manifest}={tmp_path / 'evals'}")
    assert result.exit_code == 0, result.output
    removed = pq.read_table(out / "contamination.parquet").to_pylist()
    assert sorted(Path(r["source_path"]).relative_to(top).as_posix() for r in removed) == [
        p.removeprefix("CheXpert-v1.0-small/") for p in named
    ]
    assert {r["kind"] for r in removed} == {"path"}
    assert len(shard_captions(out)) == 6


def test_unimeds_benchmark_is_read_from_its_archive_and_kept_out(tmp_path):
    from tests.test_evalset_unimed_archive import extracted

    archive, notes = extracted(tmp_path)
    shutil.copytree(notes, archive / "local_data")
    images_in_archive = (p for p in archive.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".tif"))
    leaked = sorted(images_in_archive)[0]
    root = tmp_path / "raw"
    images = {f"{i}.png": (picture(60 + i), f"figure {i}") for i in range(3)}
    pool = captions_source(root, "figures", images, tmp_path)
    shutil.copy(leaked, root / "figures" / f"leak{leaked.suffix}")
    with (root / "figures" / "pairs.csv").open("a") as pairs:
        pairs.write(f'leak{leaked.suffix},"a benchmark image"\n')
    out = tmp_path / "out"
    result = run_cli(
        "build", config(tmp_path, root, [pool]), "--out", out, "--protect", f"unimed-benchmark={archive}"
    )
    assert result.exit_code == 0, result.output
    [row] = pq.read_table(out / "contamination.parquet").to_pylist()
    assert Path(row["source_path"]).name.startswith("leak") and row["kind"] in ("exact", "near")
    stats = json.loads((out / "stats.json").read_text())
    assert len(stats["protected"]) == 21 and sum(s["removed"] for s in stats["protected"].values()) == 1


def test_a_table_converted_before_fingerprints_is_refused_with_what_to_rerun(tmp_path):
    old = tmp_path / "captioned.parquet"
    pq.write_table(pa.table({"key": ["a"], "source_path": ["/raw/a.png"], "patient_id": [None]}), old)
    with pytest.raises(ValueError, match="older unimed-data, without image fingerprints; rerun `convert`"):
        Tables([old], tmp_path / "thumbs.bin").scan()
