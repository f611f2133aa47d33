"""Ordered parallel map over a stream, with bounded memory and a progress bar.

`multiprocessing.Pool.imap` drains its whole input iterator into the task queue at once, which
for millions of records would hold every task in memory. Feeding it fixed-size windows keeps
memory flat while results still come back in input order (needed for deterministic output).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
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
) -> Iterator[R]:
    """Yield fn(item) for each item, in input order, on `workers` processes (1 = in-process)."""
    bar = tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, disable=None)
    iterator = iter(items)
    try:
        if workers <= 1:
            for item in iterator:
                yield fn(item)
                bar.update()
            return
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            while chunk := list(islice(iterator, window)):
                chunksize = max(1, len(chunk) // (workers * 8))
                for result in pool.imap(fn, chunk, chunksize=chunksize):
                    yield result
                    bar.update()
    finally:
        bar.close()
