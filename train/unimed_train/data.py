"""WebDataset loading for training: weighted multi-source specs, per-epoch caption sampling,
deterministic rank/worker sharding, teacher features and resumable positions.

Shard specs
-----------
``make_loader(spec, ...)`` takes one or more sources joined with ``::``; each is a brace pattern
(``braceexpand`` syntax, as open_clip's ``--train-data``) optionally followed by ``@weight``::

    /data/unimed/train/unimed-{000000..000099}.tar
    a/train-{000000..000009}.tar@2::b/train-{000000..000003}.tar@1

A missing weight is 1. Weights only matter in resampled mode, where each shard draw first picks a
source with probability ``weight / sum(weights)`` and then one of that source's shards uniformly
(so with equally sized shards, ``@3::@1`` gives ~3:1 samples whatever the shard counts are).
Without resampling every shard of every source is read once per pass.

Sample counts come from ``sizes.json`` in each source's folder (``{"<shard file name>": count}``,
as ``unimed-data shard`` writes), summed over the shards the pattern names. Without it,
``epoch_samples`` must be given.

Samples and batches
-------------------
A sample needs an image (``jpg``/``jpeg``/``png``/``webp``) and a caption. Each epoch one caption
is chosen from ``json["captions"]`` by a hash of ``(seed, epoch, __key__)`` (never the global
``random``), so the choice is the same on every rank, worker and rerun, and changes with
``Loader.set_epoch``. Samples without json or with an empty caption list use ``txt`` (plain
img2dataset / open_clip shards work as they are).

Teacher features (for distillation) are optional per-sample members named
``<teacher>.img.npy`` and ``<teacher>.txt.npy`` (a float npy array each, e.g.
``unimed_0a1b....biomedclip.img.npy``; teacher names are lower case, without dots).
``<teacher>.img.npy`` is a ``[D]`` vector; ``<teacher>.txt.npy`` is either ``[D]`` (the embedding
of the primary caption, used whatever caption is chosen) or ``[n_captions, D]`` (one row per
``json["captions"]`` entry; the row of the chosen caption is used).

Batches are dicts:

* ``image``: ``Tensor[B, 3, H, W]`` (``preprocess`` output), ``text``: ``Tensor[B, ctx]``
  (``tokenizer(caption)[0]`` stacked; a tokenizer returning strings gives a list of strings),
  ``key``: ``list[str]`` (the ``__key__`` of each sample);
* with ``views`` (a callable ``views(pil_image) -> (Tensor, Tensor)``, e.g. SLIP's two augmented
  views): ``view1``, ``view2``: ``Tensor[B, 3, h, w]``;
* with ``teacher_keys``: ``teacher_img``, ``teacher_txt``: ``Tensor[B, D]`` float32, zeros where a
  sample lacks the member, and ``has_teacher``: ``BoolTensor[B]``, true where both members are
  present. With several teacher keys each of the three is a dict ``{teacher: tensor}``. ``D`` is
  taken from ``teacher_dims`` if given, else probed from the first shards at construction (a
  batch where no sample has the feature and ``D`` is unknown gets ``[B, 0]``).

Epochs, ranks and workers
-------------------------
Sequential mode (default): the shard list is shuffled with ``(seed, epoch)`` (the same order on
every rank), split ``shards[rank::world_size]`` between ranks and then ``[worker::workers]``
between DataLoader workers, so ranks and workers read disjoint shards that together cover all
of them (with fewer than ``world_size * workers`` shards the workers are cut to what the shards
feed, with a warning; fewer shards than ranks is an error). Each worker reads its shards
round after round (reshuffled with the pass number) so every rank yields exactly
``num_batches`` full batches: ``num_batches = ceil(num_samples / (batch_size * world_size))``,
with ``num_samples = epoch_samples or <sizes.json total>``; a few samples repeat at the end of an
epoch on ranks whose shards are smaller.

Resampled mode (``resampled=True``): each worker draws shards forever with replacement, seeded by
``(seed, epoch, rank, worker)``, source chosen by weight; an epoch is
``epoch_samples // (batch_size * world_size)`` batches per rank (``epoch_samples`` defaults to the
sizes.json total).

Samples go through a shuffle buffer seeded by ``(seed, epoch, rank, worker)``. The whole
pipeline is deterministic for given ``(spec, seed, epoch, rank, world_size, workers,
batch_size)``, and the DataLoader interleaves workers' batches in a fixed round-robin order.

Resume
------
``Loader.state()`` returns ``{"epoch": e, "batches_done": n}`` where ``n`` counts batches already
handed out in the current epoch (a batch counts as soon as it is yielded, so save the state after
the optimiser step). ``Loader.load_state(state)`` (or ``set_epoch(e); skip(n)``) makes the next
iteration start at that epoch and drop its first ``n`` batches. Skipping is done by iterating
(reading and decoding the skipped samples), which is exact because the pipeline is
deterministic and acceptable for the few hundred/thousand batches of a mid-epoch checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import random
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import Value
from typing import Any

import braceexpand
import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import get_worker_info

from unimed_train.cli import UsageError

__all__ = [
    "Loader",
    "Source",
    "caption_index",
    "check_shards",
    "dataset_size",
    "make_loader",
    "parse_spec",
]

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
DEFAULT_SHUFFLE_BUFFER = 2000


@dataclass(frozen=True)
class Source:
    """One ``::``-separated part of a spec: its pattern, weight and expanded shard urls."""

    pattern: str
    weight: float
    urls: tuple[str, ...]


def parse_spec(spec: str) -> list[Source]:
    """Split ``pat1[@w1]::pat2[@w2]...`` into sources with brace-expanded shard lists."""
    if not spec or not spec.strip():
        raise UsageError("empty shard spec")
    sources = []
    for part in spec.split("::"):
        part = part.strip()
        if not part:
            raise UsageError(f"empty source in shard spec {spec!r}")
        pattern, weight = part, 1.0
        if "@" in part:
            head, _, tail = part.rpartition("@")
            try:
                weight = float(tail)
            except ValueError:
                weight = None  # an '@' that belongs to the path (e.g. user@host)
            if weight is not None:
                pattern = head
            else:
                weight = 1.0
        if not weight > 0 or math.isinf(weight):
            raise UsageError(f"source weight must be a positive number: {part!r}")
        urls = tuple(braceexpand.braceexpand(pattern))
        if not urls:
            raise UsageError(f"pattern names no shards: {pattern!r}")
        sources.append(Source(pattern=pattern, weight=weight, urls=urls))
    return sources


def check_shards(spec: str) -> list[Source]:
    """`parse_spec`, then a UsageError listing the local shards that do not exist (before webdataset
    fails on the first one deep in a worker). URLs and pipes (`scheme:...`) are left to webdataset."""
    sources = parse_spec(spec)
    missing = [u for s in sources for u in s.urls if not _is_remote(u) and not os.path.isfile(u)]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        total = sum(len(s.urls) for s in sources)
        raise UsageError(f"{len(missing)} of the {total} shards of {spec} do not exist: {shown}")
    return sources


def _is_remote(url: str) -> bool:
    """`s3://...`, `https://...`, `pipe:...`: a scheme of 2+ letters (one letter is a Windows drive)."""
    scheme, sep, _ = url.partition(":")
    return bool(sep) and len(scheme) > 1 and "/" not in scheme


def dataset_size(sources: Sequence[Source]) -> int | None:
    """Total samples from each source's ``sizes.json``; None if any source has none."""
    total = 0
    for src in sources:
        folder = os.path.dirname(src.urls[0])
        path = os.path.join(folder, "sizes.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            sizes = json.load(f)
        for url in src.urls:
            name = os.path.basename(url)
            if name not in sizes:
                raise UsageError(f"{path}: no entry for shard {name!r}")
            total += int(sizes[name])
    return total


def _seed_int(*parts: Any) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _rng(*parts: Any) -> random.Random:
    return random.Random(_seed_int(*parts))


def caption_index(seed: int, epoch: int, key: str, n: int) -> int:
    """Index of the caption used for sample ``key`` in ``epoch`` (of ``n`` candidates)."""
    return _seed_int("caption", int(seed), int(epoch), str(key)) % n


class SharedEpoch:
    """Epoch number shared with DataLoader worker processes."""

    def __init__(self, epoch: int = 0):
        self.shared_epoch = Value("i", epoch)

    def set_value(self, epoch: int) -> None:
        self.shared_epoch.value = epoch

    def get_value(self) -> int:
        return self.shared_epoch.value


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    if info is None:
        return 0, 1
    return info.id, info.num_workers


class _EpochSamples(wds.PipelineStage):
    """This rank's and worker's samples, endlessly, shuffled per pass (see the module docs)."""

    def __init__(self, sources, *, seed, epoch, rank, world_size, resampled, bufsize):
        self.sources = sources
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.resampled = resampled
        self.bufsize = bufsize

    def _resampled_urls(self, epoch: int, worker: int) -> Iterator[dict]:
        rng = _rng("resample", self.seed, epoch, self.rank, worker)
        weights = [s.weight for s in self.sources]
        while True:
            src = rng.choices(self.sources, weights=weights, k=1)[0]
            yield {"url": rng.choice(src.urls)}

    def _shuffled(self, samples: Iterator[dict], *parts: Any) -> Iterator[dict]:
        if self.bufsize <= 1:
            return samples
        initial = min(self.bufsize, max(1, self.bufsize // 4))
        return wds.filters._shuffle(samples, self.bufsize, initial, _rng("samples", self.seed, *parts))

    def run(self):
        epoch = self.epoch.get_value()
        worker, num_workers = _worker()
        if self.resampled:
            samples = _tar_samples(self._resampled_urls(epoch, worker))
            yield from self._shuffled(samples, epoch, self.rank, worker)
            return
        urls = [u for s in self.sources for u in s.urls]
        _rng("shards", self.seed, epoch).shuffle(urls)
        mine = urls[self.rank :: self.world_size][worker::num_workers]
        if not mine:
            raise ValueError(
                f"rank {self.rank} worker {worker} has no shards: {len(urls)} shards for "
                f"{self.world_size} ranks x {num_workers} workers"
            )
        passno = 0
        while True:
            # pass 0 reads every shard of this worker once; later passes (only to fill the last
            # batches of an epoch) reread them in another order
            order = list(mine)
            if passno:
                _rng("pass", self.seed, epoch, self.rank, worker, passno).shuffle(order)
            n = 0
            for sample in self._shuffled(
                _tar_samples({"url": u} for u in order), epoch, self.rank, worker, passno
            ):
                n += 1
                yield sample
            if n == 0:
                raise ValueError(f"rank {self.rank} worker {worker}: shards {mine} hold no samples")
            passno += 1


def _tar_samples(urls: Iterator[dict]) -> Iterator[dict]:
    return wds.tarfile_to_samples(handler=wds.warn_and_continue)(urls)


def _decode_npy(data: bytes) -> np.ndarray:
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float32)


class _ToSample:
    """Raw tar members -> decoded training sample (None when it has no image or caption)."""

    def __init__(self, *, preprocess, tokenizer, views, teacher_keys, seed, epoch):
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.views = views
        self.teacher_keys = tuple(teacher_keys)
        self.seed = seed
        self.epoch = epoch

    def __call__(self, sample: dict) -> dict | None:
        key = sample["__key__"]
        data = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
        if data is None:
            return None
        captions: list[str] = []
        if "json" in sample:
            meta = json.loads(sample["json"])
            if isinstance(meta, dict):
                captions = [c for c in (meta.get("captions") or []) if isinstance(c, str) and c.strip()]
        choice = None
        if captions:
            choice = caption_index(self.seed, self.epoch.get_value(), key, len(captions))
            text = captions[choice]
        elif "txt" in sample:
            text = sample["txt"].decode("utf-8") if isinstance(sample["txt"], bytes) else sample["txt"]
            if not text.strip():
                return None
        else:
            return None
        with Image.open(io.BytesIO(data)) as im:
            image = im.convert("RGB")
        out = {"key": key, "image": self.preprocess(image), "text": self.tokenizer(text)[0]}
        if self.views is not None:
            out["view1"], out["view2"] = self.views(image)
        for t in self.teacher_keys:
            img = sample.get(f"{t}.img.npy")
            txt = sample.get(f"{t}.txt.npy")
            img = _decode_npy(img).reshape(-1) if img is not None else None
            if txt is not None:
                txt = _decode_npy(txt)
                if txt.ndim == 2:
                    row = choice if choice is not None and txt.shape[0] == len(captions) else 0
                    txt = txt[row]
                txt = txt.reshape(-1)
            out[f"teacher:{t}"] = (img, txt)
        return out


def _stack(items: list) -> Any:
    if isinstance(items[0], torch.Tensor):
        return torch.stack(items)
    if isinstance(items[0], np.ndarray):
        return torch.from_numpy(np.stack(items))
    return list(items)


class _Collate:
    def __init__(self, teacher_keys, teacher_dims):
        self.teacher_keys = tuple(teacher_keys)
        self.teacher_dims = dict(teacher_dims)

    def _features(self, t: str, which: int, pairs: list) -> torch.Tensor:
        vals = [p[which] for p in pairs]
        dim = next((v.shape[0] for v in vals if v is not None), None)
        if dim is None:
            dim = self.teacher_dims.get((t, which), 0)
        else:
            self.teacher_dims[(t, which)] = dim
        out = torch.zeros(len(vals), dim, dtype=torch.float32)
        for i, v in enumerate(vals):
            if v is not None:
                if v.shape[0] != dim:
                    raise ValueError(f"teacher {t!r}: feature sizes differ ({v.shape[0]} vs {dim})")
                out[i] = torch.from_numpy(v)
        return out

    def __call__(self, samples: list[dict]) -> dict:
        batch = {
            "image": _stack([s["image"] for s in samples]),
            "text": _stack([s["text"] for s in samples]),
            "key": [s["key"] for s in samples],
        }
        if "view1" in samples[0]:
            batch["view1"] = _stack([s["view1"] for s in samples])
            batch["view2"] = _stack([s["view2"] for s in samples])
        if self.teacher_keys:
            img, txt, has = {}, {}, {}
            for t in self.teacher_keys:
                pairs = [s[f"teacher:{t}"] for s in samples]
                img[t] = self._features(t, 0, pairs)
                txt[t] = self._features(t, 1, pairs)
                has[t] = torch.tensor([a is not None and b is not None for a, b in pairs], dtype=torch.bool)
            if len(self.teacher_keys) == 1:
                (t,) = self.teacher_keys
                img, txt, has = img[t], txt[t], has[t]
            batch["teacher_img"], batch["teacher_txt"], batch["has_teacher"] = img, txt, has
        return batch


def _probe_teacher_dims(urls: Sequence[str], teacher_keys: Sequence[str], max_shards: int = 4) -> dict:
    """Feature sizes of each teacher from the first local shards that hold them."""
    want = {f"{t}.{w}.npy": (t, i) for t in teacher_keys for i, w in enumerate(("img", "txt"))}
    dims: dict = {}
    for url in list(urls)[:max_shards]:
        if not os.path.isfile(url):
            continue
        with tarfile.open(url, "r|*") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                suffix = base.split(".", 1)[1] if "." in base else ""
                if suffix in want and want[suffix] not in dims and member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        dims[want[suffix]] = int(_decode_npy(f.read()).shape[-1])
                if len(dims) == len(want):
                    return dims
    return dims


class Loader:
    """Iterable over one epoch of batches (see the module docs), with open_clip-style metadata.

    Attributes: ``num_batches`` (per rank per epoch), ``num_samples`` (``num_batches * batch_size
    * world_size``), ``dataset_size`` (sizes.json total or None), ``sources``, ``dataloader``.
    """

    def __init__(self, dataloader, shared_epoch, num_batches, num_samples, dataset_size, sources):
        self.dataloader = dataloader
        self.shared_epoch = shared_epoch
        self.num_batches = num_batches
        self.num_samples = num_samples
        self.dataset_size = dataset_size
        self.sources = sources
        self.epoch = shared_epoch.get_value()
        self.batches_done = 0
        self._skip = 0

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields (shard order, shuffles and captions)."""
        self.epoch = int(epoch)
        self.shared_epoch.set_value(self.epoch)
        self.batches_done = 0
        self._skip = 0

    def skip(self, n: int) -> None:
        """Drop the first ``n`` batches of the next iteration (counted in ``batches_done``)."""
        if not 0 <= n <= self.num_batches:
            raise ValueError(f"cannot skip {n} of {self.num_batches} batches")
        self._skip = int(n)

    def state(self) -> dict:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state(self, state: dict) -> None:
        self.set_epoch(state["epoch"])
        self.skip(state.get("batches_done", 0))

    def __iter__(self) -> Iterator[dict]:
        skip, self._skip = self._skip, 0
        self.batches_done = 0
        self.shared_epoch.set_value(self.epoch)
        if self.num_batches <= 0:
            return
        for batch in self.dataloader:
            self.batches_done += 1
            if self.batches_done > skip:
                yield batch
            if self.batches_done >= self.num_batches:
                break


def make_loader(
    spec: str,
    *,
    preprocess: Callable,
    tokenizer: Callable,
    batch_size: int,
    workers: int,
    seed: int,
    epoch_samples: int | None = None,
    resampled: bool = False,
    rank: int = 0,
    world_size: int = 1,
    views: Callable | None = None,
    teacher_keys: Sequence[str] = (),
    teacher_dims: dict[str, int] | None = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    epoch: int = 0,
) -> Loader:
    """Training loader over WebDataset shards; see the module docstring for spec syntax and batches.

    ``teacher_dims``: ``{teacher: D}`` for both features (skips probing the shards).
    ``shuffle_buffer``: sample shuffle buffer per worker (<= 1 disables it).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    if isinstance(teacher_keys, str):
        teacher_keys = (teacher_keys,)
    teacher_keys = tuple(teacher_keys)
    for t in teacher_keys:
        if not t or "." in t or "/" in t or t != t.lower():
            raise UsageError(f"teacher key must be lower case without dots or slashes: {t!r}")
    sources = check_shards(spec)
    total = dataset_size(sources)
    num_samples = epoch_samples if epoch_samples is not None else total
    if not num_samples:
        raise UsageError(
            f"no sizes.json beside the shards of {spec!r} (or it counts 0 samples): "
            "pass epoch_samples (--train-num-samples)"
        )
    all_urls = [u for s in sources for u in s.urls]
    n_workers = max(1, workers)
    global_batch = batch_size * world_size
    if resampled:
        num_batches = num_samples // global_batch
        if num_batches < 1:
            raise UsageError(
                f"epoch of {num_samples} samples is less than one global batch of {global_batch}"
            )
    else:
        if len(all_urls) < world_size:
            raise UsageError(f"{len(all_urls)} shards cannot be split between {world_size} ranks")
        if len(all_urls) < world_size * n_workers:
            fitting = len(all_urls) // world_size
            log.warning(
                "%d shards for %d ranks x %d workers: using %d workers per rank",
                len(all_urls), world_size, n_workers, fitting,
            )  # fmt: skip
            workers = n_workers = fitting
        num_batches = math.ceil(num_samples / global_batch)

    dims: dict = {}
    if teacher_keys:
        if teacher_dims:
            dims = {(t, i): int(teacher_dims[t]) for t in teacher_keys if t in teacher_dims for i in (0, 1)}
        missing = [t for t in teacher_keys if (t, 0) not in dims]
        if missing:
            dims.update(_probe_teacher_dims(all_urls, missing))

    shared_epoch = SharedEpoch(epoch)
    to_sample = _ToSample(
        preprocess=preprocess,
        tokenizer=tokenizer,
        views=views,
        teacher_keys=teacher_keys,
        seed=seed,
        epoch=shared_epoch,
    )
    pipeline = wds.DataPipeline(
        _EpochSamples(
            sources,
            seed=seed,
            epoch=shared_epoch,
            rank=rank,
            world_size=world_size,
            resampled=resampled,
            bufsize=shuffle_buffer,
        ),
        wds.map(to_sample, handler=wds.warn_and_continue),
        wds.select(lambda s: s is not None),
        wds.batched(batch_size, collation_fn=_Collate(teacher_keys, dims), partial=False),
        wds.slice(math.ceil(num_batches / n_workers)),
    )
    dataloader = wds.WebLoader(
        pipeline,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return Loader(dataloader, shared_epoch, num_batches, num_batches * global_batch, total, sources)
