"""Training checkpoints that anyone can load: tensors and plain Python types only.

`torch.load(path, weights_only=True)` reads them, so open_clip (`pretrained=path`, which reads the
`state_dict` key) and CLIP_benchmark load the weights as they are, and resuming runs no code from
the file. RNG states are stored as tensors, not as numpy or Python objects. Checkpoints from before
this format hold a numpy RNG object: they resume only with `--legacy-resume`, which loads them with
`weights_only=False` (run it only on files you trust); the next checkpoint it saves is in this format.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from unimed_train.cli import UsageError

LEGACY_HINT = "a checkpoint from an older trainer? If you trust the file, rerun with --legacy-resume"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This process's Python, numpy and torch RNG states as tensors and plain types."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": torch.tensor(words, dtype=torch.int64),
        "python_version": version,
        "python_gauss": gauss,
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_kind": kind,
        "numpy_pos": int(pos),
        "numpy_gauss": (int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`'s states, or a legacy checkpoint's numpy/Python objects."""
    torch.set_rng_state(state["torch"])
    if isinstance(state["numpy"], torch.Tensor):
        keys = state["numpy"].numpy().astype(np.uint32)
        np.random.set_state((state["numpy_kind"], keys, state["numpy_pos"], *state["numpy_gauss"]))
        random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    else:
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])


def resume_path(resume: str | None, out: Path) -> Path | None:
    if resume is None:
        return None
    path = out / "checkpoints" / "latest.pt" if resume == "latest" else Path(resume)
    if resume == "latest" and not path.is_file():
        return None  # nothing to resume yet: a first run (so one job script serves every restart)
    if not path.is_file():
        raise UsageError(f"--resume {resume}: no checkpoint at {path}")
    return path


def load(path: Path, *, legacy: bool = False, mmap: bool = False) -> dict:
    """A checkpoint read with `weights_only=True` (`legacy`: with `weights_only=False`), or a
    UsageError naming the flag when only the legacy way can read it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not legacy, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise UsageError(f"{path}: not loadable with weights_only=True ({LEGACY_HINT})") from exc


def save(out: Path, rank: int, world: int, contents: dict) -> None:
    """`contents` plus every rank's RNG states as `checkpoints/step_NNNNNNN.pt` and `latest.pt`
    (rank 0 writes; every rank takes part in gathering the RNG states)."""
    states = [None] * world
    if world > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states = [rng_state()]
    if rank != 0:
        return
    folder = out / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step_{contents['step']:07d}.pt"
    tmp = folder / f".{target.name}.tmp"
    torch.save({**contents, "rng": states}, tmp)
    os.replace(tmp, target)
    tmp_latest = folder / ".latest.pt.tmp"
    shutil.copyfile(target, tmp_latest)  # the same bytes, without pickling twice
    os.replace(tmp_latest, folder / "latest.pt")
