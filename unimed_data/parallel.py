"""Ordered parallel map over a stream, with bounded memory, a progress bar and crash isolation.

Items are submitted in fixed-size windows, so memory stays flat however long the stream is, and
results come back in input order (needed for deterministic output). A worker that dies outright
(a segfault or an out-of-memory kill inside a native decoder) breaks the pool; the items still
pending are then re-run one process each, so the one that kills its process is found, reported
through `on_crash`, and the rest go on, instead of the whole map hanging or failing.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    desc: str,
    total: int | None = None,
    window: int = 512,
    on_crash: Callable[[T], R] | None = None,
) -> Iterator[R]:
    """Yield fn(item) for each item, in input order, on `workers` processes (1 = in-process).

    `on_crash(item)` gives the result for an item whose worker process died; without it such a
    crash raises BrokenProcessPool.
    """
    bar = tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, disable=None)
    iterator = iter(items)
    executor: ProcessPoolExecutor | None = None
    try:
        if workers <= 1:
            for item in iterator:
                yield fn(item)
                bar.update()
            return
        while chunk := list(islice(iterator, window)):
            executor = executor or _pool(workers)
            futures = [executor.submit(fn, item) for item in chunk]
            for item, future in zip(chunk, futures, strict=True):
                try:
                    result = future.result()
                except BrokenProcessPool:
                    executor.shutdown(cancel_futures=True)
                    executor = None
                    result = _isolated(fn, item, on_crash)
                yield result
                bar.update()
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
        bar.close()


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def _isolated(fn: Callable[[T], R], item: T, on_crash: Callable[[T], R] | None) -> R:
    """Run one item in a process of its own, so a crash is pinned on that item."""
    with _pool(1) as single:
        try:
            return single.submit(fn, item).result()
        except BrokenProcessPool:
            if on_crash is None:
                raise
            return on_crash(item)
