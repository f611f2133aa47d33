"""Which samples each rank and loader worker reads, epoch by epoch, deterministically.

Epoch mode: the shard list is shuffled with ``(seed, epoch)`` (the same order on every rank), split
``shards[rank::world_size]`` between ranks and then ``[worker::workers]`` between workers. With
fewer shards than ranks, every rank and worker reads all shards in that order and keeps every
``(world_size * workers)``-th sample from its own offset (`split_samples`), so the ranks still
read disjoint samples that together cover the epoch. Each worker reads its part round after
round (shards reshuffled with the pass number, unless split by samples; samples reshuffled) so
that every rank fills the same number of batches.

Resampled mode: each worker draws shards forever with replacement, seeded by
``(seed, epoch, rank, worker)``, the source chosen by weight.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import Value
from typing import Any

import webdataset as wds
from torch.utils.data import get_worker_info

from unimed_train.data.remote import is_fsspec_url, open_url


def seed_int(*parts: Any) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _rng(*parts: Any) -> random.Random:
    return random.Random(seed_int(*parts))


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


class EpochSamples(wds.PipelineStage):
    """This rank's and worker's samples, endlessly, shuffled per pass (see the module docs)."""

    def __init__(self, sources, *, seed, epoch, rank, world_size, resampled, bufsize):
        self.sources = sources
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.resampled = resampled
        self.bufsize = bufsize
        self.split_samples = not resampled and sum(len(s.urls) for s in sources) < world_size

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
            samples = tar_samples(self._resampled_urls(epoch, worker))
            yield from self._shuffled(samples, epoch, self.rank, worker)
            return
        urls = [u for s in self.sources for u in s.urls]
        _rng("shards", self.seed, epoch).shuffle(urls)
        mine = urls if self.split_samples else urls[self.rank :: self.world_size][worker::num_workers]
        if not mine:
            raise ValueError(
                f"rank {self.rank} worker {worker} has no shards: {len(urls)} shards for "
                f"{self.world_size} ranks x {num_workers} workers"
            )
        passno = 0
        while True:
            # pass 0 reads every shard of this worker once; later passes (only to fill the last
            # batches of an epoch) reread them in another order
            n = 0
            for sample in self._pass(mine, epoch, worker, num_workers, passno):
                n += 1
                yield sample
            if n == 0:
                raise ValueError(f"rank {self.rank} worker {worker}: shards {mine} hold no samples")
            passno += 1

    def _pass(self, mine: list[str], epoch: int, worker: int, num_workers: int, passno: int):
        """One pass over `mine` through the shuffle buffer. When the ranks split the samples of
        shared shards, every pass keeps the shard order, so a reader's share stays its own."""
        order = list(mine)
        if passno and not self.split_samples:
            _rng("pass", self.seed, epoch, self.rank, worker, passno).shuffle(order)
        samples = tar_samples({"url": u} for u in order)
        if self.split_samples:
            readers, me = self.world_size * num_workers, self.rank * num_workers + worker
            samples = (s for i, s in enumerate(samples) if i % readers == me)
        return self._shuffled(samples, epoch, self.rank, worker, passno)


def tar_samples(urls: Iterable[dict], handler: Callable[[Exception], bool] = wds.warn_and_continue):
    """Samples of the shards at `urls`: local files and `pipe:` through webdataset's own openers,
    object stores (`s3://`, `gs://`, `hf://`) and `http(s)://` through fsspec, which reads the usual
    credentials and `AWS_ENDPOINT_URL`. `handler` decides about a broken shard (training warns and
    goes on; the evaluator raises)."""
    streams = _opened(urls, handler)
    files = wds.tariterators.tar_file_expander(streams, handler=handler)
    return wds.tariterators.group_by_keys(files, handler=handler)


def _opened(urls: Iterable[dict], handler: Callable[[Exception], bool]) -> Iterator[dict]:
    for item in urls:
        url = item["url"]
        if is_fsspec_url(url):
            try:  # a shard that cannot be opened goes to `handler`, as webdataset's opener does it
                stream = open_url(url).open()
            except Exception as exc:
                exc.args = (*exc.args, url)
                if handler(exc):
                    continue
                raise
            yield {**item, "stream": stream}
        else:
            yield from wds.tariterators.url_opener([item], handler=handler)
