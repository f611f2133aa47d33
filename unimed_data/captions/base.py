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

    @property
    def needs_all_units(self) -> bool:
        """True when the backend must see every unit of the build before captioning (a `--limit`
        pilot chooses its units over all datasets, up front)."""
        ...

    def choose_pilot(self, units: list[CaptionUnit]) -> None:
        """Given every unit in build order, fix the ones a limited run captions."""
        ...

    def plan(self, units: list[CaptionUnit]) -> dict:
        """`--dry-run`: what captioning these units would do (calls, cache hits, cost), no network."""
        ...

    def caption(self, units: list[CaptionUnit]) -> dict[CaptionUnit, list[str] | CaptionFailure]:
        """Captions for each unit: several distinct strings, primary first."""
        ...

    def spent(self) -> dict | None:
        """What the backend spent so far (calls, tokens, dollars), or None when it spends nothing."""
        ...

    def usage_line(self) -> str | None:
        """`spent` as one line for the terminal after the caption stage, or None."""
        ...
