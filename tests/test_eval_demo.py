"""The whole loop on the demo corpus: build -> held-out eval set -> train -> evaluate beats chance."""

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.eval.__main__ import main as evaluate
from unimed_train.main import main as train

from tests.conftest import run_cli
from tests.tiny_models import shards, tiny_argv


def test_a_model_trained_on_the_demo_beats_chance_on_its_held_out_split(tmp_path: Path, demo_out: Path):
    evalset = tmp_path / "demo-modality"
    made = run_cli(
        "evalset", "--from-build", demo_out, "--split", "val,test", "--train-split", "train",
        "--task", "modality", "--out", evalset,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    classes = (evalset / "classnames.txt").read_text().splitlines()
    assert {"CT", "MRI", "X-ray", "ultrasound"} <= set(classes)

    run = tmp_path / "run"
    train(
        tiny_argv(
            tmp_path,
            shards(demo_out),
            run,
            "--steps",
            "150",
            "--batch-size",
            "16",
            "--lr",
            "1e-3",
            "--warmup",
            "10",
        )
    )
    checkpoint = run / "checkpoints" / "latest.pt"
    (tmp_path / "tiny.json").unlink()  # the checkpoint alone describes its architecture
    report = tmp_path / "report"
    assert evaluate(["--pretrained", str(checkpoint), "--data", str(evalset), "--out", str(report)]) == 0

    entries = {e["task"]: e for e in json.loads((report / "results.json").read_text())}
    zeroshot, probe = entries["zeroshot"]["metrics"], entries["linear_probe"]["metrics"]
    held_out = [sum(row) for row in zeroshot["confusion"]]
    majority = max(held_out) / sum(held_out)  # always answering the commonest class
    assert zeroshot["balanced_accuracy"] > 1.5 / len(classes), zeroshot  # chance is 1 / classes
    assert zeroshot["top1"] > majority, (zeroshot["top1"], majority)
    assert probe["balanced_accuracy"] > 1.5 / len(classes), probe
    assert "zeroshot" in (report / "results.md").read_text()
