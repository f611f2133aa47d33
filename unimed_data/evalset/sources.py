"""The three sources of an evaluation set, each turned into `Candidate`s with their EVAL split.

- a folder-per-class tree (`DIR/<class>/...`, nested folders allowed; the class is the top folder);
- a classification manifest, read by the ingest stage itself (same layouts, labels, split rules,
  duplicate and bad-row checks), into a temporary folder;
- the shards of one of our own builds, whose JPEGs are copied as they are.

Sources only read annotations and tar headers; pixels are read when the set is written.
"""

from __future__ import annotations

import json
import re
import secrets
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

from unimed_data.evalset.samples import Candidate, Collected, EvalSetError, error_row
from unimed_data.ingest import dataset_root, ingest_dataset
from unimed_data.layouts import Item, LayoutError
from unimed_data.layouts import folder as folder_layout
from unimed_data.manifest import find_manifest, load_manifest
from unimed_data.schema import make_key
from unimed_data.splits import hash_unit, normalise_split
from unimed_data.tables import iter_rows
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
_SEPARATORS = re.compile(r"[\s_-]+")


def class_name(folder: str) -> str:
    """A class folder's name as a class: `pleural_effusion` and `pleural-effusion` read `pleural effusion`."""
    return _SEPARATORS.sub(" ", folder).strip()


def from_folder(
    folder: Path,
    *,
    modality: str,
    name: str | None = None,
    holdout_train: float = 0.0,
    holdout_val: float = 0.0,
    seed: int = 0,
) -> Collected:
    """Every image of `folder/<class>/` in `test`, except per class the first `holdout_train` and
    then `holdout_val` fraction in the order of a seeded hash of the relative path (train, val):
    stratified and reproducible, and a file's split depends only on its path and its class's files."""
    if not folder.is_dir():
        raise EvalSetError(f"{folder}: not a folder")
    if holdout_train < 0 or holdout_val < 0 or holdout_train + holdout_val >= 1:
        raise EvalSetError("--holdout-train and --holdout-val must be >= 0 and leave some images for test")
    folder = folder.resolve()
    name = name or folder.name
    errors, by_class = [], defaultdict(list)
    layout = folder_layout.FolderLayout(type="folder")
    for entry in folder_layout.iter_items(layout, folder):
        key = make_key(name, entry.item_id)
        path = str(folder / entry.source_path) if entry.source_path else None
        if isinstance(entry, Item):
            by_class[class_name(entry.source_path.split("/")[0])].append((entry.source_path, key, path))
        else:
            errors.append(error_row(name, "ingest", key, path, entry.reason))
    if not by_class:
        raise EvalSetError(f"{folder}: no images in class folders (expected {folder}/<class>/<image>)")
    candidates = []
    for label, items in by_class.items():
        items.sort(key=lambda item: (hash_unit(seed, item[0]), item[0]))
        n_train, n_val = round(len(items) * holdout_train), round(len(items) * holdout_val)
        for index, (_, key, path) in enumerate(items):
            split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
            candidates.append(Candidate(key, split, name, modality, path, labels=(label,)))
    return Collected(name, modality, f"folder {folder}", candidates, errors, read_from=[folder])


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
    with tempfile.TemporaryDirectory(prefix="unimed-evalset-") as work:
        ws = Workspace(Path(work))
        try:
            ingest_dataset(manifest, raw_root, ws.datasets, salt=secrets.token_hex(16), seed=seed)
        except LayoutError as exc:
            raise EvalSetError(f"{manifest.name}: {exc}") from None
        errors = list(iter_rows(ws.errors(manifest.slug, "ingest")))
        found, candidates = set(), []
        for record in iter_rows(ws.records(manifest.slug)):
            found.add(record["split"])
            if record["split"] in wanted:
                candidates.append(
                    Candidate(
                        record["key"],
                        wanted[record["split"]],
                        record["dataset"],
                        record["modality"],
                        record["source_path"],
                        labels=tuple(record["labels"] or ()),
                        uncertain=tuple(record["uncertain_labels"] or ()),
                    )
                )
    if not any(c.split == "test" for c in candidates):
        raise EvalSetError(
            f"{manifest.name}: no record in split(s) {', '.join(test_splits)} "
            f"(its records are in: {', '.join(sorted(found)) or 'none'}); choose with --split"
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
                sample_modality = meta.get("modality") or "other"
                by_modality = classes_from == "modality"
                labels = (MODALITY_CLASSES.get(sample_modality, sample_modality),)
                candidates.append(
                    Candidate(
                        key,
                        target,
                        dataset,
                        sample_modality,
                        str(shard),
                        labels=labels if by_modality else tuple(meta.get("labels") or ()),
                        uncertain=() if by_modality else tuple(meta.get("uncertain_labels") or ()),
                        captions=tuple(meta.get("captions") or ()),
                        member=jpg,
                    )
                )
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


def _read_shard(shard: Path) -> list[tuple[str, dict | None, tuple[int, int] | None, str | None]]:
    """(key, json metadata, (offset, size) of the jpg member, problem) per sample, in tar order."""
    samples = []
    try:
        with tarfile.open(shard) as tar:
            members: dict[str, dict[str, tarfile.TarInfo]] = defaultdict(dict)
            for member in tar:
                key, _, ext = member.name.partition(".")
                members[key][ext] = member
            for key, parts in members.items():
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
