"""`unimed-data build --recipe unimed`: UniMed rebuilt from its released caption annotations."""

from __future__ import annotations

import json
import shutil

import pytest
import webdataset as wds

from tests.conftest import run_cli
from tests.unimed_raw import make_unimed_raw
from unimed_data.config import load_config, recipe_path
from unimed_data.tables import iter_rows

UNIMED_COUNTS = {
    "unimed-radimagenet": 1_049_000,
    "unimed-chexpert": 212_000,
    "unimed-openi": 7_000,
    "unimed-chestxray8": 113_000,
    "unimed-mimic-cxr": 270_000,
    "unimed-rocov2": 61_000,
    "unimed-pmc-oa": 1_645_000,
    "unimed-llava-med-alignment": 468_000,
    "unimed-llava-med-instruct": 265_000,
    "unimed-quilt": 1_018_000,
    "unimed-retina-flair": 155_000,
    "unimed-retina-den": 13_000,
    "unimed-mm-retinal": 6_000,
}


def _samples(out):
    samples = []
    for split in ("train", "val", "test"):
        folder = out / split
        if (folder / "sizes.json").exists():
            shards = [str(folder / name) for name in json.loads((folder / "sizes.json").read_text())]
            samples += list(wds.WebDataset(shards, shardshuffle=False).decode())
    return samples


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("unimed")
    expected = make_unimed_raw(root / "raw")
    out = root / "out"
    result = run_cli("build", "--recipe", "unimed", "--root", root / "raw", "--out", out, "--workers", "1")
    return root, out, expected, result


def test_the_recipe_lists_unimeds_thirteen_parts_with_its_counts(tmp_path):
    config = load_config(recipe_path("unimed"), root=tmp_path)
    counts = {entry.manifest: entry.expected_samples for entry in config.datasets}
    assert counts == UNIMED_COUNTS and sum(counts.values()) == 5_282_000
    assert config.reference == "UniMed" and all(entry.root == tmp_path for entry in config.datasets)


def test_captions_in_the_shards_are_the_annotation_files_captions(built):
    _, out, expected, result = built
    assert result.exit_code == 0, result.output
    by_dataset: dict[str, list] = {}
    for sample in _samples(out):
        meta = sample["json"]
        by_dataset.setdefault(meta["dataset"], []).append(meta)
        assert sample["txt"] == meta["captions"][0]
    for part, images in expected["captions"].items():
        got = by_dataset[part]
        if part == "unimed-retina-den":  # DEN's captions are our own wording of its kept categories
            [meta] = got
            assert meta["labels"] == ["drusen"] and all("drusen" in c for c in meta["captions"])
            continue
        assert sorted(tuple(c) for c in images.values()) == sorted(tuple(m["captions"]) for m in got), part
        source = "original" if part in ("unimed-rocov2", "unimed-pmc-oa", "unimed-quilt") else "unimed"
        assert {m["caption_source"] for m in got} == {source}, part


def test_openi_and_mimic_keep_the_original_report_beside_the_captions(built):
    _, out, _, _ = built
    metas = [s["json"] for s in _samples(out)]
    openi = [m for m in metas if m["dataset"] == "unimed-openi"]
    assert all(m["report"] == m["captions"][0] for m in openi)  # the original caption, then the refined
    mimic = {m["report"]: m for m in metas if m["dataset"] == "unimed-mimic-cxr"}
    assert mimic["FINDINGS: consolidation."]["captions"][0] == "FINDINGS: consolidation."
    assert None in mimic and mimic[None]["captions"] == ["Normal study.", "Clear lungs."]


def test_radimagenet_images_take_their_modality_from_their_folder(built):
    _, out, _, _ = built
    metas = [s["json"] for s in _samples(out) if s["json"]["dataset"] == "unimed-radimagenet"]
    assert sorted(m["modality"] for m in metas) == ["ct", "mri"]


def test_the_retinal_files_unimed_skips_are_named_not_read(built):
    _, _, _, result = built
    assert (
        "unimed-retina-flair: not read (its layout's `skip` list): Retina-Annotations/01_EYEPACS_revised.csv"
        in (result.output.replace("\n", " "))
    )


def test_keys_are_unique_across_parts(built):
    _, out, _, _ = built
    keys = [sample["__key__"] for sample in _samples(out)]
    assert len(keys) == len(set(keys))


def test_a_missing_image_is_an_error_row_and_counts_add_up(built):
    _, out, expected, _ = built
    errors = list(iter_rows(out / "errors.parquet"))
    [missing] = expected["missing"]["unimed-chexpert"]
    assert [row["dataset"] for row in errors] == ["unimed-chexpert"]
    assert errors[0]["source_path"].endswith(missing.split("/", 1)[1])
    stats = json.loads((out / "stats.json").read_text())
    totals = stats["totals"]
    assert (
        totals["balanced"] and totals["inputs"] == totals["samples"] + totals["errors"] + totals["filtered"]
    )
    assert totals["filtered"] >= 1  # the banned cataract row of the retinal part


def test_stats_show_each_part_against_unimeds_count(built):
    _, out, _, _ = built
    reference = json.loads((out / "stats.json").read_text())["reference"]
    assert reference["name"] == "UniMed" and reference["expected_total"] == 5_282_000
    assert {name: part["expected"] for name, part in reference["parts"].items()} == UNIMED_COUNTS
    assert reference["parts"]["unimed-chexpert"]["samples"] == 2
    assert "UniMed" in (out / "README.md").read_text()
    shown = run_cli("stats", out)
    assert "UniMed" in shown.output and "unimed-quilt" in shown.output


def test_an_absent_part_is_reported_once_and_the_rest_is_built(built, tmp_path):
    root, _, _, _ = built
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw)
    shutil.rmtree(raw / "Quilt")
    (raw / "openI" if (raw / "openI").exists() else raw / "OpenI").joinpath("filter_cap.json").unlink()
    out = tmp_path / "out"
    result = run_cli("build", "--recipe", "unimed", "--root", raw, "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert result.output.count("unimed-quilt: left out: folder") == 1
    assert "unimed-openi: left out: annotation file(s) not found" in result.output
    reference = json.loads((out / "stats.json").read_text())["reference"]["parts"]
    assert reference["unimed-quilt"]["samples"] == 0 and reference["unimed-quilt"]["missing"]
    assert reference["unimed-chexpert"]["samples"] == 2

    strict = run_cli("build", "--recipe", "unimed", "--root", raw, "--out", tmp_path / "strict", "--strict")
    assert strict.exit_code == 2 and strict.output.startswith("error: dataset unimed-openi")
    assert not (tmp_path / "strict").exists()


def test_a_part_whose_annotations_cannot_be_read_is_left_out_and_the_rest_built(built, tmp_path):
    root, _, _, _ = built
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw)
    (raw / "OpenI" / "openai_refined_concepts.json").write_text(json.dumps({"refined_captions": [["x"]]}))
    result = run_cli("build", "--recipe", "unimed", "--root", raw, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("unimed-openi: left out:")]
    assert "filter_cap.json has 2 annotations but openai_refined_concepts.json has 1" in line
    parts = json.loads((tmp_path / "out" / "stats.json").read_text())["reference"]["parts"]
    assert parts["unimed-openi"]["samples"] == 0 and parts["unimed-openi"]["missing"]
    assert parts["unimed-chexpert"]["samples"] == 2

    strict = run_cli("build", "--recipe", "unimed", "--root", raw, "--out", tmp_path / "strict", "--strict")
    assert strict.exit_code == 2 and "openai_refined_concepts.json" in strict.output


def test_txt_format_unimed_glues_the_captions_as_unimeds_trainer_reads_them(built, tmp_path):
    root, _, _, _ = built
    out = tmp_path / "out"
    result = run_cli(
        "build", "--recipe", "unimed", "--root", root / "raw", "--out", out, "--txt-format", "unimed"
    )
    assert result.exit_code == 0, result.output
    for sample in _samples(out):
        meta = sample["json"]
        if meta["dataset"] == "unimed-chexpert":
            assert sample["txt"] == "_chexpert_".join(meta["captions"])
        elif meta["dataset"] == "unimed-mimic-cxr" and meta["report"]:
            assert sample["txt"].split("_mimiccxr_")[-1] == meta["report"]


def test_the_recipe_needs_a_root_and_a_known_name(tmp_path):
    result = run_cli("build", "--recipe", "unimed", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "needs --root" in result.output
    result = run_cli("build", "--recipe", "unimedd", "--root", tmp_path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no such recipe" in result.output and "unimed" in result.output


def test_download_checks_a_parts_files_in_the_folder_a_build_reads(tmp_path):
    (tmp_path / "OpenI").mkdir()
    result = run_cli("download", "unimed-openi", "--root", tmp_path)
    assert result.exit_code == 1 and "filter_cap.json" in result.output  # says what to place, and where
    for name in ("filter_cap.json", "openai_refined_concepts.json"):
        (tmp_path / "OpenI" / name).write_text("{}")
    result = run_cli("download", "unimed-openi", "--root", tmp_path)
    assert result.exit_code == 0 and f"already complete in {tmp_path / 'OpenI'}" in result.output
