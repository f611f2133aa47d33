"""A CSV with an image column and one label column, single- or multi-label.

Multi-label cells are split on `multi_label_separator`, as in NIH ChestX-ray14's
`Finding Labels` (`Effusion|Infiltration`). Optional columns give the patient and the split.

`split_lists` gives the split from list files instead, one image name per line, as NIH ships
`train_val_list.txt` and `test_list.txt`: an image in no list is `Filtered`, one in two lists is an
error row, and a list naming an image the CSV lacks stops the dataset (the lists and CSV disagree).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unimed_data.layouts.item import (
    Filtered,
    Item,
    ItemError,
    LayoutError,
    RelPath,
    relative_path,
    unique_stripped,
)
from unimed_data.layouts.tabular import annotation_file, optional_cell, parse_rows, read_csv
from unimed_data.splits import SplitName


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
    split_lists: dict[SplitName, RelPath] = {}  # split -> text file of image names (`test: test_list.txt`)

    @model_validator(mode="after")
    def _one_split_source(self) -> CsvLabelLayout:
        if self.split_column and self.split_lists:
            raise ValueError("give split_column or split_lists, not both")
        return self


def annotation_files(layout: CsvLabelLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.csv, *(dataset_root / path for path in layout.split_lists.values())]


def _read_split_lists(layout: CsvLabelLayout, dataset_root: Path) -> dict[str, list[str]]:
    """Image name -> the splits whose list names it."""
    splits: dict[str, list[str]] = {}
    for split, relpath in layout.split_lists.items():
        try:
            text = annotation_file(dataset_root, relpath).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise LayoutError(f"{relpath}: not UTF-8 text ({exc})") from None
        for name in dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()):
            splits.setdefault(name, []).append(split)
    return splits


def _with_listed_split(
    entries: Iterator[Item | ItemError], splits: dict[str, list[str]], image_column: str
) -> Iterator[Item | ItemError | Filtered]:
    seen: set[str] = set()
    for entry in entries:
        if isinstance(entry, ItemError):
            if entry.source_path:  # a listed image with a bad row is this error, not missing
                seen.add(entry.source_path.rsplit("/", 1)[-1])
            yield entry
            continue
        name = entry.source_path.rsplit("/", 1)[-1]
        seen.add(name)
        listed = splits.get(name, [])
        if not listed:
            yield Filtered(entry.item_id, "in no split list")
        elif len(listed) > 1:
            yield ItemError(entry.item_id, entry.source_path, f"{entry.origin}: {name} is in lists {listed}")
        else:
            yield replace(entry, split=listed[0])
    missing = sorted(set(splits) - seen)
    if missing:
        raise LayoutError(
            f"split lists name {len(missing)} image(s) not in column {image_column!r}: {missing[:3]}"
        )


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


def iter_items(layout: CsvLabelLayout, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    optional = [column for column in (layout.patient_column, layout.split_column) if column]
    required = [layout.image_column, layout.label_column, *optional]
    splits = _read_split_lists(layout, dataset_root) if layout.split_lists else None
    entries = parse_rows(read_csv(dataset_root, layout.csv, required), partial(_parse_row, layout))
    yield from entries if splits is None else _with_listed_split(entries, splits, layout.image_column)
