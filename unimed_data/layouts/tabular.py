"""Streaming readers for annotation tables that tell file-level from row-level problems.

A missing file or a header without the needed columns raises `LayoutError` (nothing in the file can
be trusted); a malformed row is yielded as a reason string so the layout turns it into an
`ItemError` and the rest of the dataset still ingests.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from unimed_data.layouts.item import ItemError, LayoutError, unique_stripped

Row = dict[str, object] | str  # the row's values, or why the row is unreadable
GZIP_MAGIC = b"\x1f\x8b"
SHOWN_CELL_CHARS = 80  # a cell quoted in an error reason is cut to this, so errors.parquet rows stay readable
T = TypeVar("T")


def annotation_file(dataset_root: Path, relpath: str) -> Path:
    path = dataset_root / relpath
    if not path.is_file():
        raise LayoutError(f"{relpath}: annotation file not found under {dataset_root}")
    return path


def read_csv(dataset_root: Path, relpath: str, required: Iterable[str]) -> Iterator[tuple[str, Row]]:
    """Yield (`file:line`, row) for each non-blank data row of a CSV file, gzipped or not
    (recognised by content: releases such as MIMIC-CXR ship `.csv.gz`)."""
    path = annotation_file(dataset_root, relpath)
    with path.open("rb") as probe:
        opener = gzip.open if probe.read(2) == GZIP_MAGIC else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise LayoutError(f"{relpath}: empty file, expected a header row")
            missing = [column for column in required if column not in header]
            if missing:
                raise LayoutError(f"{relpath}: header lacks column(s) {missing}; header is {header}")
            for cells in reader:
                where = f"{relpath}:{reader.line_num}"
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    yield where, f"expected {len(header)} fields, found {len(cells)}"
                else:
                    yield where, dict(zip(header, cells, strict=True))
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{relpath}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise LayoutError(f"{relpath}: unreadable CSV ({exc})") from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise LayoutError(f"{relpath}: unreadable gzip data ({exc})") from exc


def read_jsonl(dataset_root: Path, relpath: str) -> Iterator[tuple[str, Row]]:
    """Yield (`file:line`, object) for each non-blank line of a JSON Lines file."""
    path = annotation_file(dataset_root, relpath)
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                where = f"{relpath}:{number}"
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield where, f"invalid JSON ({exc.msg})"
                    continue
                yield where, value if isinstance(value, dict) else "expected a JSON object"
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{relpath}: not UTF-8 text ({exc})") from exc


def optional_cell(row: dict[str, object], column: str | None) -> str | None:
    """A stripped cell as text, or None when the column is not configured or the cell is blank."""
    if column is None or row.get(column) is None:
        return None
    return str(row[column]).strip() or None


def parse_rows(
    rows: Iterable[tuple[str, Row]], parse: Callable[[str, dict[str, object]], T]
) -> Iterator[T | ItemError]:
    """`parse(where, row)` for each readable row; an unreadable one becomes an `ItemError` saying why."""
    for where, row in rows:
        yield ItemError(None, None, f"{where}: {row}") if isinstance(row, str) else parse(where, row)


def shown_cell(cell: str) -> str:
    """The cell quoted for an error reason (`repr`), cut to `SHOWN_CELL_CHARS` characters with "…"."""
    if len(cell) > SHOWN_CELL_CHARS:
        cell = cell[: SHOWN_CELL_CHARS - 1] + "…"
    return repr(cell)


def parse_str_list(cell: str) -> list[str]:
    """A Python list literal of strings, read with `ast.literal_eval` (literals only, never code),
    as its non-blank strings, stripped and without repeats."""
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"not a Python list literal: {shown_cell(cell)}") from None
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise ValueError(f"expected a list of strings, got {shown_cell(cell)}")
    return unique_stripped(value)
