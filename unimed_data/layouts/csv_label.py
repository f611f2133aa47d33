"""A CSV with an image column and one label column, single- or multi-label.

Multi-label cells are split on `multi_label_separator`, as in NIH ChestX-ray14's
`Finding Labels` (`Effusion|Infiltration`). Optional columns give the patient and the split.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unimed_data.layouts.item import Item, ItemError, RelPath, relative_path, unique_stripped
from unimed_data.layouts.tabular import optional_cell, parse_rows, read_csv


class CsvLabelLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["csv_label"]
    csv: RelPath
    image_column: str
    label_column: str
    multi_label_separator: str | None = Field(default=None, min_length=1)
    image_root: RelPath = ""  # folder the image paths are relative to
    patient_column: str | None = None
    split_column: str | None = None


def annotation_files(layout: CsvLabelLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.csv]


def _parse_row(layout: CsvLabelLayout, where: str, row: dict) -> Item | ItemError:
    try:
        relpath = relative_path(layout.image_root, row[layout.image_column].strip())
    except ValueError as exc:
        return ItemError(None, None, f"{where}: column {layout.image_column!r}: {exc}")
    cell = row[layout.label_column]
    labels = unique_stripped(
        cell.split(layout.multi_label_separator) if layout.multi_label_separator else [cell]
    )
    if not labels:
        return ItemError(relpath, relpath, f"{where}: empty label in column {layout.label_column!r}")
    return Item(
        item_id=relpath,
        source_path=relpath,
        labels=labels,
        patient=optional_cell(row, layout.patient_column),
        split=optional_cell(row, layout.split_column),
        origin=where,
    )


def iter_items(layout: CsvLabelLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    optional = [column for column in (layout.patient_column, layout.split_column) if column]
    required = [layout.image_column, layout.label_column, *optional]
    yield from parse_rows(read_csv(dataset_root, layout.csv, required), partial(_parse_row, layout))
