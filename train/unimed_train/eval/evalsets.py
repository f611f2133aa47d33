"""Reading eval sets in CLIP_benchmark's webdataset layout (ours from `unimed-data evalset`, or theirs).

```
EVAL/test/{0..n-1}.tar + test/nshards.txt   (train/, val/ optional, same shape)
     classnames.txt, zeroshot_classification_templates.txt, dataset_type.txt, prompts.json, info.json
```
Shards are read in order and never shuffled, so features, labels and captions line up run after run.
A folder that is no set but holds sets (such as the output of `unimed-data evalset --recipe`) stands
for those sets: `expand_folders`. A set may also be an fsspec URL (`s3://`, `gs://`, `hf://`,
`https://`): its small files are read through fsspec and its shards through the trainer's shard
reader; only `expand_folders` lists, so a store that cannot (plain https) needs the set's own URL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from unimed_train.data.remote import http_failure, reason, url_to_fs
from unimed_train.data.sharding import tar_samples

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
# Remote stores may have no folders to test for, so a remote set is recognised by files only.
REMOTE_MARKERS = (*(f"{split}/nshards.txt" for split in SPLITS), *SET_MARKERS[len(SPLITS) :])


class EvalSetError(ValueError):
    """An eval folder that cannot be read; the message names the path and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def is_url(path: str | Path) -> bool:
    """`s3://...`, `hf://...`, `https://...`: a set read through fsspec, not the local filesystem.
    (Give URLs as strings: `Path` folds the `//` away.)"""
    scheme, sep, _ = str(path).partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.isalnum()


class _Remote:
    """The few `Path` operations reading a set needs, on an fsspec URL. Nothing here lists a
    folder, so stores without listing (plain https) work; `subsets` lists where the store can."""

    def __init__(self, url: str, fs: Any = None, path: str = ""):
        self.url = url.rstrip("/")
        if fs is None:  # a fresh client, which reads the credentials and endpoint the environment has now
            fs, path = url_to_fs(self.url)
        self.fs, self.path = fs, path

    def __truediv__(self, part: str) -> _Remote:
        return _Remote(f"{self.url}/{part}", self.fs, f"{self.path}/{part}")

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.fs.cat_file(self.path).decode(encoding)

    def is_file(self) -> bool:
        """Whether the file is there; unlike `fs.isfile`, a store that cannot be reached or refuses
        the credentials raises, so it is not mistaken for a missing file."""
        try:
            return self.fs.info(self.path)["type"] == "file"
        except FileNotFoundError as e:
            failure = http_failure(self.url, e)
            if failure is None:
                return False
            raise failure from None

    exists = is_file  # the markers that `_is_set` looks for remotely are all files

    def subsets(self) -> list[str]:
        """URLs of the set subfolders, sorted; none where the store cannot list this folder."""
        try:
            entries = self.fs.ls(self.path, detail=True)
        except Exception:  # not listable (https), or not there: the URL stands for itself
            return []
        found = []
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") == "directory" and not name.startswith(".") and _is_set(self / name):
                found.append(f"{self.url}/{name}")
        return sorted(found)


@dataclass
class EvalSet:
    root: Path | str  # a str where the set is a URL
    name: str
    modality: str
    kind: str  # classification | multilabel | retrieval
    splits: dict[str, int]  # split -> number of shards
    classnames: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    prompts: dict[str, list[str]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def shards(self, split: str) -> list[str]:
        """Shard paths or URLs in index order (a list, not a brace pattern, so odd folder names are
        safe)."""
        return [f"{self.root}/{split}/{i}.tar" for i in range(self.splits[split])]

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


def _read_lines(path: Path | _Remote) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EvalSetError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _nshards(root: Path | _Remote, split: str) -> int:
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


def _split_present(folder: Path | _Remote) -> bool:
    """A split folder with neither nshards.txt nor shards (left empty by a rerun) is no split."""
    if isinstance(folder, _Remote):
        return (folder / "nshards.txt").exists() or (folder / "0.tar").exists()
    return folder.is_dir() and ((folder / "nshards.txt").exists() or any(folder.glob("*.tar")))


def _is_set(folder: Path | _Remote) -> bool:
    markers = REMOTE_MARKERS if isinstance(folder, _Remote) else SET_MARKERS
    return any((folder / marker).exists() for marker in markers)


def expand_folders(paths: list[str | Path]) -> list[Path | str]:
    """Each path as given, except a folder that is no set itself but has set subfolders: those, in
    sorted order (hidden folders and folders that are no set are passed over). URLs stay strings;
    their subfolders are found only where the store lists (s3, gs, hf; not plain https)."""
    out: list[Path | str] = []
    for given in paths:
        if is_url(given):
            out.extend(_remote_subsets(str(given)) or [str(given)])
            continue
        path, subsets = Path(given), []
        if path.is_dir() and not _is_set(path):
            subsets = sorted(
                p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_set(p)
            )
        out.extend(subsets or [path])
    return out


def _remote_subsets(url: str) -> list[str]:
    """A URL's set subfolders, or none (the URL is a set, cannot be read or listed: it stands for
    itself, and `load_evalset` explains what is wrong with it)."""
    try:
        root = _Remote(url)
        return [] if _is_set(root) else root.subsets()
    except Exception:
        return []


def load_evalset(path: str | Path) -> EvalSet:
    """Read the metadata of one eval folder or URL; raises `EvalSetError` when it is unusable."""
    if not is_url(path):
        root = Path(path)
        if not root.is_dir():
            raise EvalSetError(root, "not a directory")
        return _load(root)
    url = str(path).rstrip("/")
    try:
        root = _Remote(url)
        if not _is_set(root):
            raise EvalSetError(url, "no eval set here (no test/nshards.txt, classnames.txt or info.json)")
        return _load(root)
    except EvalSetError:
        raise
    except Exception as e:  # network, credentials, unknown scheme: one line naming the URL
        raise EvalSetError(url, f"cannot read ({reason(e)})") from None


def _load(root: Path | _Remote) -> EvalSet:
    """The set's metadata, checked; `root` a local folder or a remote one."""
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
        root=root if isinstance(root, Path) else root.url,
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


_read_shards = functools.partial(tar_samples, handler=wds.reraise_exception)  # a broken shard fails


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
    dataset = wds.DataPipeline(
        wds.SimpleShardList(evalset.shards(split)),
        wds.split_by_worker,  # no shuffling; every rank reads everything (no node splitting)
        _read_shards,
        wds.decode("pil"),
        wds.map(_Decode(evalset, transform)),
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate
    )
    yield from loader
