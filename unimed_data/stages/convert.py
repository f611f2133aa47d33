"""Convert stage: every record's source file becomes a capped JPEG, in parallel, resumably.

Each image is written atomically under its key, so a killed run leaves only complete images; a
rerun reuses those (their result, fingerprint included, is kept beside each JPEG) and converts
the rest. Each result carries the image's fingerprint for the dedupe stage. The table is streamed in batches and the pool
is fed in windows, so memory does not grow with the dataset.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

from unimed_data.executor import Executor, LocalExecutor
from unimed_data.imaging import ConvertOptions, EncodedImage, ImageError, TooSmallError, convert_file
from unimed_data.schema import ERROR_SCHEMA, RECORD_SCHEMA, error_row
from unimed_data.stages.base import Stage, StageSummary
from unimed_data.stamps import Stamp
from unimed_data.tables import atomic_write_text, iter_rows, row_count, table_writer, temp_path
from unimed_data.workspace import Workspace

if TYPE_CHECKING:
    from unimed_data.pipeline import Dataset
    from unimed_data.runner import StageContext


@dataclass(frozen=True)
class ConvertResult:
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    error: str | None = None
    filtered: str | None = None  # the reason a rule dropped the image (too small)
    pixels_sha256: str | None = None
    phash: int | None = None
    thumb: bytes | None = None


@dataclass(frozen=True)
class ConvertTask:
    source: str
    target: str
    options: ConvertOptions


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
        return convert_file(source, options)
    except TooSmallError as exc:
        return ConvertResult(filtered=str(exc))
    except ImageError as exc:
        return ConvertResult(error=str(exc))
    except OSError as exc:
        return ConvertResult(error=f"cannot read file: {exc.strerror or exc}")


def convert_one(task: ConvertTask) -> ConvertResult:
    """Convert one file, or describe why it cannot be; never raises for bad input.

    A finished JPEG carries its source's modification time, and its result (size, digests,
    fingerprint) is kept beside it, so it is reused while the source is unchanged: a rerun after a
    kill, or after rows were added, decodes only what is new; a replaced source is converted again.
    """
    source, target = Path(task.source), Path(task.target)
    try:
        mtime_ns = source.stat().st_mtime_ns
    except OSError:
        mtime_ns = None  # encode_source says why
    if (kept := _kept_result(target, mtime_ns)) is not None:
        return kept
    encoded = encode_source(source, task.options)
    if isinstance(encoded, ConvertResult):
        return encoded
    mark = encoded.fingerprint
    result = ConvertResult(
        encoded.width,
        encoded.height,
        hashlib.sha256(encoded.jpeg).hexdigest(),
        pixels_sha256=mark.pixels,
        phash=mark.phash,
        thumb=mark.thumb,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_result(target, result, mtime_ns)  # before the JPEG: a JPEG in place always has its result
    tmp = temp_path(target)
    tmp.write_bytes(encoded.jpeg)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, target)
    return result


def _result_file(target: Path) -> Path:
    return target.with_suffix(".json")


def _write_result(target: Path, result: ConvertResult, mtime_ns: int) -> None:
    fields = {
        **dataclasses.asdict(result),
        "thumb": base64.b64encode(result.thumb).decode(),
        "mtime_ns": mtime_ns,
    }
    atomic_write_text(_result_file(target), json.dumps(fields, sort_keys=True))


def _kept_result(target: Path, mtime_ns: int | None) -> ConvertResult | None:
    """The result kept beside a finished JPEG, if both were made from the source as it is now."""
    try:
        if mtime_ns is None or target.stat().st_mtime_ns != mtime_ns:
            return None
        fields = json.loads(_result_file(target).read_text())
    except (OSError, ValueError):
        return None
    if fields.pop("mtime_ns", None) != mtime_ns:
        return None
    fields["thumb"] = base64.b64decode(fields["thumb"])
    return ConvertResult(**fields)


FINGERPRINT_VERSION = 1  # in the stamp: tables converted before fingerprints existed are redone

CRASHED = "the decoder crashed the worker process (segfault or out of memory)"


def crashed(task: ConvertTask) -> ConvertResult:
    return ConvertResult(error=CRASHED)


def convert_dataset(
    ws: Workspace, slug: str, options: ConvertOptions, *, workers: int = 1, executor: Executor | None = None
) -> StageSummary:
    """Convert the dataset's records on `executor` (by default `workers` local processes)."""
    records, converted, errors = ws.records(slug), ws.converted(slug), ws.errors(slug, "convert")
    filtered = ws.filtered(slug, "convert")
    option_dict = dataclasses.asdict(options)
    stamp = Stamp.of(
        ws.stamp(slug, "convert"), [records], {**option_dict, "fingerprint": FINGERPRINT_VERSION}
    )
    stored = stamp.stored([converted, errors, filtered])
    if stored is not None and stored["errors"] == 0:
        return StageSummary.from_dict(stored)
    # Failed items are retried on every run: a missing image may have arrived, a bad one been fixed.
    # The finished ones keep the result kept beside their JPEG, so a retry reads no JPEG again.
    _reset_images_if_options_changed(ws.images(slug), option_dict)

    total = row_count(records)
    in_flight: deque[dict] = deque()

    def tasks():
        for row in iter_rows(records):
            in_flight.append(row)
            yield ConvertTask(row["source_path"], str(ws.image_file(slug, row["key"])), options)

    with (
        table_writer(converted, RECORD_SCHEMA) as ok,
        table_writer(errors, ERROR_SCHEMA) as failed,
        table_writer(filtered, ERROR_SCHEMA) as dropped,
    ):
        executor = executor or LocalExecutor(workers)
        for result in executor.map(
            convert_one, tasks(), desc=f"convert {slug}", total=total, on_crash=crashed
        ):
            row = in_flight.popleft()
            if result.error is not None:
                failed.write(
                    error_row(row["dataset"], "convert", row["key"], row["source_path"], result.error)
                )
            elif result.filtered is not None:
                dropped.write(
                    error_row(row["dataset"], "convert", row["key"], row["source_path"], result.filtered)
                )
            else:
                ok.write(
                    {
                        **row,
                        "image_path": str(ws.image_file(slug, row["key"])),
                        "width": result.width,
                        "height": result.height,
                        "sha256": result.sha256,
                        "pixels_sha256": result.pixels_sha256,
                        "phash": result.phash,
                        "thumb": result.thumb,
                    }
                )
    summary = StageSummary("convert", slug, total, ok.count, failed.count, dropped.count)
    stamp.write(summary.as_dict(), [records])
    return summary


def _reset_images_if_options_changed(images: Path, options: dict) -> None:
    """Images made with other options (size cap, quality) must not be reused."""
    marker = images / "options.json"
    wanted = json.dumps(options, sort_keys=True)
    if marker.exists() and marker.read_text() == wanted:
        return
    if images.exists():
        shutil.rmtree(images)
    atomic_write_text(marker, wanted)


def run_convert(ctx: StageContext, dataset: Dataset) -> StageSummary:
    return convert_dataset(ctx.ws, dataset.slug, ctx.config.convert.options(), executor=ctx.executor)


STAGE = Stage(
    name="convert",
    help="Convert source images to capped JPEGs.",
    reads=("records",),
    writes=("converted",),
    options=("workers", "max_side", "min_side", "jpeg_quality"),
    run=run_convert,
)
