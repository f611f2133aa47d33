"""`stats OUT --errors`: the first error rows and a count per kind of failure, read from
errors.parquet so nobody needs pandas to see why inputs were lost.

Reasons name the file they are about (`train.csv:12: empty label`, `cannot identify image file
'/raw/a.png'`), so equal failures rarely share an exact string. They are grouped with the
locations taken out: a leading `file:line:` or source-path prefix is dropped and any other
absolute path becomes `<path>`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from unimed_data.tables import iter_rows
from unimed_data.terminal import print_table

_LINE_PREFIX = re.compile(r"^[^\s:]+:\d+: ")  # `labels.csv:12: `
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s'\":,()\[\]]+")


def reason_kind(reason: str, source_path: str | None) -> str:
    """The reason without the locations in it, so that equal failures of different files match."""
    kind = _LINE_PREFIX.sub("", reason, count=1)
    where, sep, rest = kind.partition(": ")
    if sep and source_path and source_path.endswith(where):
        kind = rest  # ingest reasons start with the item's path relative to the dataset root
    return _ABSOLUTE_PATH.sub("<path>", kind)


@dataclass
class ErrorReport:
    total: int = 0
    first: list[dict] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)  # (stage, reason kind) -> rows


def read_errors(path: Path, first: int) -> ErrorReport:
    """The first `first` rows of an errors table and the row count per stage and reason kind."""
    report = ErrorReport()
    for row in iter_rows(path, columns=["stage", "source_path", "reason"]):
        report.total += 1
        if len(report.first) < first:
            report.first.append(row)
        report.kinds[row["stage"], reason_kind(row["reason"], row["source_path"])] += 1
    return report


def render_errors(report: ErrorReport, path: Path, console: Console, limit: int) -> None:
    """The first rows, then the `limit` commonest kinds; long paths and reasons fold, never get cut."""
    if not report.total:
        console.print(Text(f"No errors in {path}"))
        return
    rows = Table(title=f"First {len(report.first)} of {report.total} errors")
    rows.add_column("stage", no_wrap=True)
    rows.add_column("path", overflow="fold")
    rows.add_column("reason", overflow="fold")
    for row in report.first:
        rows.add_row(*(Text(row[c] or "-") for c in ("stage", "source_path", "reason")))
    print_table(console, rows)
    shown = report.kinds.most_common(limit)
    kinds = Table(title=f"Errors per reason: {len(shown)} commonest of {len(report.kinds)} kinds")
    kinds.add_column("stage", no_wrap=True)
    kinds.add_column("errors", justify="right", no_wrap=True)
    kinds.add_column("reason", overflow="fold")
    for (stage, kind), n in shown:
        kinds.add_row(Text(stage), str(n), Text(kind))
    print_table(console, kinds)
    console.print(Text(f"Every row: {path}"))
