"""What a source hands over (one `Candidate` per input image) and how labels become targets.

The task follows from the labels, not from a flag: a set is single-label when every labelled
candidate has exactly one positive label and nothing uncertain, else multi-label. Uncertain labels
(CheXpert -1.0 under any policy) are never positives: their target entry is 0 and they are listed
in the sample's json as `uncertain_labels`, so an evaluator can mask them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unimed_data.schema import error_row


class EvalSetError(ValueError):
    """An evaluation set that cannot be built; the message names the path and the reason."""


@dataclass(frozen=True)
class Candidate:
    """One input image with what the source says about it; its pixels are read only when written."""

    key: str
    split: str  # the split of EVAL it goes to
    dataset: str
    modality: str
    path: str  # the source file, or for --from-build the shard holding the JPEG
    labels: tuple[str, ...] = ()
    uncertain: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    member: tuple[int, int] | None = None  # (offset, size) of a ready JPEG inside the shard at `path`

    @property
    def positives(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label not in self.uncertain)


@dataclass
class Collected:
    """A source's candidates and the inputs it already failed (rows shaped like ERROR_SCHEMA)."""

    name: str
    modality: str
    source: str  # what the set was built from, for info.json
    candidates: list[Candidate]
    errors: list[dict] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)  # class -> definition, for prompts
    unlabelled_are_negatives: bool = False  # multi-label: an image without findings is all-negative
    read_from: list[Path] = field(default_factory=list)  # folders the source reads; EVAL must lie outside
    # A benchmark's own class list (index = class id, kept as given); None: the labels found, sorted.
    classes: list[str] | None = None
    readable: dict[str, str] = field(default_factory=dict)  # class -> wording the templates are filled with
    info: dict = field(default_factory=dict)  # further info.json fields (never replacing the standard ones)
    templates: Path | None = None  # the source's own zero-shot templates; `--templates` wins


@dataclass(frozen=True)
class Plan:
    """The task, the class list (index = class id) and the candidates that can be written."""

    task: str
    classes: list[str]
    candidates: list[Candidate]
    errors: list[dict]


def plan_classification(collected: Collected) -> Plan:
    """Classes are the source's fixed list, else the sorted union of positive labels; candidates
    without a usable label, or with one outside the fixed list, are errors."""
    labelled = [c for c in collected.candidates if c.labels or c.uncertain]
    single = all(len(c.positives) == 1 and not c.uncertain for c in labelled)
    task = "classification" if single else "multilabel"
    keep, errors = [], []
    for candidate in collected.candidates:
        if (
            candidate.labels
            or candidate.uncertain
            or (task == "multilabel" and collected.unlabelled_are_negatives)
        ):
            keep.append(candidate)
        else:
            errors.append(error_row(candidate.dataset, "labels", candidate.key, candidate.path, "no label"))
    if collected.classes is None:
        return Plan(task, sorted({label for c in keep for label in c.positives}), keep, errors)
    known, inside = set(collected.classes), []
    for candidate in keep:
        if outside := [label for label in (*candidate.positives, *candidate.uncertain) if label not in known]:
            reason = f"label(s) {', '.join(outside)} not among the classes: {', '.join(collected.classes)}"
            errors.append(error_row(candidate.dataset, "labels", candidate.key, candidate.path, reason))
        else:
            inside.append(candidate)
    return Plan(task, list(collected.classes), inside, errors)


def plan_retrieval(collected: Collected) -> Plan:
    keep, errors = [], []
    for candidate in collected.candidates:
        if candidate.captions:
            keep.append(candidate)
        else:
            errors.append(
                error_row(candidate.dataset, "captions", candidate.key, candidate.path, "no caption")
            )
    return Plan("retrieval", [], keep, errors)


def target_members(candidate: Candidate, task: str, class_ids: dict[str, int]) -> dict[str, bytes]:
    """The sample's label member(s): `cls`, `npy` or `txt`, plus the `json` metadata."""
    meta = {
        "dataset": candidate.dataset,
        "modality": candidate.modality,
        "labels": list(candidate.positives),
        "uncertain_labels": list(candidate.uncertain),
    }
    members = {"json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")}
    if task == "classification":
        members["cls"] = str(class_ids[candidate.positives[0]]).encode("ascii")
    elif task == "multilabel":
        vector = np.zeros(len(class_ids), dtype=np.float32)
        vector[[class_ids[label] for label in candidate.positives]] = 1.0
        buffer = io.BytesIO()
        np.save(buffer, vector, allow_pickle=False)
        members["npy"] = buffer.getvalue()
    else:
        members["txt"] = "\n".join(" ".join(c.split()) for c in candidate.captions).encode("utf-8")
    return members
