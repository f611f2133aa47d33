"""Quilt-1M (Ikezogwo et al. 2023): histopathology image-text pairs from one lookup CSV.

`quilt_1M_lookup.csv` has an unnamed pandas index column, then `caption, image_path, subset, split,
pathology, roi_text, noisy_text, corrected_text, med_umls_ids, magnification, height, width`.
`image_path` is a file name inside `quilt_1m/`; `subset` is the source (`quilt`, `openpath`, `pubmed`,
`laion`); `split` is as the source spells it; `pathology` is a Python-literal list of subspecialties
such as `['Dermatopathology', 'Soft tissue']`, or blank. It is read with `ast.literal_eval` (literals
only, never code) and its strings become the item's labels as written.

Only `image_path` and the caption column are required in the header; without a `split` column items
get no split, without `pathology` no labels. With `subsets`, rows of other subsets are `Filtered`
(the header must then have `subset`). The CSV is streamed; the csv module's field-size limit is
raised to 16 MiB first because the transcript columns can be long.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unimed_data.layouts.item import Filtered, Item, ItemError, RelPath, relative_path
from unimed_data.layouts.tabular import parse_rows, parse_str_list, read_csv

IMAGE_COLUMN = "image_path"
SUBSET_COLUMN = "subset"
SPLIT_COLUMN = "split"
PATHOLOGY_COLUMN = "pathology"
_FIELD_LIMIT = 16 * 1024 * 1024


class QuiltLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["quilt"]
    csv: RelPath = "quilt_1M_lookup.csv"
    image_dir: RelPath = "quilt_1m"  # `image_path` is relative to it
    caption_column: str = "caption"  # or e.g. corrected_text
    subsets: list[str] | None = Field(default=None, min_length=1)  # keep only these `subset` values


def annotation_files(layout: QuiltLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.csv]


def parse_pathology(cell: str) -> list[str]:
    """A blank cell or `[]` is no labels; otherwise a Python list literal of strings."""
    text = cell.strip()
    if not text or text.lower() == "nan":
        return []
    return parse_str_list(cell)


def _parse_row(layout: QuiltLayout, where: str, row: dict) -> Item | ItemError | Filtered:
    image = row[IMAGE_COLUMN].strip()
    subset = row.get(SUBSET_COLUMN, "").strip() or None
    if layout.subsets is not None and subset not in layout.subsets:
        return Filtered(image or where, f"subset {subset!r} not in {layout.subsets}")
    if not image:
        return ItemError(None, None, f"{where}: no image in column {IMAGE_COLUMN!r}")
    try:
        relpath = relative_path(layout.image_dir, image)
    except ValueError as exc:
        return ItemError(None, None, f"{where}: column {IMAGE_COLUMN!r}: {exc}")
    caption = row[layout.caption_column].strip()
    if not caption:
        return ItemError(relpath, relpath, f"{where}: no caption in column {layout.caption_column!r}")
    try:
        labels = parse_pathology(row.get(PATHOLOGY_COLUMN, ""))
    except ValueError as exc:
        return ItemError(relpath, relpath, f"{where}: column {PATHOLOGY_COLUMN!r}: {exc}")
    return Item(
        item_id=relpath,
        source_path=relpath,
        labels=labels,
        captions=[caption],
        split=row.get(SPLIT_COLUMN, "").strip() or None,
        origin=where,
    )


def iter_items(layout: QuiltLayout, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    required = [IMAGE_COLUMN, layout.caption_column]
    if layout.subsets is not None:
        required.append(SUBSET_COLUMN)
    rows = read_csv(dataset_root, layout.csv, required)
    yield from parse_rows(rows, partial(_parse_row, layout))
