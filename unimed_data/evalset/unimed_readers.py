"""Readers for the layouts of UniMed-CLIP's evaluation archive, one per kind, each giving a `Collected`.

Each reads what UniMed's own loader (`clipeval/datasets.py`) reads, the way it reads it: CSV
columns by position where the loader indexes by position, only the rows it keeps (`split == test`,
`set == Test`), and the raw label through the loader's mapping to a class index, whose class is the
key at that index. Every listed input ends as a candidate or an error row (a malformed row, a label
outside the mapping); a listed image that is missing fails later, when it is converted. An
annotation file that cannot be read at all fails the set (`EvalSetError`, naming the file).

One departure, recorded as the set's `note` in info.json: the first line of a CSV that has no
header row (BACH's) is an input here, where UniMed's loader takes it for the header.

A row listed twice is kept twice, since UniMed scores it twice (ODIR200x3 lists 19 images twice);
the second copy's key is made from the path and its occurrence, so keys stay unique.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from unimed_data.evalset.samples import Candidate, Collected, EvalSetError
from unimed_data.layouts.item import relative_path
from unimed_data.layouts.tabular import parse_str_list
from unimed_data.schema import error_row, make_key


@dataclass(frozen=True)
class ColumnsCsv:
    """A CSV in the set folder read by column position; the image path is relative to the set folder."""

    file: str
    image: int
    label: int
    keep: tuple[str, str] | None = None  # (column, value): the rows that form the test set
    image_under_label: bool = False  # BACH: the image lies at <label>/<image>


@dataclass(frozen=True)
class OneHotCsv:
    """chexpert-5x200 (from --annotations): `imgpath` and one 0/1 column per class; the class is the
    first column holding the row's highest value (UniMed's argmax)."""

    file: str
    image: str = "imgpath"


@dataclass(frozen=True)
class FlairCsv:
    """A FLAIR CSV (from --annotations), `,image,atributes,categories`: the first category is the
    label; the image path starts with the set folder's name."""

    file: str


@dataclass(frozen=True)
class ClassFolders:
    """`<set folder>/<raw label>/<image>`: one folder per raw label of the set's mapping."""


@dataclass(frozen=True)
class LabelInName:
    """`<set folder>/<id>_<label>.<ext>`: the class index in the file name (PCAM)."""


Layout = ColumnsCsv | OneHotCsv | FlairCsv | ClassFolders | LabelInName
FROM_ANNOTATIONS = (OneHotCsv, FlairCsv)  # layouts whose CSV is not in the archive


class SetSpec(Protocol):
    name: str
    modality: str
    classes: tuple[str, ...]
    labels: Mapping[str, int] | None
    layout: Layout


@dataclass(frozen=True)
class _Entry:
    """One listed input: where it was listed, its identity in the set, its image and raw label."""

    where: str
    ident: str
    path: Path | None
    raw: str | None = None
    problem: str | None = None


def read_set(spec: SetSpec, folder: Path, csv_file: Path | None) -> Collected:
    """The candidates of one set from its folder (and its annotation CSV where the layout has one)."""
    layout, note = spec.layout, None
    if isinstance(layout, ColumnsCsv):
        entries, note = _columns_csv(layout, spec, folder, csv_file)
    elif isinstance(layout, OneHotCsv):
        entries = _one_hot_csv(layout, spec.classes, folder, csv_file)
    elif isinstance(layout, FlairCsv):
        entries = _flair_csv(folder, csv_file)
    elif isinstance(layout, ClassFolders):
        entries = _class_folders(list(spec.labels or ()), folder)
    else:
        entries = _label_in_name(folder)
    source = f"UniMed evaluation archive {folder}" + (f" with {csv_file}" if csv_file else "")
    collected = _collected(spec, entries, source, folder)
    if note is not None:
        collected.info["note"] = note
    return collected


def _collected(spec: SetSpec, entries: Iterable[_Entry], source: str, folder: Path) -> Collected:
    candidates, errors, seen = [], [], Counter()
    for entry in entries:
        seen[entry.ident] += 1
        ident = entry.ident if seen[entry.ident] == 1 else f"{entry.ident}#{seen[entry.ident]}"
        key, path = make_key(spec.name, ident), str(entry.path) if entry.path else None
        try:
            if entry.problem:
                raise ValueError(entry.problem)
            label = class_of(spec, entry.raw or "")
        except ValueError as exc:
            errors.append(error_row(spec.name, "ingest", key, path, f"{entry.where}: {exc}"))
            continue
        candidates.append(Candidate(key, "test", spec.name, spec.modality, path, labels=(label,)))
    return Collected(
        spec.name, spec.modality, source, candidates, errors, read_from=[folder], classes=list(spec.classes)
    )


def class_of(spec: SetSpec, raw: str) -> str:
    """The class key a raw label stands for: through the set's mapping, or as the index itself."""
    if spec.labels is not None:
        if raw not in spec.labels:
            raise ValueError(f"label {raw!r} is not one of: {', '.join(spec.labels)}")
        return spec.classes[spec.labels[raw]]
    try:
        number = float(raw)
    except ValueError:
        number = -1.0
    if not number.is_integer() or not 0 <= number < len(spec.classes):
        raise ValueError(f"label {raw!r} is not a class index 0-{len(spec.classes) - 1}")
    return spec.classes[int(number)]


def _is_label(spec: SetSpec, cell: str) -> bool:
    try:
        class_of(spec, cell)
    except ValueError:
        return False
    return True


def _image(where: str, folder: Path, relpath: str, raw: str | None) -> _Entry:
    try:
        relpath = relative_path(relpath.strip())
    except ValueError as exc:
        return _Entry(where, where, None, problem=f"image path: {exc}")
    return _Entry(where, relpath, folder / relpath, raw)


def read_table(path: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A CSV's header and its non-blank rows as (`file:line`, cells), cells stripped; a file that
    cannot be read or has no header fails with EvalSetError naming it."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows, start = [], reader.line_num + 1
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    rows.append((f"{path.name}:{start}", [cell.strip() for cell in cells]))
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise EvalSetError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise EvalSetError(f"{path}: unreadable CSV ({exc})") from None
    except OSError as exc:
        raise EvalSetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if header is None:
        raise EvalSetError(f"{path}: empty file, expected a header row")
    return [cell.strip() for cell in header], rows


def _column(header: list[str], name: str, path: Path) -> int:
    if name not in header:
        raise EvalSetError(f"{path}: header lacks column {name!r}; header is {header}")
    return header.index(name)


def _columns_csv(
    layout: ColumnsCsv, spec: SetSpec, folder: Path, path: Path
) -> tuple[Iterator[_Entry], str | None]:
    """The entries, and a note for info.json when the first line is data. A first line whose label
    cell is already a label is not a header (BACH's ground truth ships without one); UniMed's
    `pd.read_csv` takes it for the header all the same, and so leaves that image out."""
    header, rows = read_table(path)
    if len(header) <= max(layout.image, layout.label):
        raise EvalSetError(
            f"{path}: expected at least {max(layout.image, layout.label) + 1} columns, header is {header}"
        )
    keep = _column(header, layout.keep[0], path) if layout.keep else None
    note = None
    if keep is None and _is_label(spec, header[layout.label]):
        rows = [(f"{path.name}:1", header), *rows]
        note = (
            f"{path.name} has no header row: its first line ({header[layout.image]}) is read as an "
            "image here, while UniMed's loader (pandas.read_csv) takes it for the header, so "
            "UniMed scores one image fewer"
        )
    return _column_entries(layout, folder, header, keep, rows), note


def _column_entries(
    layout: ColumnsCsv, folder: Path, header: list[str], keep: int | None, rows: list[tuple[str, list[str]]]
) -> Iterator[_Entry]:
    for where, cells in rows:
        if len(cells) != len(header):
            yield _Entry(where, where, None, problem=f"expected {len(header)} fields, found {len(cells)}")
        elif keep is None or cells[keep] == layout.keep[1]:
            raw = cells[layout.label]
            image = f"{raw}/{cells[layout.image]}" if layout.image_under_label else cells[layout.image]
            yield _image(where, folder, image, raw)


def _one_hot_csv(layout: OneHotCsv, classes: tuple[str, ...], folder: Path, path: Path) -> Iterator[_Entry]:
    header, rows = read_table(path)
    image = _column(header, layout.image, path)
    columns = [_column(header, name, path) for name in classes]
    for where, cells in rows:
        if len(cells) != len(header):
            yield _Entry(where, where, None, problem=f"expected {len(header)} fields, found {len(cells)}")
            continue
        entry = _image(where, folder, cells[image], None)
        try:
            values = [float(cells[column]) for column in columns]
        except ValueError:
            yield _Entry(where, entry.ident, entry.path, problem=f"a class column is not a number: {cells}")
            continue
        if max(values) <= 0:
            yield _Entry(
                where, entry.ident, entry.path, problem=f"no positive class among {', '.join(classes)}"
            )
        else:
            yield _Entry(where, entry.ident, entry.path, classes[values.index(max(values))], entry.problem)


def _flair_csv(folder: Path, path: Path) -> Iterator[_Entry]:
    """Image paths start with the set folder's name (`REFUGE-Training400/g0001.jpg`), whatever the
    case of the folder found; any other path is taken relative to the folder holding it."""
    header, rows = read_table(path)
    image, categories = _column(header, "image", path), _column(header, "categories", path)
    for where, cells in rows:
        if len(cells) != len(header):
            yield _Entry(where, where, None, problem=f"expected {len(header)} fields, found {len(cells)}")
            continue
        parts = PurePosixPath(cells[image]).parts
        inside = len(parts) > 1 and parts[0].casefold() == folder.name.casefold()
        entry = _image(
            where, folder if inside else folder.parent, "/".join(parts[1:] if inside else parts), None
        )
        try:
            labels = parse_str_list(cells[categories])
        except ValueError as exc:
            yield _Entry(where, entry.ident, entry.path, problem=f"column 'categories': {exc}")
            continue
        raw = labels[0] if labels else None
        yield _Entry(
            where, entry.ident, entry.path, raw, entry.problem or (None if labels else "no category")
        )


def _files(folder: Path) -> list[Path]:
    """The files of one folder, sorted; hidden ones (`.DS_Store`) are not inputs."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _class_folders(raw_labels: list[str], folder: Path) -> Iterator[_Entry]:
    for raw in raw_labels:
        if not (folder / raw).is_dir():
            raise EvalSetError(f"{folder}: class folder {raw}/ not found (expected {', '.join(raw_labels)})")
    for raw in raw_labels:
        for path in _files(folder / raw):
            yield _Entry(f"{raw}/{path.name}", f"{raw}/{path.name}", path, raw)


def _label_in_name(folder: Path) -> Iterator[_Entry]:
    for path in _files(folder):
        fields = path.name.split("_")
        raw = fields[1].partition(".")[0] if len(fields) > 1 else None
        problem = None if raw else "no _<label> in the file name (expected <id>_<label>.<ext>)"
        yield _Entry(path.name, path.name, path, raw, problem)
