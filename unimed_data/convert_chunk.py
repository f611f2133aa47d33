"""The convert stage's unit of work: one slice of records converted into one chunk.

A slice is a few hundred to a few thousand records, so a task costs one pickle, one future, one
tar and one table, not one of each per image. It is also the unit of resume: a rerun keeps every
image of the chunk already on disk whose source is unchanged (same path, same modification time)
and whose tar is intact, and converts only the rest, the failed ones included (a missing file may
have arrived); a chunk whose results would not change is not rewritten.
"""

from __future__ import annotations

import hashlib
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

from unimed_data import imaging
from unimed_data.image_chunks import IMAGE_FIELDS, intact, read_images, read_results, write_chunk
from unimed_data.imaging import ConvertOptions, ImageError, TooSmallError
from unimed_data.parallel import run_isolated

if TYPE_CHECKING:
    from unimed_data.imaging import EncodedImage

CRASHED = "the decoder crashed the worker process (segfault or out of memory)"


@dataclass(frozen=True)
class ConvertResult:
    """Why an image has no JPEG: an error, or the rule that dropped it (too small)."""

    error: str | None = None
    filtered: str | None = None


@dataclass(frozen=True)
class ChunkTask:
    results: str  # the chunk's results table (image_chunks.results_file)
    items: tuple[tuple[str, str], ...]  # (key, source path) in record order
    options: ConvertOptions
    isolated: bool = False  # each image in a process of its own: the slice crashed its worker


def encode_source(source: Path, options: ConvertOptions) -> EncodedImage | ConvertResult:
    """The source's JPEG, or a result saying why there is none (an error, or the rule that drops
    it). The build and `evalset` both read images through here, so a bad file gets the same reason
    in both."""
    try:
        stat = source.stat()
    except FileNotFoundError:
        return ConvertResult(error="file not found")
    except OSError as exc:
        return ConvertResult(error=f"cannot read file: {exc.strerror or exc}")
    if not S_ISREG(stat.st_mode):
        return ConvertResult(error="not a regular file")
    try:
        return imaging.convert_file(source, options)  # the decoders load here, not at start-up
    except TooSmallError as exc:
        return ConvertResult(filtered=str(exc))
    except ImageError as exc:
        return ConvertResult(error=str(exc))
    except OSError as exc:
        return ConvertResult(error=f"cannot read file: {exc.strerror or exc}")


def convert_chunk(task: ChunkTask) -> list[dict]:
    """Convert a slice into its chunk (or keep the chunk as it is); returns one results row per
    item, in order (image_chunks.CHUNK_SCHEMA)."""
    results = Path(task.results)
    folder = results.parent
    before = read_results(results) or []
    whole = intact(folder, before)
    kept = {r["key"]: r for r in before if r["error"] is None and r["image_path"] in (None, *whole)}
    rows, images, fresh = [], {}, []
    for key, source in task.items:
        mtime_ns = _mtime_ns(source)
        old = kept.get(key)
        if old is not None and old["source_path"] == source and old["mtime_ns"] == mtime_ns:
            rows.append(old)
        else:
            rows.append(None)
            fresh.append((len(rows) - 1, key, source, mtime_ns))
    for (position, key, source, mtime_ns), encoded in zip(fresh, _encode_all(fresh, task), strict=True):
        rows[position], jpeg = _row(key, source, mtime_ns, encoded)
        if jpeg is not None:
            images[key] = jpeg
    if rows == before:
        return before
    images.update(read_images((r for r in rows if r["key"] not in images and r["image_path"]), folder))
    placed = write_chunk(results, rows, images)
    for stale in {r["image_path"] for r in before} - {r["image_path"] for r in placed} - {None}:
        (folder / stale).unlink(missing_ok=True)
    return placed


def _encode_all(fresh: list[tuple], task: ChunkTask) -> list[EncodedImage | ConvertResult]:
    if not task.isolated:
        return [_encode(source, task.options) for _, _, source, _ in fresh]
    return [_encode_alone(source, task.options) for _, _, source, _ in fresh]


def _encode(source: str, options: ConvertOptions) -> EncodedImage | ConvertResult:
    return encode_source(Path(source), options)


def _encode_alone(source: str, options: ConvertOptions) -> EncodedImage | ConvertResult:
    try:
        return run_isolated(_encode, source, options)
    except BrokenProcessPool:
        return ConvertResult(error=CRASHED)


def _row(key: str, source: str, mtime_ns: int | None, encoded) -> tuple[dict, bytes | None]:
    row = {"key": key, "source_path": source, "mtime_ns": mtime_ns, "error": None, "filtered": None}
    if isinstance(encoded, ConvertResult):
        return {**row, "error": encoded.error, "filtered": encoded.filtered, **_NO_IMAGE}, None
    mark = encoded.fingerprint
    return {
        **row,
        "width": encoded.width,
        "height": encoded.height,
        "sha256": hashlib.sha256(encoded.jpeg).hexdigest(),
        "pixels_sha256": mark.pixels,
        "phash": mark.phash,
        "thumb": mark.thumb,
        **_PLACE,
    }, encoded.jpeg


_PLACE = dict.fromkeys(("image_path", "image_offset", "image_size"))
_NO_IMAGE = dict.fromkeys(IMAGE_FIELDS)


def _mtime_ns(source: str) -> int | None:
    try:
        return Path(source).stat().st_mtime_ns
    except OSError:
        return None  # encode_source says why


def crashed(task: ChunkTask) -> list[dict]:
    """The results of a slice whose worker died: converted again with each image in a process of
    its own, so only the image that kills its process is lost (as an error)."""
    return convert_chunk(replace(task, isolated=True))
