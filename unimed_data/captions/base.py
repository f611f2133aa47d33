"""The caption backend interface.

A unit of captioning is one unique (dataset, modality, labels, uncertain labels) combination, or
one report: CheXpert's 224k images share a few thousand label sets, so backends are asked once
per unit and every record with that label set gets the same captions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CaptionUnit:
    dataset: str
    modality: str
    labels: tuple[str, ...]
    uncertain: tuple[str, ...] = ()
    report: str | None = None

    @property
    def is_report(self) -> bool:
        """Captioned from its report: labels win over a report, and a blank report is no report."""
        return bool(self.report and self.report.strip()) and not self.labels


@dataclass(frozen=True)
class CaptionFailure:
    """A unit the backend could not caption, with a reason for the errors table."""

    reason: str


class Captioner(Protocol):
    source: str
    """Value of the record's `caption_source` column, e.g. `template` or `llm:<model>`."""

    @property
    def identity(self) -> dict:
        """Backend, model, prompts and parameters: the cache/stamp key of its captions."""
        ...

    def caption(self, units: list[CaptionUnit]) -> dict[CaptionUnit, list[str] | CaptionFailure]:
        """Captions for each unit: several distinct strings, primary first."""
        ...
