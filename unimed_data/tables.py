"""Parquet I/O with atomic publication: tables appear complete or not at all."""

from __future__ import annotations

import filecmp
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 2048


def temp_path(path: Path) -> Path:
    """The in-progress name of a file; it is renamed onto `path` only once complete."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temp name; an unchanged file is left as it was (see `publish`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_bytes(data)
    publish(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class RowWriter:
    """Buffers dict rows and writes them to Parquet in bounded batches."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema):
        self._writer = writer
        self._schema = schema
        self._buffer: list[dict] = []
        self.count = 0

    def write(self, row: dict) -> None:
        self._buffer.append(row)
        self.count += 1
        if len(self._buffer) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self._schema))
        self._buffer = []


@contextmanager
def table_writer(path: Path, schema: pa.Schema) -> Iterator[RowWriter]:
    """Stream rows into `path`; the file is published only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    writer = pq.ParquetWriter(tmp, schema)
    rows = RowWriter(writer, schema)
    try:
        yield rows
        rows.flush()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    publish(tmp, path)


def publish(tmp: Path, path: Path) -> None:
    """Rename `tmp` onto `path`, unless `path` already holds the same bytes.

    Keeping an identical file untouched keeps its modification time, which the stamps of the
    stages downstream depend on: a rerun that changes nothing then redoes nothing downstream.
    `filecmp.cmp` compares sizes before bytes; its cache is keyed by path and stat signature,
    and temp names are reused (same pid), so it is cleared to never answer from an old file.
    """
    filecmp.clear_cache()
    if path.exists() and filecmp.cmp(tmp, path, shallow=False):
        tmp.unlink()
    else:
        os.replace(tmp, path)


def write_rows(path: Path, schema: pa.Schema, rows: Iterable[dict]) -> int:
    """Write dict rows in bounded batches; returns the row count."""
    with table_writer(path, schema) as writer:
        for row in rows:
            writer.write(row)
    return writer.count


def iter_rows(path: Path, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a Parquet file as dicts, read batch by batch so memory stays flat."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield from batch.to_pylist()


def row_count(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows
