"""What a stage reports: counts that must add up (inputs = outputs + errors + filtered)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StageSummary:
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
