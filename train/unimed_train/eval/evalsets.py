"""Reading eval sets in CLIP_benchmark's webdataset layout (ours from `unimed-data evalset`, or theirs).

```
EVAL/test/{0..n-1}.tar + test/nshards.txt   (train/, val/ optional, same shape)
     classnames.txt, zeroshot_classification_templates.txt, dataset_type.txt, prompts.json, info.json
```
Shards are read in order and never shuffled, so features, labels and captions line up run after run.
A folder that is no set but holds sets (such as the output of `unimed-data evalset --recipe`) stands
for those sets: `expand_folders`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "val", "test")
KINDS = ("classification", "multilabel", "retrieval")
IMAGE_EXTS = ("jpg", "png", "webp", "jpeg")
LABEL_EXT = {"classification": "cls", "multilabel": "npy", "retrieval": "txt"}
# Any of these makes a folder an eval set (perhaps a broken one, which load_evalset then explains).
SET_MARKERS = (
    *SPLITS,
    "classnames.txt",
    "info.json",
    "dataset_type.txt",
    "zeroshot_classification_templates.txt",
)


class EvalSetError(ValueError):
    """An eval folder that cannot be read; the message names the path and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass
class EvalSet:
    root: Path
    name: str
    modality: str
    kind: str  # classification | multilabel | retrieval
    splits: dict[str, int]  # split -> number of shards
    classnames: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    prompts: dict[str, list[str]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def shards(self, split: str) -> list[str]:
        """Shard paths in index order (a list, not a brace pattern, so odd folder names are safe)."""
        return [str(self.root / split / f"{i}.tar") for i in range(self.splits[split])]

    def prompt_ensembles(self) -> list[list[str]]:
        """Per class the prompts to average: prompts.json when present, else the templates filled in.

        A class that prompts.json lacks falls back to the templates, so a partial file still works."""
        out = []
        for name in self.classnames:
            own = (self.prompts or {}).get(name)
            out.append(list(own) if own else [t.replace("{c}", name) for t in self.templates])
        if any(not p for p in out):
            raise EvalSetError(self.root, "no prompts: prompts.json and the templates are both empty")
        return out


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EvalSetError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _nshards(root: Path, split: str) -> int:
    path = root / split / "nshards.txt"
    try:
        n = int(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise EvalSetError(root, f"missing {split}/nshards.txt") from None
    except ValueError:
        raise EvalSetError(root, f"{split}/nshards.txt is not an integer") from None
    missing = [f"{split}/{i}.tar" for i in range(n) if not (root / split / f"{i}.tar").is_file()]
    if n < 1:
        raise EvalSetError(root, f"{split}/nshards.txt says {n}: the split has no shards")
    if missing:
        raise EvalSetError(root, f"{split}: nshards.txt says {n} but shards are missing {missing[:3]}")
    return n


def _split_present(folder: Path) -> bool:
    """A split folder with neither nshards.txt nor shards (left empty by a rerun) is no split."""
    return folder.is_dir() and ((folder / "nshards.txt").exists() or any(folder.glob("*.tar")))


def _is_set(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in SET_MARKERS)


def expand_folders(paths: list[str | Path]) -> list[Path]:
    """Each path as given, except a folder that is no set itself but has set subfolders: those, in
    sorted order (hidden folders and folders that are no set are passed over)."""
    out: list[Path] = []
    for path in map(Path, paths):
        subsets = []
        if path.is_dir() and not _is_set(path):
            subsets = sorted(
                p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_set(p)
            )
        out.extend(subsets or [path])
    return out


def load_evalset(path: str | Path) -> EvalSet:
    """Read the metadata of one eval folder; raises `EvalSetError` when it is unusable."""
    root = Path(path)
    if not root.is_dir():
        raise EvalSetError(root, "not a directory")
    splits = {s: _nshards(root, s) for s in SPLITS if _split_present(root / s)}
    if "test" not in splits:
        raise EvalSetError(root, "missing test/ split (test/nshards.txt and test/{0..n-1}.tar)")
    type_file = root / "dataset_type.txt"
    kind = " ".join(_read_lines(type_file)).lower() if type_file.is_file() else ""
    kind = kind or "classification"
    if kind not in KINDS:
        raise EvalSetError(root, f"dataset_type.txt says {kind!r}; expected multilabel, retrieval or nothing")
    info = {}
    if (root / "info.json").is_file():
        try:
            info = json.loads((root / "info.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise EvalSetError(root, f"info.json is not JSON ({e})") from None
    evalset = EvalSet(
        root=root,
        name=str(info.get("name") or root.name),
        modality=str(info.get("modality") or "unknown"),
        kind=kind,
        splits=splits,
        info=info,
    )
    if kind == "retrieval":
        return evalset
    if not (root / "classnames.txt").is_file():
        raise EvalSetError(root, "missing classnames.txt")
    evalset.classnames = _read_lines(root / "classnames.txt")
    if not evalset.classnames:
        raise EvalSetError(root, "classnames.txt is empty")
    if len(set(evalset.classnames)) != len(evalset.classnames):
        raise EvalSetError(root, "classnames.txt repeats a class name")
    templates = root / "zeroshot_classification_templates.txt"
    evalset.templates = _read_lines(templates) if templates.is_file() else []
    if (root / "prompts.json").is_file():
        try:
            evalset.prompts = json.loads((root / "prompts.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise EvalSetError(root, f"prompts.json is not JSON ({e})") from None
        prompts = evalset.prompts
        well_formed = isinstance(prompts, dict) and all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in prompts.values()
        )
        if not well_formed:
            raise EvalSetError(
                root, 'prompts.json must map class names to lists of prompts: {"class": ["..."]}'
            )
    if not evalset.templates and not evalset.prompts:
        raise EvalSetError(root, "neither zeroshot_classification_templates.txt nor prompts.json")
    return evalset


def _label(kind: str, value: Any) -> Any:
    if kind == "classification":
        return int(value)
    if kind == "multilabel":
        return np.asarray(value, dtype=np.float32).reshape(-1)
    return [line.strip() for line in str(value).splitlines() if line.strip()]


@dataclass(frozen=True)
class Target:
    """A sample's key and label. Sorting by key gives the same sample order for any worker count,
    which the probe's seeded validation and few-shot draws rely on."""

    key: str
    value: Any


class _Decode:
    """One decoded sample -> (image tensor, Target). A class, not a lambda, so DataLoader workers
    can pickle it under spawn/forkserver. Multi-label targets get -1 for the classes the sample's
    json lists as `uncertain_labels` (our sets store those as 0, which CLIP_benchmark reads as
    negative), so metrics mask them."""

    def __init__(self, evalset: EvalSet, transform: Callable):
        self.kind, self.transform = evalset.kind, transform
        self.index = {name: i for i, name in enumerate(evalset.classnames)}

    def __call__(self, sample: dict) -> tuple[torch.Tensor, Target]:
        where = f"{sample.get('__url__', '?')}: sample {sample.get('__key__')}"
        image = next((sample[ext] for ext in IMAGE_EXTS if ext in sample), None)
        label_ext = LABEL_EXT[self.kind]
        if image is None or label_ext not in sample:
            raise EvalSetError(where, f"needs an image ({', '.join(IMAGE_EXTS)}) and a .{label_ext}")
        value = _label(self.kind, sample[label_ext])
        if self.kind == "classification" and not 0 <= value < len(self.index):
            raise EvalSetError(where, f"class id {value} outside classnames.txt ({len(self.index)} classes)")
        if self.kind == "multilabel":
            if len(value) != len(self.index):
                raise EvalSetError(where, f".npy has {len(value)} entries for {len(self.index)} classes")
            meta = sample.get("json") if isinstance(sample.get("json"), dict) else {}
            for name in meta.get("uncertain_labels") or ():
                if name in self.index:
                    value[self.index[name]] = -1.0
        return self.transform(image.convert("RGB")), Target(sample["__key__"], value)


def _all_shards(src):
    return src


def _collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)


def iter_batches(
    evalset: EvalSet, split: str, transform: Callable, batch_size: int = 64, workers: int = 0
) -> Iterator[tuple[torch.Tensor, list[Target]]]:
    """(images, targets) batches of one split; target values are ints, float vectors (multilabel,
    -1 = uncertain) or caption lists (retrieval). Shards are read in order without shuffling; with
    workers they are dealt to workers, so sort by `Target.key` for an order that does not depend
    on the worker count."""
    import webdataset as wds

    dataset = (
        # shardshuffle=None: no shuffling; every rank reads everything (no node splitting)
        wds.WebDataset(evalset.shards(split), shardshuffle=None, nodesplitter=_all_shards)
        .decode("pil")
        .map(_Decode(evalset, transform))
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate
    )
    yield from loader
