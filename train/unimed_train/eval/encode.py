"""Model loading and feature extraction for evaluation.

A model is given as (model, pretrained) the way the trainer takes them: an open_clip name or JSON config
plus a tag, ``hf-hub:``/``local-dir:`` source or checkpoint file. Our trainer's checkpoints carry their
TrainConfig, so for those the architecture (model, model_cfg, text_encoder, context_length) is rebuilt
from it when no model is named. All features come back L2-normalised, float32, on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from unimed_train.cli import UsageError
from unimed_train.model import SCHEMA_PREFIXES, Built, LoadReport, build_model
from unimed_train.precision import autocast

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass
class ModelSpec:
    """One model to evaluate; `label` names it in tables and plots."""

    label: str
    model: str | None = None
    pretrained: str | None = None
    text_encoder: str | None = None
    model_cfg: str | None = None
    context_length: int | None = None


def _trainer_safe_globals():
    """Checkpoints of earlier trainer versions hold numpy RNG state; allow exactly those types under
    weights_only, so they still evaluate (current checkpoints need none of them)."""
    core = getattr(np, "_core", None) or np.core
    return torch.serialization.safe_globals(
        [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    )


def saved_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The TrainConfig dict saved in one of our trainer's checkpoints (None for other files), with
    `model_cfg` replaced by the resolved architecture the checkpoint carries, when it has one."""
    try:
        with _trainer_safe_globals():
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # safetensors, TorchScript, other pickles: not ours, so no config
        return None
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(config, dict):
        return None
    if isinstance(ckpt.get("model_cfg"), dict):
        config = {**config, "model_cfg": ckpt["model_cfg"]}
    return config


def check_checkpoint(pretrained: str | None) -> None:
    """UsageError when `pretrained` reads as a file path (not a tag or hub name) and is no file."""
    if not pretrained or os.path.isfile(pretrained) or pretrained.startswith(SCHEMA_PREFIXES):
        return
    if os.sep in pretrained or Path(pretrained).suffix in CHECKPOINT_SUFFIXES:
        raise UsageError(f"{pretrained}: no such checkpoint file")


def load_model(spec: ModelSpec, device: str = "cpu", precision: str = "fp32") -> Built:
    """Build `spec` in eval mode; flags given in `spec` win over a checkpoint's saved config."""
    model, model_cfg = spec.model, spec.model_cfg
    text_encoder, context_length = spec.text_encoder, spec.context_length
    pretrained = spec.pretrained
    check_checkpoint(pretrained)
    is_file = bool(pretrained) and os.path.isfile(str(pretrained))
    if is_file and model is None:
        config = saved_config(pretrained)
        if config is None:
            raise ValueError(f"{pretrained}: no saved trainer config in this checkpoint; give --model")
        model = config.get("model")
        model_cfg = model_cfg or config.get("model_cfg")
        text_encoder = text_encoder or config.get("text_encoder")
        context_length = context_length or config.get("context_length")
        if isinstance(model_cfg, str) and not Path(model_cfg).is_file():
            raise ValueError(f"{pretrained}: its model_cfg {model_cfg} does not exist here; give --model-cfg")
    if model is None and pretrained and pretrained.startswith(SCHEMA_PREFIXES):
        model = pretrained
    if model is None:
        raise ValueError(
            f"model {spec.label!r}: give --model (pretrained={pretrained!r} names no architecture)"
        )
    with _trainer_safe_globals() if is_file else contextlib.nullcontext():
        built = build_model(
            model,
            model_cfg=model_cfg,
            text_encoder=text_encoder,
            context_length=context_length,
            pretrained=pretrained,
            device=device,
            precision=precision,
        )
    built.model.eval()
    print(_loaded(model, pretrained, built.load_report), file=sys.stderr)
    return built


def _loaded(model: str, pretrained: str | None, report: LoadReport | None) -> str:
    """One line on what was really loaded (open_clip's own notice says "initialized randomly"
    before our checkpoint is loaded into the model)."""
    if report is not None:
        kept = len(report.missing) + len(report.mismatched)
        note = f"; {kept} model tensors not in it keep their initial values" if kept else ""
        return f"loaded {pretrained}: {len(report.loaded)} tensors (model {model}){note}"
    if pretrained and pretrained != model:
        return f"loaded {pretrained} (model {model})"
    return f"loaded {model}" if pretrained else f"model {model}: no weights given, randomly initialised"


@torch.no_grad()
def encode_images(
    built: Built, batches: Iterable[tuple[torch.Tensor, list]], device: str, precision: str, desc: str = ""
) -> tuple[torch.Tensor, list]:
    """(features (N, D), targets) over (images, targets) batches, in batch order."""
    feats, labels = [], []
    for images, batch_labels in tqdm(batches, desc=desc or "images", unit="batch", leave=False):
        with autocast(precision, device):  # the trainer's rule
            out = built.model.encode_image(images.to(device))
        feats.append(F.normalize(out.float(), dim=-1).cpu())
        labels.extend(batch_labels)
    if not feats:
        return torch.zeros(0, built.embed_dim), labels
    return torch.cat(feats), labels


@torch.no_grad()
def encode_texts(
    built: Built, texts: list[str], device: str, precision: str, batch_size: int = 256
) -> torch.Tensor:
    """(len(texts), D) text features."""
    feats = []
    for start in range(0, len(texts), batch_size):
        tokens = built.tokenizer(texts[start : start + batch_size]).to(device)
        with autocast(precision, device):  # the trainer's rule
            out = built.model.encode_text(tokens)
        feats.append(F.normalize(out.float(), dim=-1).cpu())
    return torch.cat(feats) if feats else torch.zeros(0, built.embed_dim)
