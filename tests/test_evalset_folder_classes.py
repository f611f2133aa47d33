"""A folder tree gets the same labels from `build --from-folder` and `evalset --from-folder`:
both name classes by the `folder` layout's one rule (the image's parent folder, worded by the
manifest: `_` reads as a space)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from tests.conftest import run_cli, shard_json_field


def sample_labels(out: Path) -> dict[str, list[str]]:
    """Each sample's labels, by key, from the json members of every tar under `out`."""
    return shard_json_field(out, "labels")


def test_build_and_evalset_label_a_nested_tree_alike(tmp_path):
    tree = tmp_path / "chest"
    for index, relpath in enumerate(
        [
            "ward_a/pleural_effusion/1.png",
            "ward_b/pleural-effusion/2.png",
            "no_finding/3.png",
            "no-finding/patient 7/4.png",
            "no-finding/5.png",
        ]
    ):
        (tree / relpath).parent.mkdir(parents=True, exist_ok=True)
        noise = random.Random(index).randbytes(48 * 40 * 3)  # five distinct images: dedupe keeps all
        Image.frombytes("RGB", (48, 40), noise).save(tree / relpath)
    built, evalset = tmp_path / "built", tmp_path / "eval"
    args = ("--from-folder", tree, "--modality", "xray")
    assert run_cli("build", *args, "--out", built).exit_code == 0
    assert run_cli("evalset", *args, "--out", evalset).exit_code == 0

    from_build, from_evalset = sample_labels(built), sample_labels(evalset)
    assert from_build == from_evalset and len(from_evalset) == 5
    assert sorted(map(tuple, from_evalset.values())) == [
        ("no finding",),
        ("no-finding",),
        ("patient 7",),
        ("pleural effusion",),
        ("pleural-effusion",),
    ]
    classes = "no finding\nno-finding\npatient 7\npleural effusion\npleural-effusion\n"
    assert (evalset / "classnames.txt").read_text() == classes


def test_build_and_evalset_give_a_bad_image_the_same_reason(tmp_path):
    tree = tmp_path / "chest"
    (tree / "normal").mkdir(parents=True)
    (tree / "effusion").mkdir()
    Image.new("RGB", (48, 40), (10, 90, 200)).save(tree / "normal" / "1.png")
    Image.new("RGB", (48, 40), (90, 10, 200)).save(tree / "effusion" / "2.png")
    (tree / "normal" / "3.png").write_bytes(b"not an image")
    built, evalset = tmp_path / "built", tmp_path / "eval"
    args = ("--from-folder", tree, "--modality", "xray")
    assert run_cli("build", *args, "--out", built).exit_code == 0
    assert run_cli("evalset", *args, "--out", evalset).exit_code == 0

    build_errors = pq.read_table(built / "errors.parquet").to_pylist()
    evalset_errors = pq.read_table(evalset / "errors.parquet").to_pylist()
    assert [(r["stage"], r["reason"]) for r in build_errors] == [
        (r["stage"], r["reason"]) for r in evalset_errors
    ]
    assert len(evalset_errors) == 1 and evalset_errors[0]["source_path"].endswith("3.png")
