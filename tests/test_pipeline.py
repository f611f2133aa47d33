"""Stage orchestration: stale inputs refused, outputs kept apart from inputs, odd names and paths."""

import json
import random
import shutil
from pathlib import Path

from PIL import Image

from tests.conftest import run_cli
from unimed_data.stages import shard as shard_stage


def make_tree(root: Path, classes=("edema", "normal"), per_class=3) -> Path:
    """Distinct noise images (seeded by their path in the tree), so dedupe keeps every one."""
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (40 + i, 36)
            noise = random.Random(f"{root.name}/{name}/{i}").randbytes(size[0] * size[1])
            Image.frombytes("L", size, noise).save(root / name / f"{i}.png")
    return root


def build(*args) -> None:
    result = run_cli("build", *args)
    assert result.exit_code == 0, result.output


def test_a_stage_run_alone_refuses_tables_left_stale_by_an_upstream_rerun(demo_out: Path, tmp_path: Path):
    out = tmp_path / "copy"
    shutil.copytree(demo_out, out, symlinks=True)
    assert run_cli("ingest", "--demo", "--out", out, "--seed", "5").exit_code == 0
    result = run_cli("shard", "--demo", "--out", out, "--seed", "5")
    assert result.exit_code == 2
    assert "out of date" in result.output and "run `convert` first" in result.output


def test_output_inside_the_source_tree_is_refused(tmp_path: Path):
    tree = make_tree(tmp_path / "data")
    result = run_cli("build", "--from-folder", tree, "--modality", "xray", "--out", tree / "out")
    assert result.exit_code == 2 and "inside the files of dataset" in result.output


def test_out_that_is_a_file_and_a_build_without_samples_fail_clearly(tmp_path: Path):
    (tmp_path / "afile").write_text("x")
    result = run_cli("build", "--demo", "--out", tmp_path / "afile")
    assert result.exit_code == 2 and "is not a folder" in result.output
    (tmp_path / "empty").mkdir()
    result = run_cli(
        "build", "--from-folder", tmp_path / "empty", "--modality", "ct", "--out", tmp_path / "o"
    )
    assert result.exit_code == 1 and "no sample was written" in result.output


def test_dataset_names_that_are_long_or_match_build_files_work(tmp_path: Path):
    long_name = "chest_xray_pneumonia_dataset_kermany_2018_guangzhou_womens_and_childrens_medical_center_v2"
    for name in (long_name, "salt", "shuffle"):
        tree = make_tree(tmp_path / name)
        out = tmp_path / f"out-{name[:10]}"
        build("--from-folder", tree, "--modality", "xray", "--out", out)
        assert json.loads((out / "stats.json").read_text())["totals"]["samples"] == 6
        assert run_cli("validate", out).exit_code == 0


def test_a_relative_output_folder_works_from_any_working_directory(tmp_path: Path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    monkeypatch.chdir(tmp_path)
    build("--from-folder", "tree", "--modality", "xray", "--out", "rel")
    monkeypatch.chdir("/")
    result = run_cli(
        "shard", "--from-folder", tree, "--modality", "xray", "--out", tmp_path / "rel", "--seed", "3"
    )
    assert result.exit_code == 0, result.output


def test_only_the_builds_own_temp_files_are_cleaned(tmp_path: Path):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    build("--from-folder", tree, "--modality", "xray", "--out", out)
    left = out / "work" / ".records.parquet.4242.tmp"
    user = out / ".notes.tmp"
    left.write_text("half")
    user.write_text("mine")
    build("--from-folder", tree, "--modality", "xray", "--out", out)
    assert not left.exists() and user.exists()


def test_an_interrupted_build_of_another_config_does_not_poison_the_next(tmp_path: Path, monkeypatch):
    make_tree(tmp_path / "raw" / "all-train", per_class=6)
    (tmp_path / "all-train.yaml").write_text(
        "name: all-train\nmodality: xray\nlicense: CC0\nlayout: {type: folder}\n"
        "split: {by: fixed, split: train}\n"
    )

    def build_with(shard_size: int):
        config = tmp_path / f"build-{shard_size}.yaml"
        config.write_text(
            f"datasets: [{{manifest: all-train.yaml, root: raw}}]\nshard: {{shard_size: {shard_size}}}\n"
        )
        return run_cli("build", config, "--out", tmp_path / "out")

    assert build_with(100).exit_code == 0
    original = shard_stage._write_split

    def stop_after_train(ws, split, *args, **kwargs):
        if split != "train":
            raise KeyboardInterrupt
        return original(ws, split, *args, **kwargs)

    monkeypatch.setattr(shard_stage, "_write_split", stop_after_train)
    assert build_with(2).exit_code == 130  # interrupted after writing its train shards
    assert len(list((tmp_path / "out" / "train").glob("*.tar"))) == 6
    monkeypatch.setattr(shard_stage, "_write_split", original)
    assert build_with(100).exit_code == 0
    assert run_cli("validate", tmp_path / "out").exit_code == 0
    assert len(list((tmp_path / "out" / "train").glob("*.tar"))) == 1


def test_evaluation_only_sources_are_left_out_of_a_pretraining_build(tmp_path: Path):
    for name, role in (("pretrain-set", "pretrain"), ("eval-set", "eval")):
        make_tree(tmp_path / "raw" / name)
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nmodality: ct\nlicense: CC0\nrole: {role}\nlayout: {{type: folder}}\n"
        )
    config = tmp_path / "build.yaml"
    config.write_text(
        "datasets:\n  - {manifest: pretrain-set.yaml, root: raw}\n  - {manifest: eval-set.yaml, root: raw}\n"
    )
    result = run_cli("build", config, "--out", tmp_path / "out")
    assert result.exit_code == 0 and "left out evaluation-only sources: eval-set" in result.output
    assert set(json.loads((tmp_path / "out" / "stats.json").read_text())["datasets"]) == {"pretrain-set"}
    config.write_text(config.read_text() + "include_eval: true\n")
    assert run_cli("build", config, "--out", tmp_path / "out2").exit_code == 0
    assert set(json.loads((tmp_path / "out2" / "stats.json").read_text())["datasets"]) == {
        "pretrain-set",
        "eval-set",
    }


def test_min_side_filters_small_images_and_the_counts_add_up(tmp_path: Path):
    tree = tmp_path / "data"
    for name, size in {"ok": (40, 40), "thin": (20, 60), "dot": (1, 1)}.items():
        (tree / "finding").mkdir(parents=True, exist_ok=True)
        Image.new("L", size).save(tree / "finding" / f"{name}.png")
    out = tmp_path / "out"
    build("--from-folder", tree, "--modality", "xray", "--out", out, "--min-side", "21")
    totals = json.loads((out / "stats.json").read_text())["totals"]
    assert (totals["inputs"], totals["samples"], totals["filtered"], totals["errors"]) == (3, 1, 2, 0)
    assert totals["balanced"]
