"""The training loader: shards -> samples -> batches, one epoch per iteration, resumable."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence

import webdataset as wds

from unimed_train.cli import UsageError
from unimed_train.data.samples import Collate, ToSample
from unimed_train.data.sharding import EpochSamples, SharedEpoch
from unimed_train.data.spec import check_shards, dataset_size

log = logging.getLogger(__name__)

DEFAULT_SHUFFLE_BUFFER = 2000


class Loader:
    """Iterable over one epoch of batches (see the package docs), with open_clip-style metadata.

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
    members: Sequence = (),
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    epoch: int = 0,
) -> Loader:
    """Training loader over WebDataset shards; see the package docs for spec syntax and batches.

    ``members``: the objective's sample members (`Objective.loader_members`), each with
    ``decode(sample, image, caption, n_captions) -> dict`` and ``collate(samples) -> dict``.
    ``shuffle_buffer``: sample shuffle buffer per worker (<= 1 disables it).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    sources = check_shards(spec)
    total = dataset_size(sources)
    num_samples = _epoch_samples(spec, epoch_samples, total)
    shards = sum(len(s.urls) for s in sources)
    workers = _workers(shards, world_size, workers) if not resampled else workers
    num_batches = _num_batches(num_samples, batch_size * world_size, resampled)
    shared_epoch = SharedEpoch(epoch)
    pipeline = _pipeline(
        sources,
        preprocess=preprocess,
        tokenizer=tokenizer,
        members=members,
        batch_size=batch_size,
        seed=seed,
        shared_epoch=shared_epoch,
        rank=rank,
        world_size=world_size,
        resampled=resampled,
        shuffle_buffer=shuffle_buffer,
        worker_batches=math.ceil(num_batches / max(1, workers)),
    )
    dataloader = wds.WebLoader(
        pipeline, batch_size=None, shuffle=False, num_workers=workers, persistent_workers=workers > 0
    )
    global_batch = batch_size * world_size
    return Loader(dataloader, shared_epoch, num_batches, num_batches * global_batch, total, sources)


def _pipeline(
    sources,
    *,
    preprocess: Callable,
    tokenizer: Callable,
    members: Sequence,
    batch_size: int,
    seed: int,
    shared_epoch: SharedEpoch,
    rank: int,
    world_size: int,
    resampled: bool,
    shuffle_buffer: int,
    worker_batches: int,
) -> wds.DataPipeline:
    """The per-worker shards -> samples -> batches pipeline, apart from make_loader's sizing and checks."""
    return wds.DataPipeline(
        EpochSamples(
            sources,
            seed=seed,
            epoch=shared_epoch,
            rank=rank,
            world_size=world_size,
            resampled=resampled,
            bufsize=shuffle_buffer,
        ),
        wds.map(
            ToSample(
                preprocess=preprocess, tokenizer=tokenizer, members=members, seed=seed, epoch=shared_epoch
            ),
            handler=wds.warn_and_continue,
        ),
        wds.select(lambda s: s is not None),
        wds.batched(batch_size, collation_fn=Collate(members), partial=False),
        wds.slice(worker_batches),
    )


def _epoch_samples(spec: str, epoch_samples: int | None, total: int | None) -> int:
    """Samples per epoch: as given, else the sizes.json total."""
    num_samples = epoch_samples if epoch_samples is not None else total
    if not num_samples:
        raise UsageError(
            f"no sizes.json beside the shards of {spec!r} (or it counts 0 samples): "
            "pass epoch_samples (--train-num-samples)"
        )
    return num_samples


def _num_batches(num_samples: int, global_batch: int, resampled: bool) -> int:
    """Batches per rank per epoch: whole global batches drawn, or the epoch's samples rounded up."""
    if not resampled:
        return math.ceil(num_samples / global_batch)
    if num_samples < global_batch:
        raise UsageError(f"epoch of {num_samples} samples is less than one global batch of {global_batch}")
    return num_samples // global_batch


def _workers(shards: int, world_size: int, workers: int) -> int:
    """Loader workers per rank in epoch mode: cut to what the shards feed when every rank has its
    own shards; with fewer shards than ranks the ranks and workers share the samples instead."""
    n_workers = max(1, workers)
    if shards < world_size:
        log.warning(
            "%d shard(s) for %d ranks: each rank reads every shard and keeps its share of the samples "
            "(more shards: rebuild with a smaller --shard-size; or train with --resampled)",
            shards, world_size,
        )  # fmt: skip
        return workers
    if shards < world_size * n_workers:
        fitting = shards // world_size
        log.warning(
            "%d shards for %d ranks x %d workers: using %d workers per rank "
            "(more shards: rebuild with a smaller --shard-size; or train with --resampled)",
            shards, world_size, n_workers, fitting,
        )  # fmt: skip
        return fitting
    return workers
