"""Shard stage: deduped records of all datasets -> seeded-shuffled WebDataset tars per split.

The shuffle is an external sort on a seeded hash of each key, so the order depends only on the
seed and the keys (not on input order, worker count or memory): rows are streamed into hash-range
buckets small enough to sort in memory, and shard i of a split is ranks [i*n, (i+1)*n) of the
concatenated sorted buckets. Each shard is written to a temporary name and renamed when complete;
a finished shard is never rewritten, so an interrupted build resumes to byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tarfile
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from unimed_data.build_report import write_report
from unimed_data.executor import Executor, LocalExecutor
from unimed_data.image_chunks import read_images
from unimed_data.schema import SAMPLE_JSON_FIELDS, SPLITS
from unimed_data.stages.base import Stage, StageSummary
from unimed_data.stages.shard_options import ShardOptions
from unimed_data.stamps import Stamp
from unimed_data.tables import atomic_write_text, iter_rows, table_writer, temp_path
from unimed_data.unimed_txt import txt_member
from unimed_data.wds_tar import TarWriter, add_sample, sample_members
from unimed_data.workspace import Workspace

if TYPE_CHECKING:
    from unimed_data.runner import StageContext

SAMPLE_COLUMNS = ["key", "image_path", "image_offset", "image_size", *SAMPLE_JSON_FIELDS]
INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("offset", pa.int64()),
        ("dataset", pa.string()),
        ("modality", pa.string()),
        ("caption_source", pa.string()),
    ]
)
BUCKETS_PER_SHARD = 16  # a bucket holds ~16 shards of rows: small to sort, few reads per shard
COUNT_BATCH_ROWS = 1 << 16  # rows per batch when counting splits (one small column)


@dataclass(frozen=True)
class ShardTask:
    target: str
    slices: tuple[tuple[str, int, int], ...]  # (bucket file, start, stop) in sorted bucket order
    txt_format: str
    txt_tags: tuple[tuple[str, str], ...]
    root: str  # the build folder, which the records' image paths are relative to


def shuffle_order(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")


def shard_datasets(
    ws: Workspace,
    slugs: list[str],
    options: ShardOptions,
    *,
    workers: int = 1,
    executor: Executor | None = None,
) -> dict[str, int]:
    """Write all shards on `executor` (by default `workers` local processes); returns samples per split."""
    tables = [ws.deduped(slug) for slug in slugs]
    stamp = Stamp.of(ws.shuffle / "shard.json", tables, vars(options))
    plan = ws.shuffle / "plan.txt"
    stored = stamp.stored([plan])
    if (
        stored is not None
        and plan.read_text() == stamp.digest
        and all((ws.split_dir(s) / "sizes.json").exists() for s, n in stored.items() if n)
    ):
        return stored
    _drop_shards_of_other_plans(ws, stamp.digest)
    buckets = _bucket(ws, tables, options)
    samples = {}
    for split in SPLITS:
        samples[split] = _write_split(
            ws, split, buckets.get(split, []), options, executor or LocalExecutor(workers)
        )
    stamp.write(samples)
    return samples


def _drop_shards_of_other_plans(ws: Workspace, digest: str) -> None:
    """Shards left by a different config would mix with the new ones: remove them first."""
    plan = ws.shuffle / "plan.txt"
    if plan.exists() and plan.read_text() == digest:
        return
    (ws.shuffle / "shard.json").unlink(missing_ok=True)
    for split in SPLITS:
        folder = ws.split_dir(split)
        for path in [*folder.glob("*.tar"), folder / "sizes.json", folder / "index.parquet"]:
            path.unlink(missing_ok=True)
    atomic_write_text(plan, digest)


def _bucket(ws: Workspace, tables: list[Path], options: ShardOptions) -> dict[str, list[tuple[Path, int]]]:
    """Stream rows into per-split hash-range buckets, each then sorted once by (order, key);
    returns (bucket file, rows) per split."""
    per_split = _split_counts(tables)
    unknown = set(per_split) - set(SPLITS)
    if unknown:
        raise ValueError(f"records have unknown split values {sorted(unknown)}; expected {SPLITS}")
    n_buckets = {
        s: max(1, math.ceil(n / (options.shard_size * BUCKETS_PER_SHARD))) for s, n in per_split.items()
    }
    schema = pa.schema([*_sample_schema(tables[0]), ("order", pa.uint64())])
    folder = ws.shuffle / "buckets"
    paths = {s: [folder / f"{s}-{b:05d}.parquet" for b in range(n)] for s, n in n_buckets.items()}
    with ExitStack() as stack:
        writers = {
            (split, b): stack.enter_context(table_writer(path, schema))
            for split, files in paths.items()
            for b, path in enumerate(files)
        }
        for table in tables:
            for row in iter_rows(table, SAMPLE_COLUMNS):
                order = shuffle_order(options.seed, row["key"])
                bucket = (order * n_buckets[row["split"]]) >> 64
                writers[(row["split"], bucket)].write({**row, "order": order})
    for files in paths.values():
        for path in files:
            _sort_bucket(path, rows_per_group=options.shard_size)
    return {s: [(p, writers[(s, b)].count) for b, p in enumerate(files)] for s, files in paths.items()}


def _split_counts(tables: list[Path]) -> Counter:
    """Rows per split value over all tables, counted column batch by column batch."""
    per_split = Counter()
    for table in tables:
        for batch in pq.ParquetFile(table).iter_batches(batch_size=COUNT_BATCH_ROWS, columns=["split"]):
            for item in batch.column(0).value_counts().to_pylist():
                per_split[item["values"]] += item["counts"]
    return per_split


def _sort_bucket(path: Path, rows_per_group: int) -> None:
    """Rewrite a bucket in shuffled order, in row groups of a shard's size, so a shard reads only
    the (at most two) row groups its slice of the bucket overlaps."""
    table = pq.read_table(path).sort_by([("order", "ascending"), ("key", "ascending")])
    tmp = temp_path(path)
    pq.write_table(table, tmp, row_group_size=rows_per_group)
    tmp.replace(path)


def _sample_schema(table: Path) -> pa.Schema:
    schema = pq.read_schema(table)
    return pa.schema([schema.field(name) for name in SAMPLE_COLUMNS])


def _plan_split(buckets: list[tuple[Path, int]], shard_size: int) -> list[tuple[tuple[str, int, int], ...]]:
    """Cut the concatenated sorted buckets into runs of `shard_size` rows."""
    shards: list[tuple[tuple[str, int, int], ...]] = []
    current: list[tuple[str, int, int]] = []
    room = shard_size
    for path, rows in buckets:
        start = 0
        while start < rows:
            take = min(room, rows - start)
            current.append((str(path), start, start + take))
            start += take
            room -= take
            if room == 0:
                shards.append(tuple(current))
                current, room = [], shard_size
    if current:
        shards.append(tuple(current))
    return shards


def _write_split(
    ws: Workspace, split: str, buckets: list[tuple[Path, int]], options: ShardOptions, executor: Executor
) -> int:
    folder = ws.split_dir(split)
    plan = _plan_split(buckets, options.shard_size)
    if not plan:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [
        ShardTask(
            str(folder / f"{options.prefix}-{i:06d}.tar"),
            slices,
            options.txt_format,
            options.txt_tags,
            str(ws.out),
        )
        for i, slices in enumerate(plan)
    ]
    sizes = {}
    with table_writer(folder / "index.parquet", INDEX_SCHEMA) as index:
        for task, rows in zip(
            tasks,
            executor.map(write_shard, tasks, desc=f"shard {split}", total=len(tasks)),
            strict=True,
        ):
            sizes[Path(task.target).name] = len(rows)
            for row in rows:
                index.write(row)
    atomic_write_text(folder / "sizes.json", json.dumps(sizes, indent=1))
    return sum(sizes.values())


def write_shard(task: ShardTask) -> list[dict]:
    """Write one shard (unless already complete) and return its index rows."""
    target = Path(task.target)
    if target.exists():
        return _index_existing(target)
    rows = _load_slices(task.slices)
    images = read_images(rows, Path(task.root))
    tags = dict(task.txt_tags)
    index = []
    tmp = temp_path(target)
    with TarWriter(tmp) as tar:
        for row in rows:
            index.append(
                {
                    "key": row["key"],
                    "shard": target.name,
                    "offset": tar.offset,
                    "dataset": row["dataset"],
                    "modality": row["modality"],
                    "caption_source": row["caption_source"],
                }
            )
            sample = to_sample(row, images[row["key"]], task.txt_format, tags)
            add_sample(tar, sample.pop("__key__"), sample)
    tmp.replace(target)
    return index


def to_sample(row: dict, jpeg: bytes, txt_format: str, tags: dict[str, str]) -> dict:
    """A record as a WebDataset sample: jpg, txt (the primary caption, or UniMed's form of the
    captions), and everything else as json."""
    meta = {field: row[field] for field in SAMPLE_JSON_FIELDS}
    meta["labels"] = meta["labels"] or []
    meta["uncertain_labels"] = meta["uncertain_labels"] or []
    return {
        "__key__": row["key"],
        "jpg": jpeg,
        "txt": txt_member(row, txt_format, tags).encode("utf-8"),
        "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"),
    }


def _load_slices(slices: tuple[tuple[str, int, int], ...]) -> list[dict]:
    """Rows [start, stop) of each (sorted) bucket, reading only the row groups that hold them."""
    rows: list[dict] = []
    for path, start, stop in slices:
        parquet = pq.ParquetFile(path)
        groups, first, offset = [], 0, 0
        for i in range(parquet.num_row_groups):
            n = parquet.metadata.row_group(i).num_rows
            if offset < stop and offset + n > start:
                first = first if groups else offset
                groups.append(i)
            offset += n
        table = parquet.read_row_groups(groups)
        rows.extend(table.slice(start - first, stop - start).to_pylist())
    return rows


def _index_existing(target: Path) -> list[dict]:
    """Index rows of a finished shard, read from its tar headers and json members."""
    rows = []
    with tarfile.open(target) as tar:
        for key, members in sample_members(tar).items():
            meta = json.loads(tar.extractfile(members["json"]).read())
            rows.append(
                {
                    "key": key,
                    "shard": target.name,
                    "offset": min(member.offset for member in members.values()),
                    "dataset": meta["dataset"],
                    "modality": meta["modality"],
                    "caption_source": meta["caption_source"],
                }
            )
    return rows


def run_shard(ctx: StageContext, _: None) -> StageSummary:
    """Shard the whole build, then write its errors, stats.json and card (kept on `ctx.stats`)."""
    before = _published_files(ctx.ws)
    slugs = [d.slug for d in ctx.datasets]
    tags = {d.manifest.name: d.manifest.unimed_tag for d in ctx.datasets if d.manifest.unimed_tag}
    options = replace(ctx.config.shard.options(ctx.config.seed), txt_tags=tuple(sorted(tags.items())))
    samples = sum(shard_datasets(ctx.ws, slugs, options, executor=ctx.executor).values())
    ctx.stats = write_report(ctx, tags)
    unchanged = _published_files(ctx.ws) == before
    if unchanged:
        print(f"nothing to do: {ctx.ws.out} was already up to date; no file was rewritten", file=sys.stderr)
    return StageSummary("shard", "*", samples, samples, 0, skipped=unchanged)


def _published_files(ws: Workspace) -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file a build publishes (not its work folder)."""
    folders = [ws.out, *(ws.split_dir(s) for s in SPLITS)]
    files = [p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.is_file()]
    return sorted((str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in files)


STAGE = Stage(
    name="shard",
    help="Write WebDataset shards, sizes.json, index, stats and card.",
    reads=("deduped",),
    writes=("stats", "all_errors", "card"),
    options=("workers", "seed", "shard_size", "txt_format", "max_error_rate"),
    run=run_shard,
    per_dataset=False,
)
