"""A unit's label set read as caption content: definite findings, uncertain findings, normal study.

Shared by the caption backends so that the offline templates and the LLM prompts agree on what a
label set says: a normal class (`No Finding`, `normal fundus`) is never a finding, an uncertain
label is never a definite finding, and findings keep the source's order.
"""

from __future__ import annotations

from dataclasses import dataclass

NORMAL_LABELS = frozenset({"no finding", "no findings", "normal", "healthy", "no abnormality"})


def is_normal(label: str) -> bool:
    """'No Finding', 'normal', 'normal fundus', 'healthy retina': a normal study, not a finding."""
    lowered = label.lower()
    return lowered in NORMAL_LABELS or lowered.startswith(("normal ", "healthy "))


@dataclass(frozen=True)
class LabelSet:
    findings: tuple[str, ...]
    """Labels that are present, neither uncertain nor a normal class."""
    uncertain: tuple[str, ...]
    """Labels the source marks uncertain (normal classes left out)."""
    normal: bool
    """The label set has a normal class (`No Finding`, `normal`, `healthy retina`, ...)."""

    @property
    def empty(self) -> bool:
        """Nothing to caption from: no finding, no uncertain finding, not normal."""
        return not (self.findings or self.uncertain or self.normal)


def split_labels(labels: tuple[str, ...] | list[str], uncertain: tuple[str, ...] | list[str]) -> LabelSet:
    """Split a unit's readable labels into findings / uncertain / normal, as the captions read them."""
    unsure = tuple(u for u in uncertain if not is_normal(u))
    findings = tuple(lab for lab in labels if not is_normal(lab) and lab not in unsure)
    return LabelSet(findings=findings, uncertain=unsure, normal=any(is_normal(lab) for lab in labels))
