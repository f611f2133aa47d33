"""`evalset --recipe unimed`: every UniMed-CLIP evaluation set found in its extracted evaluation
archive, each written by `write_evalset` into `EVALS/<set name>/`.

The archive's nesting is not fixed (it may sit inside a folder of its own, and UniMed's catalog puts
PCAM under an extra folder), so a set's folder is looked up in EXTRACTED and then in each of its
top-level folders, names compared without regard to case (`dataset_folders.find_folder`). Four annotation
CSVs are not in the archive (chexpert-5x200, REFUGE, FIVES, ODIR200x3): they come from
UniMed-CLIP's `local_data/`, given as `--annotations DIR` and never bundled here (CC BY-NC). A set
whose folder or CSV is absent is skipped with the reason; one whose files cannot be read fails
alone; the others are written. A set folder an earlier run wrote is never removed (a run may ask
for some sets only), so a set skipped or failed this time says that its earlier folder remains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unimed_data.dataset_folders import find_folder
from unimed_data.evalset.assemble import EvalSetSummary, write_evalset
from unimed_data.evalset.samples import EvalSetError
from unimed_data.evalset.unimed_readers import FROM_ANNOTATIONS, ColumnsCsv, read_set
from unimed_data.evalset.unimed_sets import UniMedSet, protocol_info, select
from unimed_data.imaging import ConvertOptions
from unimed_data.outputs import OutputError, claim_output, settle_output

KIND = "evalsets"  # the marker kind of EVALS, which holds one evaluation set folder per set
ANNOTATIONS_HOME = "https://github.com/mbzuai-oryx/UniMed-CLIP/tree/main/local_data"


class SetMissing(Exception):
    """A set's folder or annotation file is absent: the set is skipped; the message says where it was looked for."""


@dataclass(frozen=True)
class SetOutcome:
    spec: UniMedSet
    status: str  # written | skipped | failed
    reason: str = ""
    summary: EvalSetSummary | None = None


def find_set_folder(root: Path, name: str) -> Path | None:
    """`root/<name>`, else `root/<top-level folder>/<name>` (the first, in sorted order, that holds
    it), each name matched as `find_folder` matches it: as written, else the one case-insensitive match."""
    for base in (root, *_subfolders(root)):
        if (folder := find_folder(base, name)).is_dir():
            return folder
    return None


def _subfolders(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:  # scandir: no stat per entry in folders of many images
        return sorted(Path(entry.path) for entry in entries if entry.is_dir())


def locate(spec: UniMedSet, root: Path, annotations: Path | None) -> tuple[Path, Path | None]:
    """The set's folder in the archive and its annotation CSV (None for folder layouts)."""
    csv_file = None
    if isinstance(spec.layout, FROM_ANNOTATIONS):
        name = spec.layout.file
        if annotations is None:
            raise SetMissing(
                f"needs {name} from UniMed-CLIP's local_data/ ({ANNOTATIONS_HOME}): pass --annotations DIR"
            )
        places = (annotations / name, annotations / "local_data" / name)
        csv_file = next((p for p in places if p.is_file()), None)
        if csv_file is None:
            raise SetMissing(f"{name} not found in {annotations} (nor in its local_data/)")
    folder = find_set_folder(root, spec.folder)
    if folder is None:
        raise SetMissing(f"folder {spec.folder}/ not found in {root} nor in its top-level folders")
    if isinstance(spec.layout, ColumnsCsv):
        csv_file = folder / spec.layout.file
        if not csv_file.is_file():
            raise SetMissing(f"{spec.layout.file} not found in {folder}")
    return folder, csv_file


def write_unimed_sets(
    root: Path,
    out: Path,
    *,
    annotations: Path | None = None,
    names: list[str] | None = None,
    shard_size: int = 1000,
    options: ConvertOptions | None = None,
    workers: int = 1,
    force: bool = False,
    progress: Callable[[SetOutcome], None] | None = None,
) -> list[SetOutcome]:
    """Write every set asked for (all 21 by default) that the archive holds into `out/<set name>/`;
    `out` is claimed as ours (`evalsets`, listing the set folders) before anything is written."""
    root, out = root.resolve(), out.resolve()
    if not root.is_dir():
        raise EvalSetError(f"--root {root}: not a folder (expected the extracted evaluation archive)")
    if annotations is not None and not annotations.is_dir():
        raise EvalSetError(f"--annotations {annotations}: not a folder")
    if out == root or root in out.parents:
        raise EvalSetError(f"--out {out}: lies inside the archive {root}; choose a folder outside it")
    try:
        specs = select(names)
        claim_output(out, KIND, [spec.name for spec in specs], force=force)
    except (ValueError, OutputError) as exc:
        raise EvalSetError(str(exc)) from None
    outcomes = []
    for spec in specs:
        outcome = _write_one(spec, root, out, annotations, shard_size, options, workers)
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    settle_output(out)
    return outcomes


def _write_one(spec, root, out, annotations, shard_size, options, workers) -> SetOutcome:
    """The set written, skipped or failed; the reason of one not written says when `out/<set>`
    still holds an earlier run's files (claimed as ours, so an earlier run of this recipe wrote them)."""
    earlier = out / spec.name
    kept = earlier.exists()
    outcome = _attempt(spec, root, out, annotations, shard_size, options, workers)
    if outcome.status == "skipped" and kept:
        reason = f"{outcome.reason}; the set written by an earlier run is kept in {earlier}"
        return SetOutcome(spec, "skipped", reason)
    if outcome.status == "failed" and kept:
        return SetOutcome(spec, "failed", f"{outcome.reason}; {earlier} still holds an earlier run's files")
    return outcome


def _attempt(spec, root, out, annotations, shard_size, options, workers) -> SetOutcome:
    try:
        folder, csv_file = locate(spec, root, annotations)
    except SetMissing as exc:
        return SetOutcome(spec, "skipped", str(exc))
    try:
        collected = read_set(spec, folder, csv_file)
        collected.readable = dict(zip(spec.classes, spec.readable, strict=True))
        collected.info |= protocol_info(spec)
        summary = write_evalset(
            collected, out / spec.name, shard_size=shard_size, options=options, workers=workers
        )
    except EvalSetError as exc:
        return SetOutcome(spec, "failed", str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return SetOutcome(spec, "failed", f"{where}{exc.strerror or exc}")
    return SetOutcome(spec, "written", summary=summary)
