"""AdamW parameter groups: weight decay on weights, none on gains, biases, norms and the logit scale."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn


def _no_decay(name: str, p: torch.Tensor) -> bool:
    """open_clip_train's rule: gains, biases, norms, logit_scale/bias and other <2-dim params."""
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def param_groups(
    model: nn.Module,
    extra_modules: Mapping[str, nn.Module] | Iterable[nn.Module] | None = None,
    weight_decay: float = 0.2,
) -> list[dict[str, Any]]:
    """Two AdamW groups over ``model`` and ``extra_modules`` (e.g. ``Built.extra_modules()``):
    ``[{"params": no-decay, "weight_decay": 0.0, "name": "no_decay"},
    {"params": rest, "weight_decay": weight_decay, "name": "decay"}]``. Frozen params are left out;
    a parameter shared between modules is counted once."""
    named: list[tuple[str, nn.Parameter]] = list(model.named_parameters())
    if extra_modules is not None:
        items = (
            extra_modules.items()
            if isinstance(extra_modules, Mapping)
            else ((f"extra{i}", m) for i, m in enumerate(extra_modules))
        )
        for prefix, mod in items:
            if mod is None:
                continue
            named.extend((f"{prefix}.{n}", p) for n, p in mod.named_parameters())
    seen: set[int] = set()
    no_decay, decay = [], []
    for n, p in named:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if _no_decay(n, p) else decay).append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
    ]
