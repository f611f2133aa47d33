"""UniMed-CLIP's zero-shot protocol (`--protocol unimed`): what a set must declare, its headline
score, and how the sets add up to UniMed's table.

From UniMed-CLIP's evaluation code (`clipeval/eval_zeroshot.py`) and paper: 21 single-label sets in
six table columns; the binary sets the paper reports by AUROC are ranked by class 1's similarity
minus class 0's (no softmax, so neither it nor the x100 logit scale changes the ranking); the rest
report top-1 accuracy. The sets, columns and metrics are defined once, in
`unimed_data.evalset.unimed_sets`. UniMed's code computes no average; the two this table gives are
the project's choice: the plain mean over the scored sets, and the mean of the column means.

A set declares itself in info.json:
``"protocol": {"unimed": {"metric": "auroc" | "top1", "column": <one of COLUMNS>}}``, optionally
with ``"max_prompts": N``: only the first N prompts of each class are averaged (UniMed's code keeps
just the first prompt per class for rsna_pneumonia).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from unimed_data.evalset.unimed_sets import COLUMNS, METRICS, SETS

if TYPE_CHECKING:
    from unimed_train.eval.evalsets import EvalSet

NAME = "unimed"
SET_COUNT = len(SETS)  # the sets of UniMed's table (21); averages over fewer say so


class ProtocolError(ValueError):
    """A set that does not declare what the protocol needs; the message names the set."""


@dataclass(frozen=True)
class UnimedSet:
    """What one set declares: its headline metric, its table column, an optional prompt cap."""

    metric: str
    column: str
    max_prompts: int | None = None


def unimed_protocol(evalset: EvalSet) -> UnimedSet:
    """The set's `protocol.unimed` entry, checked; `ProtocolError` naming the set otherwise."""
    where = f"{evalset.root}: set {evalset.name}"
    declared = (evalset.info.get("protocol") or {}).get(NAME) if isinstance(evalset.info, dict) else None
    if not isinstance(declared, dict):
        raise ProtocolError(f'{where}: info.json has no "protocol": {{"{NAME}": {{"metric", "column"}}}}')
    metric, column, cap = declared.get("metric"), declared.get("column"), declared.get("max_prompts")
    if metric not in METRICS:
        raise ProtocolError(f"{where}: protocol.{NAME}.metric is {metric!r}; expected one of {METRICS}")
    if column not in COLUMNS:
        raise ProtocolError(f"{where}: protocol.{NAME}.column is {column!r}; expected one of {COLUMNS}")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ProtocolError(f"{where}: protocol.{NAME}.max_prompts is {cap!r}; expected a whole number >= 1")
    if evalset.kind != "classification":
        raise ProtocolError(f"{where}: a {evalset.kind} set; the protocol scores single-label sets only")
    if metric == "auroc" and len(evalset.classnames) != 2:
        raise ProtocolError(f"{where}: AUROC needs two classes; the set has {len(evalset.classnames)}")
    return UnimedSet(metric=metric, column=column, max_prompts=cap)


def cap_prompts(evalset: EvalSet, declared: UnimedSet) -> None:
    """Keep only the first `max_prompts` prompts of each class, when the set declares a cap."""
    if declared.max_prompts is None:
        return
    ensembles = evalset.prompt_ensembles()
    evalset.prompts = {
        c: p[: declared.max_prompts] for c, p in zip(evalset.classnames, ensembles, strict=True)
    }
    evalset.templates = []


def margin_auroc(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """AUROC of class 1 ranked by score[1] - score[0]; None when the targets hold one class."""
    from sklearn.metrics import roc_auc_score

    targets = np.asarray(targets)
    if len(np.unique(targets)) != 2:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    return float(roc_auc_score(targets == 1, scores[:, 1] - scores[:, 0]))


def unimed_score(declared: UnimedSet, scores: np.ndarray, targets: np.ndarray, metrics: dict) -> float | None:
    """The set's headline as a fraction (AUROC or top-1), from its zero-shot scores and metrics."""
    return margin_auroc(scores, targets) if declared.metric == "auroc" else metrics["top1"]


def entry_fields(declared: UnimedSet) -> dict[str, Any]:
    """What a result entry of this protocol carries besides the usual fields."""
    return {"protocol": NAME, "metric": declared.metric, "column": declared.column}


@dataclass
class Summary:
    """One model's row of UniMed's table; every value a fraction, None where nothing was scored."""

    columns: dict[str, float | None]  # per column: mean over its scored sets
    set_mean: float | None  # plain mean over every scored set
    column_mean: float | None  # mean of the column means that exist
    scored: int  # sets with a score
    missing: int  # sets in the table this model has no score for


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(scores: list[tuple[str, float | None]]) -> Summary:
    """UniMed's row from (column, score or None) per set."""
    per: dict[str, list[float]] = {c: [] for c in COLUMNS}
    for column, score in scores:
        if score is not None:
            per[column].append(score)
    columns = {c: _mean(v) for c, v in per.items()}
    have = [s for _, s in scores if s is not None]
    return Summary(
        columns=columns,
        set_mean=_mean(have),
        column_mean=_mean([m for m in columns.values() if m is not None]),
        scored=len(have),
        missing=len(scores) - len(have),
    )
