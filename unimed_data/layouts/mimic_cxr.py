"""MIMIC-CXR-JPG 2.1.0: the metadata, split and label CSVs, the JPEG tree and (optionally) the reports.

Files (each may be gzipped or not: `x.csv` is read as `x.csv.gz` when only that exists, and a file
is decompressed when its content starts with the gzip magic, whatever its name):

- `mimic-cxr-2.0.0-metadata.csv`: one row per image (`dicom_id,subject_id,study_id,
  PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,...`); drives the items and
  is streamed row by row, never held;
- `mimic-cxr-2.0.0-split.csv`: `dicom_id,study_id,subject_id,split` (`train`/`validate`/`test`;
  `validate` becomes `val`). MIMIC splits by patient, so it is held per *study*:
  {study_id (int): split} (~227k entries, the split strings shared);
- `mimic-cxr-2.0.0-chexpert.csv` (or the `negbio` one): `subject_id,study_id` and the 14 CheXpert
  observations per study, with the CheXpert cells and `uncertain` policy (see `chexpert.py`). Held
  as {study_id (int): (labels, uncertain labels)}, the label tuples shared between studies (a few
  thousand distinct combinations), or a reason string for a malformed row;
- images at `<images_dir>/p<first 2 digits of subject>/p<subject>/s<study>/<dicom_id>.jpg`;
- reports at `<reports_dir>/files/p<2 digits>/p<subject>/s<study>.txt`, read per study (the last one
  is cached, since a study's images are adjacent in the metadata) when `with_reports` is on; the
  item's `report` is `reports.findings_text` of it (FINDINGS + IMPRESSION, placeholders removed).

Rows whose `ViewPosition` is not in `views` are `Filtered`. A study missing from the label CSV gives
an item without labels (its report, if any, still describes it); a study missing from the split CSV
gives an item without a split (splits.py then assigns one by patient). Patient = `subject_id`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unimed_data.layouts.chexpert import OBSERVATIONS, observation_labels
from unimed_data.layouts.item import Filtered, Item, ItemError, RelPath, relative_path
from unimed_data.layouts.tabular import Row, parse_rows, read_csv
from unimed_data.reports import findings_text

METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("study_id", "split")
LABEL_COLUMNS = ("study_id", *OBSERVATIONS)
_SPLITS = {"train": "train", "validate": "val", "validation": "val", "val": "val", "test": "test"}
_DIGITS = re.compile(r"\d+")
_DICOM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")


class MimicCxrLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["mimic_cxr"]
    metadata_csv: RelPath = "mimic-cxr-2.0.0-metadata.csv"
    split_csv: RelPath | None = "mimic-cxr-2.0.0-split.csv"  # None: no source split
    labels_csv: RelPath | None = "mimic-cxr-2.0.0-chexpert.csv"  # or ...-negbio.csv; None: no labels
    images_dir: RelPath = "files"
    reports_dir: RelPath = "mimic-cxr-reports"  # holds files/p10/p10000032/s50414267.txt
    # ViewPosition values kept (case-insensitive); or "frontal" (PA, AP), "lateral" (LATERAL, LL), "all"
    views: list[str] = Field(default_factory=lambda: ["PA", "AP"], min_length=1)
    uncertain: Literal["positive", "negative", "ignore"] = "positive"
    with_reports: bool = True
    require_report: bool = False  # a study without a usable report is an ItemError instead of report None

    @field_validator("views", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        if isinstance(value, str):  # shorthands: frontal = PA + AP, lateral = LATERAL + LL, all = no filter
            shorthand = {"frontal": ["PA", "AP"], "lateral": ["LATERAL", "LL"], "all": ["*"]}
            if value.strip().lower() not in shorthand:
                raise ValueError("expected a list of ViewPosition values, or frontal, lateral or all")
            return shorthand[value.strip().lower()]
        if isinstance(value, list):
            return [view.strip().upper() if isinstance(view, str) else view for view in value]
        return value


def resolve(dataset_root: Path, relpath: str) -> str:
    """`relpath`, or its gzipped (`.gz` added) or plain (`.gz` dropped) twin when only that exists."""
    if (dataset_root / relpath).is_file():
        return relpath
    twin = relpath.removesuffix(".gz") if relpath.endswith(".gz") else relpath + ".gz"
    return twin if (dataset_root / twin).is_file() else relpath


def _configured(layout: MimicCxrLayout) -> list[str]:
    return [path for path in (layout.metadata_csv, layout.split_csv, layout.labels_csv) if path]


def annotation_files(layout: MimicCxrLayout, dataset_root: Path) -> list[Path]:
    # The reports are per-study text files (227k): their changes are not tracked here.
    return [dataset_root / resolve(dataset_root, path) for path in _configured(layout)]


def read_table(dataset_root: Path, relpath: str, required: Iterable[str]) -> Iterator[tuple[str, Row]]:
    """`tabular.read_csv` on `x.csv` or, where that is absent, `x.csv.gz`."""
    return read_csv(dataset_root, resolve(dataset_root, relpath), required)


def _study_id(row: dict, column: str = "study_id") -> int | None:
    cell = str(row[column]).strip()
    return int(cell) if _DIGITS.fullmatch(cell) else None


def _load_splits(layout: MimicCxrLayout, dataset_root: Path) -> dict[int, str]:
    """{study_id: canonical split, or a reason string starting with the file:line when unusable}."""
    splits: dict[int, str] = {}
    if layout.split_csv is None:
        return splits
    for where, row in read_table(dataset_root, layout.split_csv, SPLIT_COLUMNS):
        if isinstance(row, str):
            continue  # a short row cannot be tied to a study; its images simply get no source split
        study = _study_id(row)
        raw = str(row["split"]).strip()
        split = _SPLITS.get(raw.lower())
        if study is None:
            continue
        if split is None:
            splits[study] = f"{where}: column 'split': bad value {raw!r} (expected train, validate or test)"
        elif splits.get(study, split) != split:
            splits[study] = f"{where}: study {study} is in split {splits[study]!r} and {split!r}"
        else:
            splits[study] = split
    return splits


_Labels = tuple[tuple[str, ...], tuple[str, ...]]


def _load_labels(layout: MimicCxrLayout, dataset_root: Path) -> dict[int, _Labels | str]:
    """{study_id: (labels, uncertain labels)} or a reason string (with file:line) for a bad row."""
    labels: dict[int, _Labels | str] = {}
    if layout.labels_csv is None:
        return labels
    shared: dict[_Labels, _Labels] = {}
    for where, row in read_table(dataset_root, layout.labels_csv, LABEL_COLUMNS):
        if isinstance(row, str):
            continue  # cannot be tied to a study
        study = _study_id(row)
        if study is None:
            continue
        positive, uncertain, problems = observation_labels(row, layout.uncertain)
        if problems:
            labels[study] = f"{where}: " + "; ".join(problems)
        else:
            key = (tuple(positive), tuple(uncertain))
            labels[study] = shared.setdefault(key, key)
    return labels


class _Reports:
    """Reads `<reports_dir>/files/pXX/p<subject>/s<study>.txt`, caching the last study's result."""

    def __init__(self, layout: MimicCxrLayout, dataset_root: Path):
        self.layout, self.root = layout, dataset_root
        self.key: tuple[str, str] | None = None
        self.value: tuple[str | None, str | None] = (None, None)

    def get(self, subject: str, study: str) -> tuple[str | None, str | None]:
        """(findings text, None) or (None, why there is none)."""
        if self.key != (subject, study):
            self.key, self.value = (subject, study), self._read(subject, study)
        return self.value

    def _read(self, subject: str, study: str) -> tuple[str | None, str | None]:
        relpath = relative_path(
            self.layout.reports_dir, "files", f"p{subject[:2]}", f"p{subject}", f"s{study}.txt"
        )
        try:
            text = (self.root / relpath).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, f"report {relpath} not found"
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"report {relpath} unreadable ({exc})"
        findings = findings_text(text)
        return (findings, None) if findings else (None, f"report {relpath} has no FINDINGS or IMPRESSION")


def iter_items(layout: MimicCxrLayout, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    splits = _load_splits(layout, dataset_root)
    labels = _load_labels(layout, dataset_root)
    reports = _Reports(layout, dataset_root)
    rows = read_table(dataset_root, layout.metadata_csv, METADATA_COLUMNS)
    yield from parse_rows(rows, lambda where, row: _parse_row(layout, where, row, splits, labels, reports))


def _parse_row(
    layout: MimicCxrLayout,
    where: str,
    row: dict,
    splits: dict[int, str],
    labels: dict[int, _Labels | str],
    reports: _Reports,
) -> Item | ItemError | Filtered:
    dicom, subject, study = (str(row[column]).strip() for column in ("dicom_id", "subject_id", "study_id"))
    problems = [
        f"column {column!r}: bad value {value!r} ({expected})"
        for column, value, ok, expected in (
            ("dicom_id", dicom, _DICOM_ID.fullmatch(dicom), "expected a DICOM id"),
            ("subject_id", subject, _DIGITS.fullmatch(subject) and len(subject) >= 2, "expected digits"),
            ("study_id", study, _DIGITS.fullmatch(study), "expected digits"),
        )
        if not ok
    ]
    if problems:
        return ItemError(None, None, f"{where}: " + "; ".join(problems))
    relpath = relative_path(layout.images_dir, f"p{subject[:2]}", f"p{subject}", f"s{study}", f"{dicom}.jpg")
    view = str(row["ViewPosition"]).strip().upper()
    if view not in layout.views and "*" not in layout.views:
        return Filtered(relpath, f"view {view or 'unknown'!r} not in {layout.views}")
    split = splits.get(int(study))
    if split is not None and split not in ("train", "val", "test"):
        return ItemError(relpath, relpath, f"{where}: {split}")
    found = labels.get(int(study), ((), ()))
    if isinstance(found, str):
        return ItemError(relpath, relpath, f"{where}: labels of study {study}: {found}")
    report = None
    if layout.with_reports:
        report, missing = reports.get(subject, study)
        if report is None and layout.require_report:
            return ItemError(relpath, relpath, f"{where}: {missing}")
    return Item(
        item_id=relpath,
        source_path=relpath,
        labels=list(found[0]),
        uncertain_labels=list(found[1]),
        report=report,
        patient=subject,
        split=split,
        origin=where,
    )
