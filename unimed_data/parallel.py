"""Ordered parallel map over a stream, with bounded memory, a progress bar and crash isolation.

At most a window of items is in flight (one goes in as one comes out), so memory stays flat
however long the stream is, and results come back in input order (needed for deterministic
output). A worker that dies outright (a segfault or an out-of-memory kill inside a native decoder)
breaks the pool; the item at the head then runs in a process of its own and the rest go to a new
pool, so the one that kills its process is found and reported through `on_crash`, and the rest go
on, instead of the whole map hanging or failing.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
    window: int | None = None,
    on_crash: Callable[[T], R] | None = None,
) -> Iterator[R]:
    """Yield fn(item) for each item, in input order, on `workers` processes (1 = in-process), with
    at most `window` items in flight (default: four per worker).

    `on_crash(item)` gives the result for an item whose worker process died; without it such a
    crash raises BrokenProcessPool.
    """
    window = window or 4 * workers
    bar = tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, disable=None)
    iterator = iter(items)
    executor: ProcessPoolExecutor | None = None
    try:
        if workers <= 1:
            for item in iterator:
                yield fn(item)
                bar.update()
            return
        pending: deque[tuple[T, Future]] = deque()
        while True:
            while len(pending) < window and (item := next(iterator, _END)) is not _END:
                executor = executor or _pool(workers)
                pending.append((item, executor.submit(fn, item)))
            if not pending:
                return
            item, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                # The pool is gone with every task in it: the others go to a new pool at once, and
                # this one runs alone beside them (so a crash is pinned on it).
                executor.shutdown(cancel_futures=True)
                executor = _pool(workers)
                pending = deque((waiting, executor.submit(fn, waiting)) for waiting, _ in pending)
                result = _isolated(fn, item, on_crash)
            yield result
            bar.update()
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
        bar.close()


_END = object()


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def _isolated(fn: Callable[[T], R], item: T, on_crash: Callable[[T], R] | None) -> R:
    """Run one item in a process of its own, so a crash is pinned on that item."""
    try:
        return run_isolated(fn, item)
    except BrokenProcessPool:
        if on_crash is None:
            raise
        return on_crash(item)


def run_isolated(fn: Callable[..., R], *args) -> R:
    """fn(*args) in a process of its own; its crash (a native decoder's segfault) raises
    BrokenProcessPool here, pinned on these arguments."""
    with _pool(1) as single:
        return single.submit(fn, *args).result()
