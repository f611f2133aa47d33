"""ROCOv2 (Radiology Objects in COntext, version 2): caption CSVs with optional UMLS concept CSVs.

Each split ships `<split>_captions.csv` (`ID,Caption`, IDs such as `ROCOv2_2023_train_000001`), the
images as `<split>/<ID>.jpg`, and `<split>_concepts.csv` (`ID,CUIs`, CUIs separated by `;`). Captions
are kept as written. With `concepts: true` the CUIs become the item's labels (raw CUIs, e.g.
`C0040405`); every part must then name its concepts file.

Caption CSVs are streamed. A concepts CSV is read into a dict (ID -> CUIs) before its captions, since
rows are joined by ID (ROCOv2 has about 60k rows per split, a few MB). A bad concepts row (no ID, a
malformed CUI, a repeated ID) is an `ItemError` naming the concepts file and line; a caption row
whose ID has no concepts row still becomes an item, with no labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unimed_data.layouts.item import Item, ItemError, RelPath, relative_path, unique_stripped
from unimed_data.layouts.tabular import parse_rows, read_csv

ID_COLUMN = "ID"
CAPTION_COLUMN = "Caption"
CUIS_COLUMN = "CUIs"
_CUI = re.compile(r"C\d{7}")


class Rocov2Part(BaseModel):
    model_config = ConfigDict(extra="forbid")

    captions: RelPath  # e.g. train_captions.csv
    concepts: RelPath | None = None  # e.g. train_concepts.csv; read only with the layout's `concepts: true`
    images: RelPath  # folder holding <ID><image_suffix>, e.g. train
    split: str | None = None  # as spelled by the source: train, valid, test


class Rocov2Layout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["rocov2"]
    parts: list[Rocov2Part] = Field(min_length=1)
    concepts: bool = False  # keep the UMLS CUIs as labels
    image_suffix: str = ".jpg"

    @model_validator(mode="after")
    def _concepts_named(self) -> Rocov2Layout:
        if self.concepts:
            missing = [part.captions for part in self.parts if part.concepts is None]
            if missing:
                raise ValueError(f"concepts: true needs a concepts file in every part; missing for {missing}")
        return self


def annotation_files(layout: Rocov2Layout, dataset_root: Path) -> list[Path]:
    files = []
    for part in layout.parts:
        files.append(dataset_root / part.captions)
        if layout.concepts and part.concepts:
            files.append(dataset_root / part.concepts)
    return files


def parse_cuis(cell: str) -> list[str]:
    cuis = unique_stripped(cell.split(";"))
    if not cuis:
        raise ValueError("no CUIs")
    bad = [cui for cui in cuis if not _CUI.fullmatch(cui)]
    if bad:
        raise ValueError(f"malformed CUI(s) {bad} (expected C followed by 7 digits)")
    return cuis


def _add_concepts(
    concepts: dict[str, list[str]], first_line: dict[str, str], where: str, row: dict
) -> ItemError | None:
    """Record one concepts row's CUIs under its ID; what is wrong with the row, if anything."""
    item_id = row[ID_COLUMN].strip()
    if not item_id:
        return ItemError(None, None, f"{where}: no id in column {ID_COLUMN!r}")
    if item_id in concepts:
        return ItemError(item_id, None, f"{where}: duplicate id {item_id!r}, first at {first_line[item_id]}")
    first_line[item_id] = where
    try:
        concepts[item_id] = parse_cuis(row[CUIS_COLUMN])
    except ValueError as exc:
        concepts[item_id] = []  # seen, so a later repeat is still reported as a duplicate
        return ItemError(item_id, None, f"{where}: column {CUIS_COLUMN!r}: {exc}")
    return None


def _read_concepts(dataset_root: Path, relpath: str, errors: list[ItemError]) -> dict[str, list[str]]:
    concepts: dict[str, list[str]] = {}
    first_line: dict[str, str] = {}
    rows = read_csv(dataset_root, relpath, [ID_COLUMN, CUIS_COLUMN])
    results = parse_rows(rows, partial(_add_concepts, concepts, first_line))
    errors.extend(error for error in results if error is not None)
    return concepts


def _parse_row(
    layout: Rocov2Layout, part: Rocov2Part, concepts: dict[str, list[str]], where: str, row: dict
) -> Item | ItemError:
    item_id = row[ID_COLUMN].strip()
    if not item_id:
        return ItemError(None, None, f"{where}: no id in column {ID_COLUMN!r}")
    try:
        relpath = relative_path(part.images, item_id + layout.image_suffix)
    except ValueError as exc:
        return ItemError(item_id, None, f"{where}: column {ID_COLUMN!r}: {exc}")
    caption = row[CAPTION_COLUMN].strip()
    if not caption:
        return ItemError(item_id, relpath, f"{where}: no caption in column {CAPTION_COLUMN!r}")
    return Item(
        item_id=item_id,
        source_path=relpath,
        labels=list(concepts.get(item_id, ())),
        captions=[caption],
        split=part.split,
        origin=where,
    )


def iter_items(layout: Rocov2Layout, dataset_root: Path) -> Iterator[Item | ItemError]:
    for part in layout.parts:
        concepts: dict[str, list[str]] = {}
        if layout.concepts and part.concepts:
            errors: list[ItemError] = []
            concepts = _read_concepts(dataset_root, part.concepts, errors)
            yield from errors
        rows = read_csv(dataset_root, part.captions, [ID_COLUMN, CAPTION_COLUMN])
        yield from parse_rows(rows, partial(_parse_row, layout, part, concepts))
