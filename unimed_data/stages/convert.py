"""Convert stage: every record's source file becomes a capped JPEG, in parallel, resumably.

Records are converted a slice at a time (`slices`: about `chunk_size` of them) into one chunk each
(image_chunks.py), on the build's executor; a rerun keeps each chunk's finished images and
converts only what is new, changed or failed before (convert_chunk.py). Each result carries the
image's fingerprint for the dedupe stage. The table is streamed in batches and only a window of
slices is in flight, so memory does not grow with the dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from unimed_data.convert_chunk import ChunkTask, convert_chunk, crashed
from unimed_data.executor import Executor, LocalExecutor
from unimed_data.image_chunks import (
    CHUNK_ROWS,
    IMAGE_FIELDS,
    MIN_CHUNK_ROWS,
    TARGET_CHUNKS,
    results_file,
    sweep,
)
from unimed_data.imaging import ConvertOptions
from unimed_data.schema import ERROR_SCHEMA, RECORD_SCHEMA, error_row
from unimed_data.stages.base import Stage, StageSummary
from unimed_data.stamps import Stamp
from unimed_data.tables import atomic_write_text, iter_rows, row_count, table_writer
from unimed_data.workspace import Workspace

if TYPE_CHECKING:
    from unimed_data.pipeline import Dataset
    from unimed_data.runner import StageContext

LONGEST_SLICE = 4  # times the average: a run of keys with no cut is cut anyway
FINGERPRINT_VERSION = 2  # in the stamp: tables converted with other fingerprints (or none) are redone


def convert_dataset(
    ws: Workspace,
    slug: str,
    options: ConvertOptions,
    *,
    workers: int = 1,
    executor: Executor | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> StageSummary:
    """Convert the dataset's records on `executor` (by default `workers` local processes)."""
    records, converted, errors = ws.records(slug), ws.converted(slug), ws.errors(slug, "convert")
    filtered = ws.filtered(slug, "convert")
    option_dict = dataclasses.asdict(options)
    stamp = Stamp.of(
        ws.stamp(slug, "convert"),
        [records],
        {**option_dict, "fingerprint": FINGERPRINT_VERSION, "chunk_rows": chunk_rows},
    )
    stored = stamp.stored([converted, errors, filtered])
    if stored is not None and stored["errors"] == 0:
        return StageSummary.from_dict(stored)
    # Failed items are retried on every run: a missing image may have arrived, a bad one been fixed.
    # Each chunk keeps its finished images, so a retry converts only what failed.
    chunks = ws.images(slug)
    _reset_images_if_options_changed(chunks, {**option_dict, "fingerprint": FINGERPRINT_VERSION})
    sweep(chunks)
    total = row_count(records)
    rows_per_chunk = chunk_size(total, chunk_rows)
    in_flight: deque[list[dict]] = deque()
    made: set[str] = set()
    chunk_folder = str(chunks.relative_to(ws.out))  # the converted table's image paths: OUT may move

    def tasks():
        for batch in slices(iter_rows(records), rows_per_chunk):
            in_flight.append(batch)
            results = results_file(chunks, batch[0]["key"])
            made.add(results.stem)
            items = tuple((row["key"], row["source_path"]) for row in batch)
            yield ChunkTask(str(results), items, options)

    with (
        table_writer(converted, RECORD_SCHEMA) as ok,
        table_writer(errors, ERROR_SCHEMA) as failed,
        table_writer(filtered, ERROR_SCHEMA) as dropped,
    ):
        executor = executor or LocalExecutor(workers)
        converted_slices = executor.map(
            convert_chunk,
            tasks(),
            desc=f"convert {slug}",
            on_crash=crashed,
        )
        for results in converted_slices:
            for row, result in zip(in_flight.popleft(), results, strict=True):
                _write(row, result, chunk_folder, ok, failed, dropped)
    sweep(chunks, keep=made)  # chunks of records no longer in the dataset
    summary = StageSummary("convert", slug, total, ok.count, failed.count, dropped.count)
    stamp.write(summary.as_dict(), [records])
    return summary


def slices(rows: Iterable[dict], rows_per_chunk: int) -> Iterator[list[dict]]:
    """Records cut into slices after each key whose hash says so (one in `rows_per_chunk`), and
    after LONGEST_SLICE times that many in a row: where the cuts fall depends on the keys around
    them, not on positions, so a record inserted or removed changes its own slice only, and the
    others (each named by its first key) keep their chunks."""
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= LONGEST_SLICE * rows_per_chunk or _cut_after(row["key"], rows_per_chunk):
            yield batch
            batch = []
    if batch:
        yield batch


def _cut_after(key: str, rows_per_chunk: int) -> bool:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % rows_per_chunk == 0


def chunk_size(total: int, chunk_rows: int) -> int:
    """Records per chunk on average: `chunk_rows`, or fewer in a dataset too small to give every
    worker many chunks (a dataset's chunks are its tasks). Depends on the dataset alone, so chunks
    do not move when the worker count or the cluster changes; a power of two, so it changes only
    when a dataset doubles or halves."""
    wanted = max(MIN_CHUNK_ROWS, -(-total // TARGET_CHUNKS))
    return min(chunk_rows, 1 << (wanted - 1).bit_length())


def _write(row: dict, result: dict, chunk_folder: str, ok, failed, dropped) -> None:
    """One record's outcome into the converted, errors or filtered table (its image's path
    relative to OUT)."""
    if result["error"] is not None:
        failed.write(error_row(row["dataset"], "convert", row["key"], row["source_path"], result["error"]))
    elif result["filtered"] is not None:
        dropped.write(
            error_row(row["dataset"], "convert", row["key"], row["source_path"], result["filtered"])
        )
    else:
        image = {field: result[field] for field in IMAGE_FIELDS}
        ok.write({**row, **image, "image_path": f"{chunk_folder}/{result['image_path']}"})


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
    convert = ctx.config.convert
    return convert_dataset(
        ctx.ws, dataset.slug, convert.options(), executor=ctx.executor, chunk_rows=convert.chunk_rows
    )


STAGE = Stage(
    name="convert",
    help="Convert source images to capped JPEGs.",
    reads=("records",),
    writes=("converted",),
    options=("workers", "max_side", "min_side", "jpeg_quality", "jpeg_optimize", "reencode", "chunk_rows"),
    run=run_convert,
)
