"""Where a stage's tasks run: the interface every executor offers, and today's local process pool.

A task is a picklable unit (one record's conversion, one shard) handed to a module-level function,
so an executor may run it in another process or on another machine; results come back in task
order, which the byte-identical outputs depend on. A distributed executor (Ray) goes behind the
same `map`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from unimed_data.parallel import ordered_map

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(
        self,
        fn: Callable[[T], R],
        tasks: Iterable[T],
        *,
        desc: str,
        total: int | None = None,
        on_crash: Callable[[T], R] | None = None,
    ) -> Iterator[R]:
        """fn(task) for each task, in task order; `on_crash(task)` stands in for a task whose
        worker died."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """Tasks on this machine's processes (`workers` of them; 1 runs them in this process)."""

    workers: int

    def map(self, fn, tasks, *, desc, total=None, on_crash=None):
        return ordered_map(fn, tasks, workers=self.workers, desc=desc, total=total, on_crash=on_crash)
