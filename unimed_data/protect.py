"""The evaluation images a build keeps out of its corpus (`--protect`, config `dedupe.protect`).

A spec names one of:
- an evalset folder in the CLIP_benchmark layout (`SET/test/*.tar`, ours or anyone's), or a folder
  of such sets (what `evalset --recipe unimed` writes); their `test` and `val` images are protected;
- `NAME_OR_MANIFEST=RAW_ROOT`: a manifest read by the ingest stage from RAW_ROOT; its `test` and
  `val` records are protected, by file path even where the image cannot be read;
- `all-present`: every bundled evaluation manifest (`role: eval`) whose folder is under the build's
  raw root;
- `unimed-benchmark[=EXTRACTED]`: UniMed's 21 zero-shot sets read from its evaluation archive as
  `evalset --recipe unimed` reads it (by default under the build's raw root; the four annotation
  CSVs from EXTRACTED or EXTRACTED/local_data); sets not found are said once and left out.

Each protected image is fingerprinted (protect_fingerprint.py) as the build fingerprints its own.
"""

from __future__ import annotations

import secrets
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from unimed_data.dataset_folders import dataset_root
from unimed_data.imaging import ConvertOptions
from unimed_data.layouts import LayoutError, annotation_files
from unimed_data.manifest import ManifestError, bundled_manifest_paths, find_manifest, load_manifest
from unimed_data.stages.ingest import ingest_dataset
from unimed_data.tables import iter_rows
from unimed_data.wds_tar import sample_members
from unimed_data.workspace import Workspace

PROTECTED_SPLITS = ("test", "val")
PATH_TAIL = 3  # path parts compared for a path match
UNIMED = "unimed-benchmark"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CROPS = (0.05, 0.025)  # total crop per side pair; each at 9 placements (corners, edges, centre)


class ProtectError(ValueError):
    """A protect spec that names nothing usable; the message is the one error line."""


@dataclass(frozen=True)
class ProtectTask:
    """One protected image to fingerprint: a file, or a member (offset, size) of a tar."""

    eval_set: str
    eval_key: str
    path: str
    member: tuple[int, int] | None
    options: ConvertOptions


@dataclass(frozen=True)
class Protected:
    eval_set: str
    eval_key: str
    path: str  # the file (or tar) it was read from
    path_tail: str | None  # the file's last folders and name (None for a tar member), see `path_tail`
    pixels: str | None  # None: the image could not be read (still protected by its path)
    variants: tuple[tuple[int, bytes], ...]  # (phash, thumb) of the image and its crops


@dataclass(frozen=True)
class Source:
    """One spec, read: its tasks and the files whose state says whether it changed."""

    name: str
    tasks: list[ProtectTask]
    inputs: list[Path]


def check_spec(spec: str, raw_root: Path | None = None) -> None:
    """Refuse a spec that names nothing, before any stage runs."""
    if spec in ("all-present", UNIMED):
        if raw_root is None:
            raise ProtectError(
                f"--protect {spec} needs the build's raw root (`root:` in the config, or --root)"
            )
        return
    if spec.startswith(f"{UNIMED}="):
        if not Path(spec.partition("=")[2]).is_dir():
            raise ProtectError(
                f"--protect {spec}: not a folder (expected UniMed's extracted evaluation archive)"
            )
        return
    if "=" in spec:
        name, _, root = spec.partition("=")
        try:
            find_manifest(name)
        except ManifestError as exc:
            raise ProtectError(f"--protect {spec}: {exc}") from None
        if not Path(root).is_dir():
            raise ProtectError(f"--protect {spec}: {root} is not a folder")
        return
    folder = Path(spec)
    if not (_is_evalset(folder) or (folder.is_dir() and any(_is_evalset(c) for c in folder.iterdir()))):
        raise ProtectError(
            f"--protect {spec}: not an evalset folder (no test/*.tar in it or in its sub-folders), "
            "not NAME_OR_MANIFEST=RAW_ROOT and not all-present"
        )


def read_specs(
    specs: list[str], raw_root: Path | None, options: ConvertOptions, scratch: Path, *, seed: int = 0
) -> list[Source]:
    """The sources the specs name; a manifest's splits follow the build's `seed`."""
    sources: list[Source] = []
    for spec in specs:
        if spec == "all-present":
            sources.extend(_all_present(raw_root, options, scratch, seed))
        elif spec.partition("=")[0] == UNIMED:
            sources.extend(
                _unimed_sources(Path(spec.partition("=")[2]) if "=" in spec else raw_root, options)
            )
        elif "=" in spec:
            name, _, root = spec.partition("=")
            sources.append(_manifest_source(name, Path(root), options, scratch, seed))
        else:
            sources.extend(_evalset_sources(Path(spec), options))
    return sources


def _all_present(raw_root: Path | None, options: ConvertOptions, scratch: Path, seed: int) -> list[Source]:
    if raw_root is None:
        raise ProtectError(
            "--protect all-present needs the build's raw root (`root:` in the config, or --root)"
        )
    manifests = sorted((load_manifest(path) for path in bundled_manifest_paths()), key=lambda m: m.name)
    present = [
        _manifest_source(manifest.name, raw_root, options, scratch, seed)
        for manifest in manifests
        if manifest.role == "eval" and dataset_root(manifest, raw_root).is_dir()
    ]
    if not present:
        print(
            f"protect all-present: no bundled evaluation set is under {raw_root}; give --protect EVALS "
            "(an evalset folder, or the folder `evalset --recipe unimed` wrote) to check against one",
            file=sys.stderr,
        )
    return present


def _unimed_sources(root: Path | None, options: ConvertOptions) -> list[Source]:
    """UniMed's sets found in its extracted evaluation archive, each read as `evalset --recipe
    unimed` reads it; the sets not found are said once."""
    from unimed_data.evalset.samples import EvalSetError
    from unimed_data.evalset.unimed_readers import read_set
    from unimed_data.evalset.unimed_recipe import SetMissing, locate
    from unimed_data.evalset.unimed_sets import SETS

    if root is None:
        raise ProtectError(f"--protect {UNIMED} needs a folder: {UNIMED}=EXTRACTED, or the build's raw root")
    annotations = root / "local_data" if (root / "local_data").is_dir() else root
    sources, absent = [], []
    for spec in SETS:
        try:
            folder, csv_file = locate(spec, root, annotations)
        except SetMissing:
            absent.append(spec.name)
            continue
        try:
            collected = read_set(spec, folder, csv_file)
        except EvalSetError as exc:
            print(f"protect {UNIMED}: {spec.name} not protected: {exc}", file=sys.stderr)
            continue
        tasks = [ProtectTask(spec.name, c.key, c.path, None, options) for c in collected.candidates]
        inputs = [path for path in (csv_file,) if path is not None]
        sources.append(
            Source(spec.name, tasks, inputs + [Path(t.path) for t in tasks if Path(t.path).exists()])
        )
    if absent:
        print(
            f"protect {UNIMED}: not found under {root}, not protected: {', '.join(absent)}", file=sys.stderr
        )
    return sources


def _manifest_source(name: str, raw_root: Path, options: ConvertOptions, scratch: Path, seed: int) -> Source:
    """The manifest's test and val records, read by the ingest stage (its layout and split rule)."""
    try:
        manifest = load_manifest(find_manifest(name))
    except ManifestError as exc:
        raise ProtectError(f"--protect {name}={raw_root}: {exc}") from None
    work = Path(tempfile.mkdtemp(prefix="protect-", dir=scratch))
    try:
        ingest_dataset(manifest, raw_root, Workspace(work).datasets, salt=secrets.token_hex(16), seed=seed)
    except LayoutError as exc:
        raise ProtectError(f"--protect {name}={raw_root}: {exc}") from None
    columns = ["key", "source_path", "split"]
    tasks = [
        ProtectTask(manifest.name, row["key"], row["source_path"], None, options)
        for row in iter_rows(Workspace(work).records(manifest.slug), columns)
        if row["split"] in PROTECTED_SPLITS
    ]
    root = dataset_root(manifest, raw_root)
    inputs = [path for path in annotation_files(manifest, root) if path.exists()]
    return Source(
        manifest.name, tasks, inputs + [Path(task.path) for task in tasks if Path(task.path).exists()]
    )


def _evalset_sources(folder: Path, options: ConvertOptions) -> list[Source]:
    """One set (a folder with test/*.tar), or every set in a folder of sets."""
    if _is_evalset(folder):
        return [_evalset_source(folder, options)]
    check_spec(str(folder))
    sets = sorted(child for child in folder.iterdir() if _is_evalset(child))
    return [_evalset_source(path, options) for path in sets]


def _is_evalset(folder: Path) -> bool:
    return any(
        (folder / split).is_dir() and any((folder / split).glob("*.tar")) for split in PROTECTED_SPLITS
    )


def _evalset_source(folder: Path, options: ConvertOptions) -> Source:
    tasks, inputs = [], []
    for split in PROTECTED_SPLITS:
        for shard in sorted((folder / split).glob("*.tar")):
            inputs.append(shard)
            try:
                samples = _tar_samples(shard)
            except (tarfile.TarError, OSError) as exc:
                raise ProtectError(f"--protect {folder}: {shard}: not a readable tar ({exc})") from None
            for key, members in samples.items():
                ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
                if ext is not None:
                    info = members[ext]
                    member = (info.offset_data, info.size)
                    tasks.append(ProtectTask(folder.name, f"{split}/{key}", str(shard), member, options))
    return Source(folder.name, tasks, inputs)


def _tar_samples(shard: Path) -> dict:
    with tarfile.open(shard) as tar:
        return sample_members(tar)


def file_tail(task: ProtectTask) -> str | None:
    return path_tail(task.path) if task.member is None else None


def path_tail(path: str) -> str:
    """A file's last two folders and its name, without regard to case: the same file named from
    two raw roots (`RAW/chexpert/CheXpert-v1.0-small/train/patient1/study1/view1.jpg` in a
    pretraining table, `.../train/patient1/study1/view1.jpg` in an evaluation CSV) has one tail."""
    return "/".join(Path(path).parts[-PATH_TAIL:]).casefold()
