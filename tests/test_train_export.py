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


def test_export_says_what_it_loaded_writes_readable_files_and_owns_its_folder(tmp_path: Path, capsys, caplog):
    import logging
    import os

    checkpoint = tiny_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    out = tmp_path / "model"
    out.mkdir()
    (out / "README.md").write_text("model card")
    caplog.set_level(logging.INFO)
    with pytest.raises(SystemExit) as refused:
        main(["--checkpoint", checkpoint, "--out", str(out)])
    refusal = capsys.readouterr().err.splitlines()[-1]  # after the `loaded` line: claimed once loaded
    assert refused.value.code == 2 and refusal.startswith(f"error: {out}: not empty")
    umask = os.umask(0o022)
    try:
        main(["--checkpoint", checkpoint, "--out", str(out), "--force"])
    finally:
        os.umask(umask)
    err = capsys.readouterr().err
    assert f"loaded {checkpoint}: " in err and " tensors (model tiny)" in err
    assert "initialized randomly" not in caplog.text + err  # open_clip's notice, before our load
    assert (out / WEIGHTS).stat().st_mode & 0o777 == 0o644 == (out / CONFIG).stat().st_mode & 0o777
    assert (out / "README.md").read_text() == "model card"
    main(["--checkpoint", checkpoint, "--out", str(out)])  # our folder now: a rerun needs no --force


def test_export_mistakes_are_one_error_line(tmp_path: Path, capsys):
    weights = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(weights))
    for argv, said in (
        (
            ["--checkpoint", str(tmp_path / "gone.pt"), "--out", str(tmp_path / "a")],
            "no such checkpoint file",
        ),
        (
            ["--checkpoint", str(weights), "--out", str(tmp_path / "b")],
            "not a checkpoint of unimed_train.main",
        ),
        (["--out", str(tmp_path / "c")], "the following arguments are required: --checkpoint"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert said in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_folder_is_claimed_only_once_the_checkpoint_loaded_and_owns_what_was_written(
    tmp_path: Path, capsys
):
    checkpoint = tmp_path / "odd.pt"
    saved = torch.load(tiny_checkpoint(tmp_path / "run" / "latest.pt"), weights_only=False)
    saved["config"]["model"] = "no-such-model"
    del saved["model_cfg"]
    saved["config"]["model_cfg"] = None
    torch.save(saved, checkpoint)
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "unknown open_clip model 'no-such-model'" in err, err
    assert not (tmp_path / "model").exists()
    main(["--checkpoint", str(tmp_path / "run" / "latest.pt"), "--out", str(tmp_path / "model")])
    assert json.loads((tmp_path / "model" / ".unimed-data.json").read_text())["owned"] == [CONFIG, WEIGHTS]
