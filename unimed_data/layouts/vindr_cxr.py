"""VinDr-CXR (PhysioNet `vindr-cxr/1.0.0`): image-level labels from `annotations/image_labels_*.csv`.

Each CSV has `image_id`, optionally `rad_id`, then one 0/1 column per finding or diagnosis (every
other column is a label, so the label set is the release's own). The image is
`<images>/<image_id>.dicom` (`train/`, `test/`). The training CSV has one row per radiologist (three
per image); the test CSV one consensus row per image. Rows of one image are combined per label:

- `readers: majority` (default): positive when more than half of the image's rows mark it;
- `readers: any`: positive when any row marks it.

After combining, the `no_finding` label (`No finding`) is positive exactly when no other label is,
so an image never carries both. There are no patient ids; the split is the CSV's (`split: {by: column}`).
A cell other than 0/1 makes that image an error row naming the CSV line and column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unimed_data.layouts.item import Item, ItemError, RelPath, relative_path
from unimed_data.layouts.tabular import read_csv, shown_cell
from unimed_data.splits import SplitName

_IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_NOT_LABELS = {"image_id", "rad_id"}
_VOTES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


class VindrCsv(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: RelPath
    split: SplitName
    images: RelPath  # folder of `<image_id>.dicom`


class VindrCxrLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["vindr_cxr"]
    csvs: list[VindrCsv] = Field(
        default_factory=lambda: [
            VindrCsv(path="annotations/image_labels_train.csv", split="train", images="train"),
            VindrCsv(path="annotations/image_labels_test.csv", split="test", images="test"),
        ],
        min_length=1,
    )
    readers: Literal["majority", "any"] = "majority"
    no_finding: str = "No finding"
    extension: str = ".dicom"


def annotation_files(layout: VindrCxrLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / entry.path for entry in layout.csvs]


def _grouped_rows(
    dataset_root: Path, relpath: str
) -> Iterator[tuple[str, list[tuple[str, dict]]] | ItemError]:
    """(image id, its (where, row) pairs) per image in first-seen order; bad rows as errors."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for where, row in read_csv(dataset_root, relpath, ["image_id"]):
        if isinstance(row, str):
            yield ItemError(None, None, f"{where}: {row}")
            continue
        image_id = str(row["image_id"]).strip()
        if not _IMAGE_ID.fullmatch(image_id):
            yield ItemError(None, None, f"{where}: bad image_id {shown_cell(image_id)}")
            continue
        groups.setdefault(image_id, []).append((where, row))
    yield from groups.items()


def _combine(layout: VindrCxrLayout, rows: list[tuple[str, dict]]) -> list[str] | str:
    """The image's labels under the `readers` rule, or why a cell is unreadable."""
    columns = [column for column in rows[0][1] if column not in _NOT_LABELS]
    votes = dict.fromkeys(columns, 0)
    for where, row in rows:
        for column in columns:
            vote = _VOTES.get(str(row[column]).strip())
            if vote is None:
                return f"{where}: column {column!r}: expected 0 or 1, got {shown_cell(str(row[column]))}"
            votes[column] += vote
    needed = 1 if layout.readers == "any" else len(rows) // 2 + 1
    found = [column for column in columns if column != layout.no_finding and votes[column] >= needed]
    return found or ([layout.no_finding] if layout.no_finding in votes else [])


def iter_items(layout: VindrCxrLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    for entry in layout.csvs:
        for group in _grouped_rows(dataset_root, entry.path):
            if isinstance(group, ItemError):
                yield group
                continue
            image_id, rows = group
            source = relative_path(entry.images, image_id + layout.extension)
            labels = _combine(layout, rows)
            if isinstance(labels, str):
                yield ItemError(source, source, labels)
                continue
            yield Item(
                item_id=source, source_path=source, labels=labels, split=entry.split, origin=rows[0][0]
            )
