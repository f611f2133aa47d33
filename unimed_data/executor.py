"""Where a stage's tasks run: the interface every executor offers, the local process pool, and the
one place that picks an executor for a build.

A task is a picklable unit (a slice of records to convert, one shard) handed to a module-level function,
so an executor may run it in another process or on another machine; results come back in task
order, which the byte-identical outputs depend on. The Ray executor (`executor_ray`, for builds
past one machine) goes behind the same `map`; Ray is imported only when a build asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from unimed_data.executor_figures import forget
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

    def close(self) -> None:
        """Let go of what the maps started (a cluster connection)."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """Tasks on this machine's processes (`workers` of them; 1 runs them in this process).

    With `figures` (a build's executor-figures folder), a finished map drops the figures an earlier
    cluster run left for it: they no longer describe the work.
    """

    workers: int
    figures: Path | None = None

    def map(self, fn, tasks, *, desc, total=None, on_crash=None):
        yield from ordered_map(fn, tasks, workers=self.workers, desc=desc, total=total, on_crash=on_crash)
        if self.figures is not None:
            forget(self.figures, desc)

    def close(self) -> None:
        pass


def make_executor(kind: str, *, workers: int, address: str | None, figures: Path) -> Executor:
    """The executor a build asked for: `local` or `ray` (`address`: the Ray cluster's, if any)."""
    if kind == "local":
        return LocalExecutor(workers, figures)
    from unimed_data.executor_ray import RayExecutor

    return RayExecutor(address, figures)
