"""The three sources of an evaluation set, each turned into `Candidate`s with their EVAL split.

- a folder-per-class tree, or a classification manifest, read by the build's ingest stage itself
  (same layouts, class and label names, split rules, duplicate and bad-row checks) into a
  temporary folder;
- the shards of one of our own builds, whose JPEGs are copied as they are.

Sources only read annotations and tar headers; pixels are read when the set is written.
"""

from __future__ import annotations

import json
import secrets
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

from unimed_data.bundled import bundled
from unimed_data.dataset_folders import dataset_root
from unimed_data.evalset.samples import Candidate, Collected, EvalSetError
from unimed_data.layouts import LayoutError
from unimed_data.manifest import (
    Manifest,
    ManifestError,
    find_manifest,
    folder_manifest,
    load_manifest,
)
from unimed_data.schema import error_row
from unimed_data.splits import hash_unit, normalise_split
from unimed_data.stages.ingest import ingest_dataset
from unimed_data.tables import iter_rows
from unimed_data.wds_tar import sample_members
from unimed_data.workspace import Workspace

UNKNOWN = "(unknown)"  # the dataset of a sample whose json cannot be read
CLASSES_FROM = ("labels", "modality")
# Class names of a modality-recognition set: the words captions use for each modality.
MODALITY_CLASSES = {
    "xray": "X-ray",
    "ct": "CT",
    "mri": "MRI",
    "ultrasound": "ultrasound",
    "pathology": "histopathology",
    "fundus": "fundus photograph",
    "oct": "OCT",
    "dermatology": "dermoscopy",
    "endoscopy": "endoscopy",
    "other": "other medical",
}


def from_folder(
    folder: Path,
    *,
    modality: str,
    name: str | None = None,
    holdout_train: float = 0.0,
    holdout_val: float = 0.0,
    seed: int = 0,
) -> Collected:
    """Every image of the tree in `test`, read by the ingest stage as `build --from-folder` reads
    it (so with the build's classes, `layouts.folder.folder_class`), except per class the first
    `holdout_train` and then `holdout_val` fraction in the order of a seeded hash of the relative
    path (train, val): stratified and reproducible, and a file's split depends only on its path and
    its class's files."""
    if not folder.is_dir():
        raise EvalSetError(f"{folder}: not a folder")
    if holdout_train < 0 or holdout_val < 0 or holdout_train + holdout_val >= 1:
        raise EvalSetError("--holdout-train and --holdout-val must be >= 0 and leave some images for test")
    folder = folder.resolve()
    manifest = _folder_manifest(folder, name or folder.name, modality)
    records, errors = _ingest(manifest, folder.parent, seed)
    if not records:
        raise EvalSetError(f"{folder}: no images in class folders (expected {folder}/<class>/<image>)")
    by_class = defaultdict(list)
    for record in records:
        relpath = Path(record["source_path"]).relative_to(folder).as_posix()
        by_class[record["labels"][0]].append((relpath, record["key"], record["source_path"]))
    candidates = []
    for label, items in by_class.items():
        items.sort(key=lambda item: (hash_unit(seed, item[0]), item[0]))
        n_train, n_val = round(len(items) * holdout_train), round(len(items) * holdout_val)
        for index, (_, key, path) in enumerate(items):
            split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
            candidates.append(Candidate(key, split, manifest.name, modality, path, labels=(label,)))
    return Collected(manifest.name, modality, f"folder {folder}", candidates, errors, read_from=[folder])


def _folder_manifest(folder: Path, name: str, modality: str) -> Manifest:
    """The manifest `build --from-folder` reads a tree with; an evaluation set states no licence."""
    try:
        return folder_manifest(folder, name=name, modality=modality, license="not stated")
    except ManifestError as exc:
        raise EvalSetError(str(exc)) from None


def _ingest(manifest: Manifest, raw_root: Path, seed: int) -> tuple[list[dict], list[dict]]:
    """The dataset's records and ingest errors, as the build's ingest stage writes them, read back
    from a temporary workspace (a fresh patient salt: no patient hash leaves it)."""
    with tempfile.TemporaryDirectory(prefix="unimed-evalset-") as work:
        ws = Workspace(Path(work))
        try:
            ingest_dataset(manifest, raw_root, ws.datasets, salt=secrets.token_hex(16), seed=seed)
        except LayoutError as exc:
            raise EvalSetError(f"{manifest.name}: {exc}") from None
        return list(iter_rows(ws.records(manifest.slug))), list(iter_rows(ws.errors(manifest.slug, "ingest")))


def from_manifest(
    manifest_name: str,
    raw_root: Path,
    *,
    test_splits: tuple[str, ...] = ("test",),
    with_train: bool = False,
    seed: int = 0,
    name: str | None = None,
    modality: str | None = None,
) -> Collected:
    """The manifest's records of `test_splits` as `test` (and its train/val with `with_train`),
    under the manifest's own split rule and seed. Records of other splits are not inputs."""
    manifest = load_manifest(find_manifest(manifest_name))
    root = dataset_root(manifest, raw_root)
    if not root.is_dir():
        raise EvalSetError(f"{root}: dataset folder of {manifest.name} not found (under --root {raw_root})")
    try:
        wanted = {normalise_split(split): "test" for split in test_splits}
    except ValueError as exc:
        raise EvalSetError(f"--split: {exc}") from None
    if with_train:
        wanted = {"train": "train", "val": "val", **wanted}
    records, errors = _ingest(manifest, raw_root, seed)
    candidates = [
        Candidate(
            record["key"],
            wanted[record["split"]],
            record["dataset"],
            record["modality"],
            record["source_path"],
            labels=tuple(record["labels"] or ()),
            uncertain=tuple(record["uncertain_labels"] or ()),
        )
        for record in records
        if record["split"] in wanted
    ]
    if not any(c.split == "test" for c in candidates):
        found = sorted({record["split"] for record in records})
        raise EvalSetError(
            f"{manifest.name}: no record in split(s) {', '.join(test_splits)} "
            f"(its records are in: {', '.join(found) or 'none'}); choose with --split"
        )
    return Collected(
        name or manifest.name,
        modality or manifest.modality,
        f"manifest {manifest.name} ({root})",
        candidates,
        errors,
        definitions=dict(manifest.definitions),
        unlabelled_are_negatives=True,
        read_from=[root],
        templates=bundled("prompts") / "eval" / f"{manifest.templates}.txt" if manifest.templates else None,
    )


def from_build(
    build: Path,
    *,
    splits: tuple[str, ...] = ("test",),
    train_splits: tuple[str, ...] = (),
    datasets: tuple[str, ...] = (),
    name: str | None = None,
    modality: str | None = None,
    classes_from: str = "labels",
) -> Collected:
    """The samples of a build's `splits` as `test` (and of `train_splits` as `train`), optionally
    only those of `datasets`; labels, captions, dataset and modality come from each sample's json.

    `classes_from="modality"` makes the modality the class (X-ray, CT, MRI, ...): every sample of a
    build has one, so even a build whose own labels barely vary (the demo) gets a real test."""
    if classes_from not in CLASSES_FROM:
        raise EvalSetError(f"classes from {classes_from!r}: use one of {', '.join(CLASSES_FROM)}")
    if overlap := set(splits) & set(train_splits):
        raise EvalSetError(f"split(s) {', '.join(sorted(overlap))} asked for both test and train")
    build = build.resolve()
    candidates, errors, seen_datasets = [], [], set()
    folders = [(build / split, "test") for split in splits] + [(build / s, "train") for s in train_splits]
    for folder, target in folders:
        shards = sorted(folder.glob("*.tar"))
        if not shards:
            raise EvalSetError(f"{folder}: no shards here (expected the split folder of a `build` output)")
        for shard in shards:
            for key, meta, jpg, problem in _read_shard(shard):
                dataset = (meta or {}).get("dataset") or UNKNOWN
                seen_datasets.add(dataset)
                if datasets and dataset not in datasets:
                    continue
                if problem:
                    errors.append(error_row(dataset, "read", key, str(shard), problem))
                    continue
                candidates.append(_shard_candidate(key, target, shard, meta, jpg, classes_from))
    if missing := sorted(set(datasets) - seen_datasets):
        raise EvalSetError(
            f"{build}: no sample of dataset(s) {', '.join(missing)} in split(s) {', '.join(splits)} "
            f"(found: {', '.join(sorted(seen_datasets))})"
        )
    modalities = {c.modality for c in candidates}
    return Collected(
        name or build.name,
        modality or (modalities.pop() if len(modalities) == 1 else "mixed"),
        f"build {build} split(s) {','.join(splits)}",
        candidates,
        errors,
        read_from=[folder for folder, _ in folders],
    )


def _shard_candidate(
    key: str, split: str, shard: Path, meta: dict, jpg: tuple[int, int], classes_from: str
) -> Candidate:
    """A build's sample, labelled by its labels or (`classes_from="modality"`) by its modality."""
    modality = meta.get("modality") or "other"
    by_modality = classes_from == "modality"
    return Candidate(
        key,
        split,
        meta.get("dataset") or UNKNOWN,
        modality,
        str(shard),
        labels=(MODALITY_CLASSES.get(modality, modality),)
        if by_modality
        else tuple(meta.get("labels") or ()),
        uncertain=() if by_modality else tuple(meta.get("uncertain_labels") or ()),
        captions=tuple(meta.get("captions") or ()),
        member=jpg,
    )


def _read_shard(shard: Path) -> list[tuple[str, dict | None, tuple[int, int] | None, str | None]]:
    """(key, json metadata, (offset, size) of the jpg member, problem) per sample, in tar order."""
    samples = []
    try:
        with tarfile.open(shard) as tar:
            for key, parts in sample_members(tar).items():
                samples.append((key, *_sample(tar, parts)))
    except (OSError, tarfile.TarError) as exc:
        raise EvalSetError(f"{shard}: unreadable shard ({exc})") from None
    return samples


def _sample(tar: tarfile.TarFile, parts: dict[str, tarfile.TarInfo]):
    if "json" not in parts:
        return None, None, "no json member"
    try:
        meta = json.loads(tar.extractfile(parts["json"]).read())
    except ValueError as exc:
        return None, None, f"unreadable json member ({exc})"
    if not isinstance(meta, dict):
        return None, None, "json member is not an object"
    if "jpg" not in parts:
        return meta, None, "no jpg member"
    return meta, (parts["jpg"].offset_data, parts["jpg"].size), None
