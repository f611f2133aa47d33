"""The ingest stage: a manifest's annotations -> `records.parquet` + `errors-ingest.parquet`.

Every row the layout yields ends up in exactly one place: a record, an error row (bad row, duplicate
item without captions, unusable split or modality), the `filtered` count (rows the manifest excludes
on purpose, such as lateral views), or the `merged` count (a row naming an image already read, whose
captions join that image's record), so `rows = records + errors + filtered + merged` always holds.
Rows stream through in bounded batches; only the keys already written, and the texts of repeated
rows, are held.

The stage is skipped when `ingest.json` holds the fingerprint of the same inputs: the manifest's
canonical JSON, a hash of the salt (never the salt), the seed, the dataset root and the size and
mtime of the annotation files (the shared `stamps` format, which `build_report.py` reads back for the stats).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unimed_data import stamps
from unimed_data.dataset_folders import dataset_root
from unimed_data.layouts import Filtered, ItemError, LayoutError, annotation_files, iter_items
from unimed_data.layouts.item import Item
from unimed_data.manifest import Manifest
from unimed_data.schema import ERROR_SCHEMA, MODALITIES, RECORD_SCHEMA, error_row, hash_patient, make_key
from unimed_data.splits import assign_split
from unimed_data.stages.base import DatasetLeftOut, Stage, StageSummary
from unimed_data.tables import iter_rows, table_writer
from unimed_data.workspace import DatasetPaths

if TYPE_CHECKING:
    from unimed_data.pipeline import Dataset
    from unimed_data.runner import StageContext

NAME = "ingest"
FORMAT_VERSION = 1  # bump when the records this stage writes change for the same inputs


@dataclass(frozen=True)
class IngestSummary:
    dataset: str
    records: int
    errors: int
    filtered: int  # rows excluded by the manifest (e.g. the view filter); neither records nor errors
    merged: int = 0  # rows naming an image already read: their captions joined that image's record
    skipped: bool = False  # True when the outputs were already up to date


def output_paths(manifest: Manifest, work_dir: Path) -> DatasetPaths:
    """The dataset's files under `work_dir`, named as `Workspace` names them for a build."""
    return DatasetPaths(work_dir / manifest.slug)


def fingerprint(manifest: Manifest, root: Path, *, salt: str, seed: int) -> str:
    options = {
        "version": FORMAT_VERSION,
        "manifest": manifest.model_dump(mode="json"),
        "salt_sha256": hashlib.sha256(salt.encode()).hexdigest(),
        "seed": seed,
        "root": str(root),
    }
    # A missing file is left out: the digest then differs, and reading the dataset reports it.
    return stamps.fingerprint([path for path in annotation_files(manifest, root) if path.exists()], options)


def _readable(manifest: Manifest, raw_labels: list[str]) -> list[str]:
    return list(dict.fromkeys(manifest.readable(label) for label in raw_labels))


def _record(manifest: Manifest, root: Path, item: Item, key: str, *, salt: str, seed: int) -> dict:
    """The record for an item; raises ValueError when its split or modality is unusable."""
    modality = item.modality or _folder_modality(manifest, item.source_path) or manifest.modality
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}")
    split = assign_split(
        manifest.split, item_id=item.item_id, patient=item.patient, source_split=item.split, seed=seed
    )
    return {
        "key": key,
        "dataset": manifest.name,
        "modality": modality,
        "source_path": os.fspath(root / item.source_path),
        "image_path": None,
        "labels": _readable(manifest, item.labels),
        "uncertain_labels": _readable(manifest, item.uncertain_labels),
        "report": item.report,
        "captions": item.captions,
        "caption_source": (item.caption_source or "original") if item.captions else None,
        "patient_id": hash_patient(item.patient, salt) if item.patient is not None else None,
        "split": split,
        "license": manifest.license,
        "width": None,
        "height": None,
        "sha256": None,
    }


def _folder_modality(manifest: Manifest, source_path: str) -> str | None:
    if manifest.modality_from_folder:
        for folder in source_path.split("/")[:-1]:
            if folder in manifest.modality_from_folder:
                return manifest.modality_from_folder[folder]
    return None


def _error(manifest: Manifest, root: Path, item_id: str | None, source: str | None, reason: str) -> dict:
    return error_row(
        manifest.name,
        NAME,
        make_key(manifest.name, item_id) if item_id is not None else None,
        os.fspath(root / source) if source is not None else None,
        reason,
    )


def _joined(earlier: Item | None, entry: Item) -> Item:
    """The captions and labels of an image's repeated rows, in file order."""
    if earlier is None:
        return entry
    return dataclasses.replace(
        earlier, captions=[*earlier.captions, *entry.captions], labels=[*earlier.labels, *entry.labels]
    )


def _merge_into(records_path: Path, merges: dict[str, Item], manifest: Manifest) -> None:
    """Rewrite the records with each repeated image's further captions and labels added (without
    repeats), so an image listed with several captions (Quilt-1M's lookup lists most images more
    than once) is one sample holding them all. Held in memory: only the repeated rows' texts."""
    with table_writer(records_path, RECORD_SCHEMA) as out:
        for row in iter_rows(records_path):
            extra = merges.get(row["key"])
            if extra is not None:
                row["captions"] = list(dict.fromkeys([*row["captions"], *extra.captions]))
                row["labels"] = list(dict.fromkeys([*row["labels"], *_readable(manifest, extra.labels)]))
            out.write(row)


def _items(manifest: Manifest, root: Path):
    """The layout's items; a file-level failure is a `LayoutError` that names the dataset and folder,
    since a layout's messages name its files relative to the dataset root."""
    try:
        yield from iter_items(manifest, root)
    except LayoutError as exc:
        raise LayoutError(f"dataset {manifest.name} in {root}: {exc}") from None
    except OSError as exc:  # an annotation file that exists but cannot be read (permissions, I/O)
        raise LayoutError(f"dataset {manifest.name}: {exc.filename or root}: {exc.strerror or exc}") from None


def ingest_dataset(
    manifest: Manifest, raw_root: Path, work_dir: Path, *, salt: str, seed: int
) -> IngestSummary:
    """Write the dataset's records and ingest errors, unless they are already up to date."""
    root = dataset_root(manifest, raw_root)
    paths = output_paths(manifest, work_dir)
    records_path, errors_path, state_path = paths.records, paths.errors(NAME), paths.stamp(NAME)
    stamp = stamps.Stamp(state_path, fingerprint(manifest, root, salt=salt, seed=seed))
    stored = stamp.stored([records_path, errors_path])
    if stored is not None:
        return IngestSummary(**{**stored, "skipped": True})
    state_path.unlink(missing_ok=True)

    seen: set[str] = set()
    filtered = merged = 0
    merges: dict[str, Item] = {}  # key -> the captions and labels of its repeated rows
    with (
        table_writer(records_path, RECORD_SCHEMA) as records,
        table_writer(errors_path, ERROR_SCHEMA) as errors,
    ):
        for entry in _items(manifest, root):
            if isinstance(entry, Filtered):
                filtered += 1
            elif isinstance(entry, ItemError):
                errors.write(_error(manifest, root, entry.item_id, entry.source_path, entry.reason))
            elif (key := make_key(manifest.name, entry.item_id)) in seen and entry.captions:
                merges[key] = _joined(merges.get(key), entry)
                merged += 1
            elif key in seen:
                reason = (
                    f"{entry.origin or entry.item_id}: duplicate item {entry.item_id!r}, already ingested"
                )
                errors.write(_error(manifest, root, entry.item_id, entry.source_path, reason))
            else:
                try:
                    record = _record(manifest, root, entry, key, salt=salt, seed=seed)
                except ValueError as exc:
                    reason = f"{entry.origin or entry.item_id}: {exc}"
                    errors.write(_error(manifest, root, entry.item_id, entry.source_path, reason))
                else:
                    records.write(record)
                    seen.add(key)

    if merges:
        _merge_into(records_path, merges, manifest)
    summary = IngestSummary(manifest.name, records.count, errors.count, filtered, merged)
    stamp.write(dataclasses.asdict(summary))
    return summary


def run_ingest(ctx: StageContext, dataset: Dataset) -> StageSummary:
    """Ingest one dataset of the build. With `missing_parts: skip`, annotations that cannot be read
    (a broken file, lists of different lengths) leave that dataset out, said once, not the build."""
    try:
        done = ingest_dataset(
            dataset.manifest, dataset.root, ctx.ws.datasets, salt=ctx.salt, seed=ctx.config.seed
        )
    except LayoutError as exc:
        if ctx.config.missing_parts == "fail":
            raise
        print(f"{dataset.manifest.name}: left out: {exc}", file=sys.stderr)
        raise DatasetLeftOut(str(exc)) from None
    rows = done.records + done.errors + done.filtered + done.merged
    return StageSummary(
        NAME, dataset.slug, rows, done.records, done.errors, done.filtered + done.merged, done.skipped
    )


STAGE = Stage(
    name=NAME,
    help="Read manifests into work/<dataset>/records.parquet.",
    reads=(),
    writes=("records",),
    options=("seed",),
    run=run_ingest,
)
