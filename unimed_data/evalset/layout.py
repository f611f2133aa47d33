"""The CLIP_benchmark webdataset layout on disk: `<split>/<n>.tar` + `nshards.txt`, and the
metadata files beside them (classnames, templates, dataset type, prompts, info, errors).

Tars are written as the build writes them (`wds_tar`), each to a temporary name and renamed, so the
same samples give the same bytes; a rewritten shard identical to the old one keeps the old file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from unimed_data.schema import ERROR_SCHEMA, SPLITS
from unimed_data.tables import atomic_write_text, publish, temp_path, write_rows
from unimed_data.wds_tar import TarWriter, add_sample

CLASSIFICATION_FILES = ("classnames.txt", "zeroshot_classification_templates.txt", "prompts.json")
METADATA_FILES = (
    *CLASSIFICATION_FILES,
    "dataset_type.txt",
    "info.json",
    "errors.parquet",
)
_SHARD = re.compile(r"^\d+\.tar$")


class SplitWriter:
    """Streams samples into `<folder>/0.tar, 1.tar, ...`, `shard_size` samples each."""

    def __init__(self, folder: Path, shard_size: int):
        self.folder, self.shard_size = folder, shard_size
        self.count = self.shards = 0
        self._tar: TarWriter | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> SplitWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Until the new nshards.txt is written, a reader must not take new and old shards for one set.
        (self.folder / "nshards.txt").unlink(missing_ok=True)
        return self

    def write(self, key: str, members: dict[str, bytes]) -> None:
        if self._tar is None:
            self._tmp = temp_path(self.folder / f"{self.shards}.tar")
            self._tar = TarWriter(self._tmp)
        add_sample(self._tar, key, members)
        self.count += 1
        if self.count % self.shard_size == 0:
            self._close_shard()

    def _close_shard(self) -> None:
        self._tar.close()
        publish(self._tmp, self.folder / f"{self.shards}.tar")
        self._tar = self._tmp = None
        self.shards += 1

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            if self._tar is not None:
                self._tar.close()
                self._tmp.unlink(missing_ok=True)
            return
        if self._tar is not None:
            self._close_shard()
        remove_shards(self.folder, keep=self.shards)
        if self.shards:  # a split without samples is left out, not written as "0 shards"
            atomic_write_text(self.folder / "nshards.txt", f"{self.shards}\n")


def remove_shards(folder: Path, keep: int = 0) -> None:
    """Shards numbered `keep` and up, left by an earlier run with more samples (all when keep=0)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if _SHARD.match(path.name) and int(path.stem) >= keep:
            path.unlink()
    if keep == 0:
        (folder / "nshards.txt").unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()


def clear_other_splits(out: Path, written: Iterable[str]) -> None:
    """An earlier run's train/val shards must not outlive a run that no longer asks for them."""
    for split in set(SPLITS) - set(written):
        remove_shards(out / split)


def write_metadata(
    out: Path,
    *,
    task: str,
    classes: list[str],
    templates: list[str],
    prompts: dict[str, list[str]],
    info: dict,
    errors: list[dict],
) -> None:
    """Everything beside the shards. Retrieval sets have no classes, so no class or template files."""
    if task == "retrieval":
        for name in CLASSIFICATION_FILES:
            (out / name).unlink(missing_ok=True)
    else:
        atomic_write_text(out / "classnames.txt", "".join(f"{name}\n" for name in classes))
        atomic_write_text(out / "zeroshot_classification_templates.txt", "".join(f"{t}\n" for t in templates))
        atomic_write_text(out / "prompts.json", json.dumps(prompts, indent=2, ensure_ascii=False) + "\n")
    dataset_type = {"multilabel": "multilabel", "retrieval": "retrieval"}.get(task)
    if dataset_type is None:
        (out / "dataset_type.txt").unlink(missing_ok=True)
    else:
        atomic_write_text(out / "dataset_type.txt", f"{dataset_type}\n")
    atomic_write_text(out / "info.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    write_rows(out / "errors.parquet", ERROR_SCHEMA, errors)
