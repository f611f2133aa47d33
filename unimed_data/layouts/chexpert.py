"""The CheXpert label CSVs (train.csv, valid.csv): 14 observation columns per chest radiograph.

Cells: `1.0` positive, `0.0` negative, `-1.0` uncertain, blank not mentioned in the report.
`uncertain` says what an uncertain mention becomes (the U-Ones / U-Zeros / U-Ignore policies of
Irvin et al. 2019), keeping in mind that the record lists findings only, never negatives:

- `positive` (U-Ones): the label is in `labels` *and* in `uncertain_labels`, so it counts as a
  class target while captioners word it as "may be present", never as a certain finding;
- `negative` (U-Zeros): treated as `0.0`: in neither list;
- `ignore` (U-Ignore): not a class target, but kept in `uncertain_labels` as an unresolved
  mention, so captions may hedge about it and evaluators can mask it instead of scoring it absent.

A row with no positive observation has empty `labels` unless `No Finding` is 1.0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unimed_data.layouts.item import Filtered, Item, ItemError, RelPath, relative_path
from unimed_data.layouts.tabular import parse_rows, read_csv

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
PATH_COLUMN = "Path"
VIEW_COLUMN = "Frontal/Lateral"
_VALUES = {"1.0": 1, "1": 1, "0.0": 0, "0": 0, "-1.0": -1, "-1": -1, "": None}
_PATIENT = re.compile(r"patient(\d+)")


class ChexpertCsv(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: RelPath
    split: str | None = None  # e.g. train.csv -> train, valid.csv -> valid (normalised to val)


class ChexpertLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["chexpert"]
    csvs: list[ChexpertCsv] = Field(min_length=1)
    uncertain: Literal["positive", "negative", "ignore"] = "positive"
    views: Literal["all", "frontal", "lateral"] = "all"
    path_prefix: str = ""  # stripped from `Path`, e.g. "CheXpert-v1.0-small/"


def observation_labels(row: dict, policy: str) -> tuple[list[str], list[str], list[str]]:
    """The 14 CheXpert observation cells of a row (CheXpert's CSVs, MIMIC-CXR's label CSV) read
    under an uncertainty policy: (labels, uncertain labels, problems with bad cells)."""
    labels, uncertain, problems = [], [], []
    for column in OBSERVATIONS:
        cell = str(row[column]).strip()
        if cell not in _VALUES:
            problems.append(f"column {column!r}: bad value {cell!r} (expected 1.0, 0.0, -1.0 or blank)")
        elif _VALUES[cell] == 1:
            labels.append(column)
        elif _VALUES[cell] == -1:
            if policy == "positive":
                labels.append(column)
            if policy != "negative":
                uncertain.append(column)
    return labels, uncertain, problems


def annotation_files(layout: ChexpertLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / entry.path for entry in layout.csvs]


def iter_items(layout: ChexpertLayout, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    for entry in layout.csvs:
        rows = read_csv(dataset_root, entry.path, [PATH_COLUMN, VIEW_COLUMN, *OBSERVATIONS])
        yield from parse_rows(rows, partial(_parse_row, layout, entry))


def _parse_row(
    layout: ChexpertLayout, entry: ChexpertCsv, where: str, row: dict
) -> Item | ItemError | Filtered:
    raw_path = row[PATH_COLUMN].strip()
    try:
        relpath = relative_path(raw_path.removeprefix(layout.path_prefix))
    except ValueError as exc:
        return ItemError(None, None, f"{where}: column {PATH_COLUMN!r}: {exc}")
    view = row[VIEW_COLUMN].strip().lower()
    if layout.views != "all":
        if view not in ("frontal", "lateral"):
            return ItemError(relpath, relpath, f"{where}: column {VIEW_COLUMN!r}: bad value {view!r}")
        if view != layout.views:
            return Filtered(relpath, f"{view} view")
    labels, uncertain, problems = observation_labels(row, layout.uncertain)
    if problems:
        return ItemError(relpath, relpath, f"{where}: " + "; ".join(problems))
    match = _PATIENT.search(raw_path)
    return Item(
        item_id=relpath,
        source_path=relpath,
        labels=labels,
        uncertain_labels=uncertain,
        patient=match.group(0) if match else None,
        split=entry.split,
        origin=where,
    )
