"""Converted images kept in chunk files: one tar of JPEGs per slice of records, beside one table
of that slice's results, instead of one file per image.

Millions of small files are what shared cluster filesystems (Lustre, GPFS, NFS) handle worst, and
one file per image cost a mkdir, a temp file, a rename and a utime each. A chunk is written whole
and renamed into place: `chunk-<first key>.parquet` (the slice's results: sizes, digests,
fingerprints, errors, and each image's byte range) names the tar beside it,
`chunk-<first key>.<digest>.tar`, so a new tar never replaces one a results table still points at
(a chunk with no image has no tar). A run killed between the two renames leaves a tar no table
names, which `sweep` removes. The shard stage reads an image by its byte range (`read_images`),
in file order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from itertools import groupby
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from unimed_data.schema import RECORD_SCHEMA
from unimed_data.tables import temp_path, write_rows
from unimed_data.wds_tar import TarWriter

# The record's image fields (schema.py owns their types), with what a rerun needs to reuse a result.
IMAGE_FIELDS = (
    "width",
    "height",
    "sha256",
    "pixels_sha256",
    "phash",
    "thumb",
    "image_path",
    "image_offset",
    "image_size",
)
CHUNK_SCHEMA = pa.schema(
    [
        RECORD_SCHEMA.field("key"),
        RECORD_SCHEMA.field("source_path"),
        pa.field("mtime_ns", pa.int64()),  # the source's, when converted: a replaced source is redone
        pa.field("error", pa.string()),
        pa.field("filtered", pa.string()),
        *(RECORD_SCHEMA.field(name) for name in IMAGE_FIELDS),
    ]
)
CHUNK_ROWS = 1024  # records per chunk on average by default: ~40 MB of 512 px JPEGs
TARGET_CHUNKS = 256  # a smaller dataset is cut into about this many chunks...
MIN_CHUNK_ROWS = 16  # ...of at least this many records
_TAR_NAME = re.compile(r"^(chunk-[a-z0-9_-]+)\.[0-9a-f]+\.tar$")
_TABLE_NAME = re.compile(r"^(chunk-[a-z0-9_-]+)\.parquet$")


def results_file(folder: Path, first_key: str) -> Path:
    """A chunk's results table, named by its first record's key (keys are safe in file names)."""
    return folder / f"chunk-{first_key}.parquet"


def read_results(path: Path) -> list[dict] | None:
    """The rows of a chunk's results table, or None when there is none (or it cannot be read)."""
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowInvalid):
        return None


def write_chunk(results: Path, rows: list[dict], images: dict[str, bytes]) -> list[dict]:
    """Write the tar of `images` (by key, in row order), when there are any, and then the results
    table naming it; returns `rows` with each image's tar (its file name, beside the table: the
    build folder may be moved) and byte range filled in."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row['key']}:{row['sha256']}\n".encode())
    tar_name = f"{results.stem}.{digest.hexdigest()[:16]}.tar"
    placed = [{**row, "image_path": None, "image_offset": None, "image_size": None} for row in rows]
    if images:
        tmp = temp_path(results.with_name(tar_name))
        with TarWriter(tmp) as tar:
            for row in placed:
                if (data := images.get(row["key"])) is not None:
                    offset = tar.add(f"{row['key']}.jpg", data)
                    row.update(image_path=tar_name, image_offset=offset, image_size=len(data))
        tmp.replace(results.with_name(tar_name))
    write_rows(results, CHUNK_SCHEMA, placed)
    return placed


def read_images(rows: Iterable[dict], folder: Path) -> dict[str, bytes]:
    """The image bytes of each row (`key`, `image_path` relative to `folder`, `image_offset`,
    `image_size`), read file by file in offset order, so a chunk is read front to back however the
    rows are shuffled."""
    images: dict[str, bytes] = {}
    ordered = sorted(rows, key=lambda r: (r["image_path"], r["image_offset"]))
    for path, group in groupby(ordered, key=lambda r: r["image_path"]):
        with open(folder / path, "rb") as handle:
            for row in group:
                handle.seek(row["image_offset"])
                data = handle.read(row["image_size"])
                if len(data) != row["image_size"]:
                    raise OSError(
                        f"{folder / path}: truncated chunk file (image {row['key']} ends past its end)"
                    )
                images[row["key"]] = data
    return images


def intact(folder: Path, rows: list[dict]) -> set[str]:
    """The tars (by name) that hold every byte the rows place in them: a tar deleted or cut short by
    hand is not, and its images are converted again."""
    ends: dict[str, int] = {}
    for row in rows:
        if row["image_path"] is not None:
            end = row["image_offset"] + row["image_size"]
            ends[row["image_path"]] = max(ends.get(row["image_path"], 0), end)
    whole = set()
    for name, end in ends.items():
        try:
            if (folder / name).stat().st_size >= end:
                whole.add(name)
        except OSError:
            pass
    return whole


def sweep(folder: Path, keep: set[str] | None = None) -> None:
    """Remove the chunk tars no results table names (left by a run killed between writing a tar and
    its table, or replaced by a newer tar of the same chunk) and, given the chunks a run made (by
    table stem), every other chunk: their records left the dataset, or moved to other chunks."""
    if not folder.is_dir():
        return
    tars: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if match := _TAR_NAME.match(path.name):
            tars.setdefault(match.group(1), []).append(path)
        elif keep is not None and (match := _TABLE_NAME.match(path.name)) and match.group(1) not in keep:
            path.unlink()
    for stem, paths in tars.items():
        results = folder / f"{stem}.parquet"
        if len(paths) == 1 and results.exists():
            continue  # a tar is renamed in before its table, and a new table names its new tar
        named = set(_named_tars(results))  # none when the table is missing
        for path in paths:
            if path.name not in named:
                path.unlink(missing_ok=True)


def _named_tars(results: Path) -> list[str]:
    try:
        return pq.read_table(results, columns=["image_path"]).column(0).drop_null().to_pylist()
    except (OSError, pa.ArrowInvalid):
        return []
