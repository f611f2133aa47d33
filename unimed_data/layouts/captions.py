"""Existing image-caption sets (ROCO, PMC-OA, BIOMEDICA, ...) as CSV or JSON Lines tables.

Their captions are kept as written (`caption_source: original`). With `modality_from_metadata`, each
item's modality comes from its BIOMEDICA metadata JSON (`image_secondary_label`, then
`image_primary_label`), because caption sets mix modalities; labels we cannot map leave the
manifest's modality in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from unimed_data.layouts.item import Item, ItemError, RelPath, relative_path, unique_stripped
from unimed_data.layouts.tabular import optional_cell, parse_rows, read_csv, read_jsonl

# BIOMEDICA taxonomy labels (lower-cased) -> our modalities; secondary labels are the specific ones.
BIOMEDICA_MODALITIES = {
    "x-ray radiography": "xray",
    "radiography": "xray",
    "computerized tomography": "ct",
    "computed tomography": "ct",
    "magnetic resonance imaging": "mri",
    "ultrasound": "ultrasound",
    "light microscopy": "pathology",
    "histopathology": "pathology",
    "immunohistochemistry": "pathology",
    "fundus photography": "fundus",
    "optical coherence tomography": "oct",
    "endoscopy": "endoscopy",
}


class CaptionsLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["captions"]
    table: RelPath
    format: Literal["csv", "jsonl"] | None = None  # default: from the table's extension
    image_column: str
    caption_column: str  # a caption, or (JSONL) a list of captions
    id_column: str | None = None  # item identity; default the image path
    metadata_column: str | None = None  # per-item BIOMEDICA metadata JSON, relative to the dataset root
    modality_from_metadata: bool = False  # the only use of the metadata, for now

    @model_validator(mode="after")
    def _consistent(self) -> CaptionsLayout:
        if self.format is None:
            suffix = Path(self.table).suffix.lower()
            if suffix not in (".csv", ".jsonl"):
                raise ValueError(f"cannot tell the format of {self.table!r}: set format to csv or jsonl")
            self.format = suffix[1:]
        if self.modality_from_metadata and not self.metadata_column:
            raise ValueError("modality_from_metadata needs metadata_column")
        return self


def annotation_files(layout: CaptionsLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.table]


def modality_from_biomedica(metadata: dict) -> str | None:
    for field in ("image_secondary_label", "image_primary_label"):
        values = metadata.get(field) or []
        for value in [values] if isinstance(values, str) else values:
            modality = BIOMEDICA_MODALITIES.get(str(value).strip().lower())
            if modality:
                return modality
    return None


def _captions(value: object) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(entry, str) for entry in values):
        raise ValueError("expected a caption string or a list of strings")
    return unique_stripped(values)


def _read_metadata(dataset_root: Path, relpath: str) -> dict:
    try:
        metadata = json.loads((dataset_root / relative_path(relpath)).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"metadata {relpath!r}: {exc}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata {relpath!r}: expected a JSON object")
    return metadata


def _parse_row(layout: CaptionsLayout, dataset_root: Path, where: str, row: dict) -> Item:
    image = optional_cell(row, layout.image_column)
    if image is None:
        raise ValueError(f"no image in column {layout.image_column!r}")
    relpath = relative_path(image)
    captions = _captions(row.get(layout.caption_column, ""))
    if not captions:
        raise ValueError(f"no caption in column {layout.caption_column!r}")
    modality = None
    if layout.modality_from_metadata:
        metadata_path = optional_cell(row, layout.metadata_column)
        if metadata_path is None:
            raise ValueError(f"no metadata path in column {layout.metadata_column!r}")
        modality = modality_from_biomedica(_read_metadata(dataset_root, metadata_path))
    item_id = optional_cell(row, layout.id_column) if layout.id_column else relpath
    if item_id is None:
        raise ValueError(f"no id in column {layout.id_column!r}")
    return Item(item_id=item_id, source_path=relpath, captions=captions, modality=modality, origin=where)


def _item_or_error(layout: CaptionsLayout, dataset_root: Path, where: str, row: dict) -> Item | ItemError:
    try:
        return _parse_row(layout, dataset_root, where, row)
    except ValueError as exc:
        item_id = optional_cell(row, layout.id_column or layout.image_column)
        return ItemError(item_id, None, f"{where}: {exc}")


def iter_items(layout: CaptionsLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    if layout.format == "csv":
        columns = (layout.image_column, layout.caption_column, layout.id_column, layout.metadata_column)
        rows = read_csv(dataset_root, layout.table, [column for column in columns if column])
    else:
        rows = read_jsonl(dataset_root, layout.table)
    yield from parse_rows(rows, partial(_item_or_error, layout, dataset_root))
