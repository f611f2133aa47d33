"""A tiny open_clip model for CPU tests: its config, trainer arguments, and saved forms of it."""

import json
from pathlib import Path

import torch
from unimed_train.checkpoints import rng_state
from unimed_train.export import save_local_dir
from unimed_train.model import build_model

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def shards(demo_out: Path) -> str:
    sizes = json.loads((demo_out / "train" / "sizes.json").read_text())
    return str(demo_out / "train" / f"unimed-{{000000..{len(sizes) - 1:06d}}}.tar")


def tiny_argv(tmp_path: Path, data: str, out: Path, *extra: str) -> list[str]:
    """Arguments for the tiny test model on `data`, logging every step to `out`; `extra` wins."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    base = ["--train-data", data, "--model", "tiny", "--model-cfg", str(config), "--workers", "0"]
    return [*base, "--log-every", "1", "--out", str(out), *extra]


def tiny_local_dir(path: Path, seed: int = 0) -> str:
    """A seeded random tiny model saved in open_clip's local-dir layout; returns `local-dir:PATH`."""
    torch.manual_seed(seed)
    return save_local_dir(build_model(TINY).model, TINY, path)


def tiny_checkpoint(path: Path, seed: int = 1) -> str:
    """A checkpoint the way our trainer writes it: state_dict, config (TrainConfig dict), the
    resolved architecture, RNG states as tensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = path.parent / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    torch.manual_seed(seed)
    model = build_model("tiny", model_cfg=str(cfg)).model
    config = {"model": "tiny", "model_cfg": str(cfg), "text_encoder": None, "context_length": None}
    rng = [rng_state()]
    saved = {"state_dict": model.state_dict(), "config": config, "model_cfg": TINY, "rng": rng, "step": 3}
    torch.save(saved, path)
    return str(path)
