"""Exporting a trainer checkpoint as an open_clip model folder that open_clip itself loads."""

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

import open_clip
import torch
from unimed_train.export import CONFIG, WEIGHTS, main

from tests.tiny_models import TINY, tiny_checkpoint


def test_a_checkpoint_exports_to_a_folder_open_clip_loads_as_local_dir(tmp_path: Path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    (tmp_path / "run" / "checkpoints" / "tiny.json").unlink()  # the checkpoint describes itself
    main(["--checkpoint", checkpoint, "--out", str(tmp_path / "model")])
    name = capsys.readouterr().out.strip()
    assert name == f"local-dir:{tmp_path / 'model'}"
    assert json.loads((tmp_path / "model" / CONFIG).read_text())["model_cfg"] == TINY
    assert (tmp_path / "model" / WEIGHTS).is_file() and not list((tmp_path / "model").glob(".*tmp"))

    model, _, preprocess = open_clip.create_model_and_transforms(name)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert preprocess.transforms[0].size in (32, (32, 32))
