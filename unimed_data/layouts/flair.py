"""The FLAIR retina dataframes (`,image,atributes,categories`; the header really spells `atributes`).

`categories` holds a Python-literal list such as `['glaucoma']`; it is read with `ast.literal_eval`
(literals only, never code) and must be a list of strings. `patient_pattern` optionally pulls a
patient id out of the image path (its first group), so that both eyes of one patient share a split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from unimed_data.layouts.item import Item, ItemError, RelPath, relative_path
from unimed_data.layouts.tabular import parse_rows, parse_str_list, read_csv


class FlairLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["flair"]
    csv: RelPath
    image_root: RelPath = ""  # folder the `image` paths are relative to
    patient_pattern: str | None = None  # regex searched in the image path; group 1 is the patient

    @field_validator("patient_pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        if groups < 1:
            raise ValueError("needs a capturing group for the patient id")
        return value


def annotation_files(layout: FlairLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.csv]


def parse_categories(cell: str) -> list[str]:
    labels = parse_str_list(cell)
    if not labels:
        raise ValueError("empty category list")
    return labels


def _parse_row(
    layout: FlairLayout, pattern: re.Pattern[str] | None, where: str, row: dict
) -> Item | ItemError:
    try:
        relpath = relative_path(layout.image_root, row["image"].strip())
    except ValueError as exc:
        return ItemError(None, None, f"{where}: column 'image': {exc}")
    try:
        labels = parse_categories(row["categories"])
    except ValueError as exc:
        return ItemError(relpath, relpath, f"{where}: column 'categories': {exc}")
    match = pattern.search(relpath) if pattern else None
    return Item(
        item_id=relpath,
        source_path=relpath,
        labels=labels,
        patient=match and match.group(1),
        origin=where,
    )


def iter_items(layout: FlairLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    pattern = re.compile(layout.patient_pattern) if layout.patient_pattern else None
    rows = read_csv(dataset_root, layout.csv, ["image", "categories"])
    yield from parse_rows(rows, partial(_parse_row, layout, pattern))
