"""Numeric precision in one place: the modes the trainer and evaluator offer, and their autocast.

`fp32`, `amp` and `amp_bf16` keep the weights in fp32 and differ only in autocast; `build_model` also
takes open_clip's spelling `amp_bfloat16` for `amp_bf16`. open_clip's low-precision weight modes
(`fp16`, `bf16`, `pure_fp16`, `pure_bf16`) are accepted by `build_model` and passed through to it.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "amp", "amp_bf16")
PRECISION_ALIASES = {"amp_bfloat16": "amp_bf16"}
WEIGHT_PRECISIONS = ("fp16", "bf16", "pure_fp16", "pure_bf16")
MODEL_PRECISIONS = (*PRECISIONS, *PRECISION_ALIASES, *WEIGHT_PRECISIONS)


def autocast_dtype(precision: str, device_type: str = "cuda") -> torch.dtype | None:
    """The autocast dtype a precision asks for on a device (None: no autocast).

    `amp` is fp16 on GPUs and bf16 on CPUs: CPU autocast's own dtype, and fp16 gradients there
    would go without the loss scaler, which the trainer runs on CUDA only."""
    import torch  # here, so that the option lists above load without torch (e.g. for --help)

    precision = PRECISION_ALIASES.get(precision, precision)
    if precision == "amp":
        return torch.float16 if device_type != "cpu" else torch.bfloat16
    if precision == "amp_bf16":
        return torch.bfloat16
    return None


def autocast(precision: str, device: torch.device | str):
    """The context a forward pass runs in for `precision` on `device`."""
    import torch

    device_type = torch.device(device).type
    dtype = autocast_dtype(precision, device_type)
    return nullcontext() if dtype is None else torch.autocast(device_type=device_type, dtype=dtype)
