"""Convert stage: every record's source file becomes a capped JPEG, in parallel, resumably.

Each image is written atomically under its key, so a killed run leaves only complete images;
a rerun re-reads those instead of decoding again. The table is streamed in batches and the pool
is fed in windows, so memory does not grow with the dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from unimed_data.imaging import ConvertOptions, ImageError, convert_file
from unimed_data.parallel import ordered_map
from unimed_data.schema import ERROR_SCHEMA, RECORD_SCHEMA
from unimed_data.stages.summary import StageSummary
from unimed_data.stamps import fingerprint, read_stamp, write_stamp
from unimed_data.tables import atomic_write_bytes, atomic_write_text, iter_rows, row_count, table_writer
from unimed_data.workspace import Workspace


@dataclass(frozen=True)
class ConvertTask:
    source: str
    target: str
    options: ConvertOptions


@dataclass(frozen=True)
class ConvertResult:
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    error: str | None = None


def convert_one(task: ConvertTask) -> ConvertResult:
    """Convert one file, or describe why it cannot be; never raises for bad input."""
    target = Path(task.target)
    if target.exists():
        data = target.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        return ConvertResult(width, height, hashlib.sha256(data).hexdigest())
    source = Path(task.source)
    try:
        if not source.is_file():
            return ConvertResult(error="file not found")
        encoded = convert_file(source, task.options)
    except ImageError as exc:
        return ConvertResult(error=str(exc))
    except OSError as exc:
        return ConvertResult(error=f"cannot read file: {exc.strerror or exc}")
    atomic_write_bytes(target, encoded.jpeg)
    return ConvertResult(encoded.width, encoded.height, hashlib.sha256(encoded.jpeg).hexdigest())


def convert_dataset(ws: Workspace, slug: str, options: ConvertOptions, *, workers: int) -> StageSummary:
    records, converted, errors = ws.records(slug), ws.converted(slug), ws.errors(slug, "convert")
    stamp = ws.dataset_dir(slug) / "convert.json"
    option_dict = dataclasses.asdict(options)
    digest = fingerprint([records], option_dict)
    if (stored := read_stamp(stamp, digest, [converted, errors])) is not None:
        return StageSummary.from_dict(stored)
    _reset_images_if_options_changed(ws.images(slug), option_dict)

    total = row_count(records)
    in_flight: deque[dict] = deque()

    def tasks():
        for row in iter_rows(records):
            in_flight.append(row)
            yield ConvertTask(row["source_path"], str(ws.image_file(slug, row["key"])), options)

    with table_writer(converted, RECORD_SCHEMA) as ok, table_writer(errors, ERROR_SCHEMA) as failed:
        for result in ordered_map(convert_one, tasks(), workers=workers, desc=f"convert {slug}", total=total):
            row = in_flight.popleft()
            if result.error is None:
                image = str(ws.image_file(slug, row["key"]))
                ok.write(
                    {
                        **row,
                        "image_path": image,
                        "width": result.width,
                        "height": result.height,
                        "sha256": result.sha256,
                    }
                )
            else:
                failed.write(
                    {
                        "dataset": row["dataset"],
                        "stage": "convert",
                        "key": row["key"],
                        "source_path": row["source_path"],
                        "reason": result.error,
                    }
                )
    summary = StageSummary("convert", slug, total, ok.count, failed.count)
    write_stamp(stamp, digest, summary.as_dict())
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
