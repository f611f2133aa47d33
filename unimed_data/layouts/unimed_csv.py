"""UniMed's caption CSVs for the label-only X-ray and radiology sets.

`chexpert_with_captions_only_frontal_view.csv`, `Chest-Xray8_with_captions.csv`,
`radimagenet_with_captions_training_set.csv` and `mimic_cxr_with_captions_and_reports_only_frontal_view.csv`
share one shape, and UniMed's scripts read them by position (`row[0]` to `row[3]` of a pandas frame
with no index column), so this layout does too and ignores the header's names:

1. a Python-literal list whose first element is the image path, e.g. `['CheXpert-v1.0-small/train/...']`
2. a literal list of labels
3. a literal list of LLM captions
4. (MIMIC-CXR only) the report text; blank or a pandas missing-value marker means no report

Cells are read with `ast.literal_eval` (literals only, never code). The file is streamed row by row
with the `csv` module, so memory stays flat over RadImageNet's million rows. `text` picks what
becomes `captions`: the caption list (`captions`), the report (`report`, falling back to the
captions when a row has none, as UniMed's trainer does), or both (`both`). Column 4 is read, and
kept as `report`, only with `text: report` or `both`; with `text: captions` it is never read, so an
extra column in a CheXpert, ChestX-ray8 or RadImageNet file cannot pass for a report.
"""

from __future__ import annotations

import ast
import csv
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict

from unimed_data.layouts.item import Item, ItemError, LayoutError, RelPath, unique_stripped
from unimed_data.layouts.tabular import annotation_file, parse_str_list, shown_cell
from unimed_data.layouts.unimed_paths import CAPTION_SOURCE, PathResolver

MIN_COLUMNS = 3
# What pandas' read_csv reads as NaN by default: UniMed's script treats these as "no report".
_MISSING = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>"}
    | {"N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)


class UnimedCsvLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["unimed_csv"]
    csv: RelPath
    image_root: RelPath = ""  # first folder tried for the image paths (see unimed_paths)
    # captions: the caption list; report: column 4 (or the captions when blank); both: report, then
    # captions. Column 4 is read as `report` only for `report` and `both`.
    text: Literal["captions", "report", "both"] = "captions"


def annotation_files(layout: UnimedCsvLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.csv]


def read_rows(dataset_root: Path, relpath: str) -> Iterator[tuple[str, list[str] | str]]:
    """Yield (`file:line`, cells) per non-blank data row after the header, or (`file:line`, reason)
    when the row's field count differs from the header's."""
    path = annotation_file(dataset_root, relpath)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise LayoutError(f"{relpath}: empty file, expected a header row")
            if len(header) < MIN_COLUMNS:
                raise LayoutError(f"{relpath}: expected at least {MIN_COLUMNS} columns, header is {header}")
            rows = 0
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                rows += 1
                where = f"{relpath}:{reader.line_num}"
                if len(cells) != len(header):
                    yield where, f"expected {len(header)} fields, found {len(cells)}"
                else:
                    yield where, cells
            if not rows:
                raise LayoutError(f"{relpath}: no data rows after the header")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{relpath}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise LayoutError(f"{relpath}: unreadable CSV ({exc})") from exc


def image_path(cell: str) -> str:
    """The first element of a literal list, which must be a non-blank string."""
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"not a Python list literal: {shown_cell(cell)}") from None
    if not isinstance(value, list) or not value or not isinstance(value[0], str) or not value[0].strip():
        raise ValueError(f"expected a list starting with the image path, got {shown_cell(cell)}")
    return value[0].strip()


def report_text(layout: UnimedCsvLayout, cells: list[str]) -> str | None:
    """Column 4, or None when `text` is `captions`, the row has no column 4, or the cell is missing."""
    if layout.text == "captions" or len(cells) <= MIN_COLUMNS:
        return None
    report = cells[MIN_COLUMNS].strip()
    return None if report in _MISSING else report


def _texts(layout: UnimedCsvLayout, captions: list[str], report: str | None) -> list[str]:
    if report is None:
        return captions
    return [report] if layout.text == "report" else unique_stripped([report, *captions])


@lru_cache(maxsize=4096)
def _labels(cell: str) -> tuple[str, ...]:
    """Label cells repeat across rows (a few hundred distinct sets in a million rows): parse each once."""
    return tuple(parse_str_list(cell))


def parse_row(
    layout: UnimedCsvLayout, resolver: PathResolver, where: str, cells: list[str]
) -> Item | ItemError:
    try:
        raw = image_path(cells[0])
        item_id, relpath = resolver.locate(raw)
    except ValueError as exc:
        return ItemError(None, None, f"{where}: column 1 (image path): {exc}")
    parsed: list[list[str]] = []
    for number, name, parse in ((2, "labels", _labels), (3, "captions", parse_str_list)):
        try:
            parsed.append(list(parse(cells[number - 1])))
        except ValueError as exc:
            return ItemError(item_id, relpath, f"{where}: column {number} ({name}): {exc}")
    labels, captions = parsed
    report = report_text(layout, cells)
    texts = _texts(layout, captions, report)
    if not texts:
        return ItemError(item_id, relpath, f"{where}: no caption")
    return Item(
        item_id=item_id,
        source_path=relpath,
        labels=labels,
        report=report,
        captions=texts,
        caption_source=CAPTION_SOURCE,
        origin=where,
    )


def iter_items(layout: UnimedCsvLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    folder = PurePosixPath(layout.csv).parent.as_posix()
    resolver = PathResolver(dataset_root, folder, layout.image_root)
    for where, cells in read_rows(dataset_root, layout.csv):
        if isinstance(cells, str):
            yield ItemError(None, None, f"{where}: {cells}")
        else:
            yield parse_row(layout, resolver, where, cells)
