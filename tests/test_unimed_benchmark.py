"""UniMed's benchmark end to end: the evaluation archive -> `evalset --recipe unimed` -> the
evaluator's `--protocol unimed` with a prompt file, as a user runs them one after the other."""

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.eval.__main__ import main

from tests.conftest import run_cli
from tests.test_evalset_unimed_archive import KEYS, make_archive
from tests.tiny_models import tiny_local_dir

AUROC_SETS = {"acl_mri", "meniscal_mri", "breast_us", "thyroid_us", "refuge_retina"}


def _prompt_file(path: Path, evals: Path) -> None:
    """A constants.py-like file of our own made-up sentences: one dict per recorded `prompt_dict`."""
    lines = ["import os  # never run: the evaluator reads this file with ast", ""]
    for info_path in sorted(evals.glob("*/info.json")):
        info = json.loads(info_path.read_text())
        prompts = {name: [f"an image of {name}", f"{name} is seen"] for name in info["classes"]}
        lines.append(f"{info['prompt_dict']} = {prompts!r}")
    path.write_text("\n".join(lines) + "\n")


def test_the_archive_scores_as_unimeds_table(tmp_path):
    root, notes, evals = tmp_path / "extracted", tmp_path / "local_data", tmp_path / "EVALS"
    make_archive(root, notes)
    written = run_cli("evalset", "--recipe", "unimed", "--root", root, "--annotations", notes, "--out", evals)
    assert written.exit_code == 0, written.output
    _prompt_file(tmp_path / "constants.py", evals)

    out = tmp_path / "report"
    argv = ["--pretrained", tiny_local_dir(tmp_path / "model"), "--data", str(evals), "--out", str(out)]
    argv += ["--prompts", str(tmp_path / "constants.py"), "--protocol", "unimed", "--workers", "0"]
    assert main(argv) == 0

    entries = json.loads((out / "results.json").read_text())
    assert sorted(e["dataset"] for e in entries) == sorted(KEYS) and len(entries) == 21
    assert {e["dataset"] for e in entries if e["metric"] == "auroc"} == AUROC_SETS
    assert all(e["status"] == "ok" and 0 <= e["score"] <= 1 for e in entries)
    by_column: dict[str, list[float]] = {}
    for entry in entries:
        by_column.setdefault(entry["column"], []).append(100 * entry["score"])
    plain = sum(100 * e["score"] for e in entries) / 21
    of_means = sum(sum(v) / len(v) for v in by_column.values()) / len(by_column)
    table = (out / "results.md").read_text()
    assert "Average (mean of 21 sets)" in table and "Average (mean of modality means)" in table
    row = next(line for line in table.splitlines() if line.startswith("| ") and f"{plain:.2f}" in line)
    assert f"{of_means:.2f}" in row
