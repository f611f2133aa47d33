"""Trainer checkpoints anyone can load: `weights_only=True`, plain open_clip, CLIP_benchmark's CLI;
and checkpoints of the older format (numpy/Python RNG objects) still resume, behind a flag."""

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

import torch
from unimed_train.main import main

from tests.tiny_models import TINY, shards, tiny_argv
from tests.wds_samples import write_evalset


def train(tmp_path: Path, demo_out: Path, name: str, *extra: str) -> list[dict]:
    out = tmp_path / name
    flags = ["--batch-size", "8", "--lr", "1e-3", "--warmup", "2", "--steps", "4", "--save-every", "2"]
    main(tiny_argv(tmp_path, shards(demo_out), out, *flags, *extra))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_fresh_checkpoint_loads_in_open_clip_and_clip_benchmark(tmp_path, demo_out, monkeypatch):
    import open_clip
    from clip_benchmark import cli

    train(tmp_path, demo_out, "run")
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    saved = torch.load(latest, map_location="cpu", weights_only=True)["state_dict"]
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "unimed-ckpt-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(configs)

    model, _, _ = open_clip.create_model_and_transforms("unimed-ckpt-tiny", pretrained=str(latest))
    assert model.state_dict().keys() == saved.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())

    loaded = []  # the model CLIP_benchmark's CLI builds, through open_clip
    create = open_clip.create_model_and_transforms
    monkeypatch.setattr(
        open_clip, "create_model_and_transforms", lambda *a, **k: loaded.append(create(*a, **k)) or loaded[-1]
    )
    root = write_evalset(tmp_path / "shapes", n_classes=3, splits={"test": 2})
    report = tmp_path / "report.json"
    argv = ["clip_benchmark", "eval", "--model", "unimed-ckpt-tiny", "--pretrained", str(latest)]
    argv += ["--dataset", f"wds/{root.name}", "--dataset_root", str(root), "--output", str(report)]
    argv += ["--task", "zeroshot_classification", "--batch_size", "4", "--num_workers", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    cli.main()
    assert "acc1" in json.loads(report.read_text())["metrics"]
    (theirs,) = [m.state_dict() for m, _, _ in loaded]
    assert all(torch.equal(theirs[k], v) for k, v in saved.items())


def _as_legacy(path: Path) -> None:
    """Rewrite a checkpoint the way the trainer saved them before: numpy and Python RNG objects."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for state in checkpoint["rng"]:
        keys = state["numpy"].numpy().astype(np.uint32)
        state["numpy"] = (state["numpy_kind"], keys, state["numpy_pos"], *state["numpy_gauss"])
        state["python"] = (state["python_version"], tuple(state["python"].tolist()), state["python_gauss"])
        for key in ("numpy_kind", "numpy_pos", "numpy_gauss", "python_version", "python_gauss"):
            del state[key]
    torch.save(checkpoint, path)


def test_an_older_checkpoint_resumes_only_with_the_flag_and_exactly(tmp_path, demo_out, capsys):
    unbroken = train(tmp_path, demo_out, "unbroken")
    train(tmp_path, demo_out, "old", "--stop-after", "2")
    latest = tmp_path / "old" / "checkpoints" / "latest.pt"
    _as_legacy(latest)
    with pytest.raises(Exception):  # noqa: B017 (torch's own error type for a refused pickle)
        torch.load(latest, weights_only=True)

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        train(tmp_path, demo_out, "old", "--resume", "latest")
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--legacy-resume" in err

    resumed = train(tmp_path, demo_out, "old", "--resume", "latest", "--legacy-resume")
    after = [r for r in resumed if r["step"] > 2]
    for mine, theirs in zip(after, unbroken[2:], strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5, abs=1e-6)
    assert torch.load(latest, weights_only=True)["step"] == 4  # saved again in the new format


def test_rng_states_round_trip_as_tensors():
    from unimed_train.checkpoints import rng_state, set_rng_state

    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    np.random.normal()  # a cached Gaussian in numpy's state
    state = rng_state()
    expected = (random.random(), np.random.normal(), torch.rand(1))
    random.seed(0)
    np.random.seed(0)
    set_rng_state(state)
    assert (random.random(), np.random.normal(), torch.rand(1)) == expected
