"""Split rules: which of train/val/test an item belongs to.

- `hash` (default): a hash of (seed, group) placed on the cumulative fractions. The group is the
  patient when the item has one, else the item id, so a patient never straddles two splits, and the
  answer depends on nothing but the seed and the group: not on row order, not on other items.
- `column`: the source says (a split column, or one CSV per split); values are normalised. With
  `val_fraction`, that fraction of the source's train groups (patients) moves to val by the same
  seeded hash, for sources that publish train and test only (CBIS-DDSM) but a probe needs a val.
- `fixed`: everything in one split, e.g. an evaluation-only set in `test`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from unimed_data.schema import SPLITS

SplitName = Literal["train", "val", "test"]

_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


class HashSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Literal["hash"] = "hash"
    fractions: dict[SplitName, float] = {"train": 0.9, "val": 0.05, "test": 0.05}

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, fractions: dict[str, float]) -> dict[str, float]:
        if any(value < 0 for value in fractions.values()):
            raise ValueError("fractions must not be negative")
        if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"fractions must sum to 1, they sum to {sum(fractions.values()):g}")
        return fractions


class ColumnSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Literal["column"]
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)  # of the source's train groups, moved to val


class FixedSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Literal["fixed"]
    split: SplitName


def _rule_tag(value: object) -> object:
    """`by` may be left out, meaning `hash`, so `split: {fractions: ...}` reads naturally."""
    return value.get("by", "hash") if isinstance(value, dict) else getattr(value, "by", None)


SplitRule = Annotated[
    Annotated[HashSplit, Tag("hash")]
    | Annotated[ColumnSplit, Tag("column")]
    | Annotated[FixedSplit, Tag("fixed")],
    Discriminator(
        _rule_tag,
        custom_error_type="split_rule",
        custom_error_message="by should be 'hash' (the default), 'column' or 'fixed'",
    ),
]
SPLIT_RULES = ("hash", "column", "fixed")


def normalise_split(value: str) -> str:
    """The canonical split name for a source's spelling (`valid`, `Validation`, `dev` -> `val`)."""
    split = _ALIASES.get(value.strip().lower())
    if split is None:
        raise ValueError(f"unknown split {value!r} (expected one of {', '.join(sorted(_ALIASES))})")
    return split


def hash_unit(seed: int, group: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, group)."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(
    rule: HashSplit | ColumnSplit | FixedSplit,
    *,
    item_id: str,
    patient: str | None,
    source_split: str | None,
    seed: int,
) -> str:
    """The item's split; raises ValueError when a `column` rule meets an item without a usable split."""
    if isinstance(rule, FixedSplit):
        return rule.split
    if isinstance(rule, ColumnSplit):
        if source_split is None:
            raise ValueError("split rule is 'column' but the source gives no split for this item")
        split = normalise_split(source_split)
        if (
            split == "train"
            and hash_unit(seed, patient if patient is not None else item_id) < rule.val_fraction
        ):
            return "val"
        return split
    point = hash_unit(seed, patient if patient is not None else item_id)
    splits = [split for split in SPLITS if rule.fractions.get(split, 0.0) > 0]
    edge = 0.0
    for split in splits:
        edge += rule.fractions[split]
        if point < edge:
            return split
    return splits[-1]  # fractions may sum to a hair under 1
