"""What a layout yields: one `Item` per image, an `ItemError` per bad row, `Filtered` per excluded row.

Layouts only read annotations; they never open images (the convert stage checks that files exist),
so ingest stays fast and works before the images are even downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Annotated

from pydantic import AfterValidator


class LayoutError(Exception):
    """A file-level problem (missing annotation file, wrong header): the dataset cannot be read."""


@dataclass(frozen=True, slots=True)
class Item:
    """One image and what the source says about it. Labels are raw; ingest maps them to readable names."""

    item_id: str  # stable identity for the key; normally `source_path`
    source_path: str  # posix, relative to the dataset root
    labels: list[str] = field(default_factory=list)
    uncertain_labels: list[str] = field(default_factory=list)
    report: str | None = None
    captions: list[str] = field(default_factory=list)
    caption_source: str | None = None  # where `captions` come from; default `original`
    patient: str | None = None  # raw id: hashed by ingest, never stored
    split: str | None = None  # as the source spells it; normalised by splits.py
    modality: str | None = None  # per-item override of the manifest's modality
    origin: str | None = None  # where the item was read, e.g. "train.csv:42", for error messages


@dataclass(frozen=True, slots=True)
class ItemError:
    """A row that could not become an item; `reason` names the annotation file and line."""

    item_id: str | None
    source_path: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Filtered:
    """A row the manifest deliberately excludes (e.g. a lateral view under `views: frontal`)."""

    item_id: str
    reason: str


def unique_stripped(values: Iterable[str]) -> list[str]:
    """The non-blank values, stripped, in first-seen order and without repeats."""
    return list(dict.fromkeys(value.strip() for value in values if value.strip()))


_PLAIN = re.compile(r"(?!/)(?:[^/]+/)*[^/]+")  # relative, no empty segment, no trailing slash
_DOTS = re.compile(r"(?:^|/)\.\.?(?:/|$)")  # a `.` or `..` segment


def relative_path(*parts: str) -> str:
    """Join path parts into a normalised posix path that cannot leave the dataset root."""
    if not parts[-1].strip():
        raise ValueError("empty path")
    joined = "/".join(part for part in parts if part)
    if _PLAIN.fullmatch(joined) and not _DOTS.search(joined):
        return joined  # already normal: the common case, a million times per large annotation file
    path = PurePosixPath(*(part for part in parts if part))
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"path {str(path)!r} leaves the dataset root")
    return path.as_posix()


def _check_relative(value: str) -> str:
    if value in ("", "."):
        return value
    return relative_path(value)


# A manifest field naming a file or folder inside the dataset root ("" and "." mean the root).
RelPath = Annotated[str, AfterValidator(_check_relative)]
