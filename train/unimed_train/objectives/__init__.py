"""The training objectives, one module each, by `--loss` name.

An objective module holds everything its loss needs beyond the CLIP model: its check of the config,
its extra modules (built by `build_model` from the config), the sample members it gives the loader,
and the loss itself. Adding one is a new module here and a line in `OBJECTIVES`.
"""

from __future__ import annotations

import importlib

OBJECTIVES = {
    "clip": "unimed_train.objectives.clip:Clip",
    "siglip": "unimed_train.objectives.siglip:SigLip",
    "slip": "unimed_train.objectives.slip:Slip",
    "distill": "unimed_train.objectives.distill:Distill",
}
"""`--loss` name -> `module:class`, imported on use (the config reads the names without torch)."""


def objective_class(name: str):
    """The Objective subclass for a `--loss` name."""
    if name not in OBJECTIVES:
        raise ValueError(f"loss {name!r} not in {tuple(OBJECTIVES)}")
    module, _, cls = OBJECTIVES[name].partition(":")
    return getattr(importlib.import_module(module), cls)
