"""The stage contract: what each stage declares (name, tables read and written, options) and the
one way the runner calls it.

A stage runs on one dataset, or once on the whole build (shard), and returns a `StageSummary`.
The tables it reads and writes are `Workspace` attribute names; the first table a stage reads is
the one an earlier stage writes, which is all the runner needs to order stages and check their
inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unimed_data.pipeline import Dataset
    from unimed_data.runner import StageContext


class DatasetLeftOut(Exception):
    """A dataset the build goes on without (`missing_parts: skip`), with the reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    reads: tuple[str, ...]  # Workspace tables; the first is an earlier stage's output (none: raw files)
    writes: tuple[str, ...]  # Workspace tables or files
    options: tuple[str, ...]  # the build options (command-line names) it reads
    run: Callable[[StageContext, Dataset | None], StageSummary]  # None: the whole build
    per_dataset: bool = True
    start: Callable[[StageContext], None] | None = None  # before its first dataset
    end: Callable[[StageContext], None] | None = None  # after its last dataset


@dataclass(frozen=True)
class StageSummary:
    """What a stage reports: counts that must add up (inputs = outputs + errors + filtered)."""

    stage: str
    dataset: str
    inputs: int
    outputs: int
    errors: int
    filtered: int = 0  # dropped on purpose by a rule (e.g. the minimum image side), with a reason
    skipped: bool = False

    def __post_init__(self):
        if self.inputs != self.outputs + self.errors + self.filtered:
            raise AssertionError(
                f"{self.stage}/{self.dataset}: {self.inputs} inputs != {self.outputs} outputs + "
                f"{self.errors} errors + {self.filtered} filtered"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StageSummary:
        return cls(**{**data, "skipped": True})
