"""Loading pretrained weights from a file into a model that may not match it exactly.

Files are ours, open_clip_train's or MetaCLIP's (a state dict, possibly nested under ``state_dict``
/ ``model``, keys possibly prefixed ``module.``), safetensors, or OpenAI's TorchScript archives.
They load NON-strictly: matching keys load, shape mismatches are skipped, and a `LoadReport`
lists loaded / missing / unexpected / shape-mismatched keys.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a non-strict checkpoint load did. Keys are the model's own (after prefix stripping)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    mismatched_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.path}: loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        )


def _strip_prefixes(sd: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sd.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def read_state_dict(path: str | os.PathLike, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat state dict (safetensors, torch pickles, TorchScript archives).

    Unwraps ``state_dict`` / ``model`` / ``state_dict_ema`` nesting and strips ``module.``/``_orig_mod.``."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        ckpt: Any = load_file(path, device="cpu")
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
        except RuntimeError as e:
            if "TorchScript" not in str(e) and "jit" not in str(e).lower():
                raise
            ckpt = torch.jit.load(path, map_location="cpu")  # OpenAI's released .pt files
    if isinstance(ckpt, torch.jit.ScriptModule):
        ckpt = ckpt.state_dict()
        for k in ("input_resolution", "context_length", "vocab_size"):
            ckpt.pop(k, None)
    if isinstance(ckpt, Mapping):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(ckpt.get(key), Mapping) and not isinstance(ckpt.get(key), torch.Tensor):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: not a state dict (got {type(ckpt).__name__})")
    return _strip_prefixes({k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)})


def load_checkpoint_nonstrict(
    model: nn.Module, path: str | os.PathLike, *, weights_only: bool = True
) -> LoadReport:
    """Load every checkpoint tensor whose key and shape fit ``model``; skip and report the rest.

    Applies open_clip's compatibility fixes first: third-party key conversion, CLIP -> CustomTextCLIP
    text-key moves (``transformer.*`` -> ``text.transformer.*``), logit_scale/bias reshapes, and image
    positional-embedding interpolation to the model's grid."""
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    sd = read_state_dict(path, weights_only=weights_only)
    try:
        from open_clip.convert import convert_state_dict

        sd = convert_state_dict(model, sd)
    except Exception as e:  # third-party converters are best effort only
        log.debug("convert_state_dict skipped: %s", e)
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    for key in ("logit_scale", "logit_bias"):
        target = getattr(model, key, None)
        if key in sd and isinstance(target, torch.Tensor) and sd[key].numel() == target.numel():
            sd[key] = sd[key].reshape(target.shape)
    try:
        resize_pos_embed(sd, model)
    except Exception as e:
        log.warning("image positional embedding not resized: %s", e)
    text_pos = getattr(model, "positional_embedding", None)
    if text_pos is None:
        text_pos = getattr(getattr(model, "text", None), "positional_embedding", None)
    if text_pos is not None:
        try:
            resize_text_pos_embed(sd, model)
        except Exception as e:
            log.warning("text positional embedding not resized: %s", e)

    own = model.state_dict()
    report = LoadReport(path=str(path))
    to_load = {}
    for k, v in sd.items():
        if k not in own:
            report.unexpected.append(k)
        elif tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append(k)
            report.mismatched_shapes[k] = (tuple(v.shape), tuple(own[k].shape))
        else:
            to_load[k] = v
            report.loaded.append(k)
    report.missing = [k for k in own if k not in sd]
    model.load_state_dict(to_load, strict=False)
    log.info("non-strict load %s", report.summary())
    return report
