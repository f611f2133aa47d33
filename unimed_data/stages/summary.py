"""What a stage reports: counts that must add up (inputs = outputs + errors)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StageSummary:
    stage: str
    dataset: str
    inputs: int
    outputs: int
    errors: int
    skipped: bool = False

    def __post_init__(self):
        if self.inputs != self.outputs + self.errors:
            raise AssertionError(
                f"{self.stage}/{self.dataset}: {self.inputs} inputs != {self.outputs} outputs + {self.errors} errors"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StageSummary:
        return cls(**{**data, "skipped": True})
