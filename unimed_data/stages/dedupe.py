"""Dedupe stage: no image twice, and no protected evaluation image, in the corpus.

Runs once on the whole build, between caption and shard: captioned tables in, `deduped` tables out,
plus `OUT/duplicates.parquet` (each dropped copy and the sample it joined) and
`OUT/contamination.parquet` (each item removed for meeting a protected evaluation image). Every
input row is a sample, a duplicate or a contamination row, so counts still add up.

Kept member of a group: the dataset listed first in `dedupe.priority` (unlisted ones after, in
build order), then the smallest key. The dropped members' differing captions join the kept one.
"""

from __future__ import annotations

import sys
import tempfile
from array import array
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from unimed_data import dedupe_match as match
from unimed_data.imaging.thumb_compare import THUMB_SIDE
from unimed_data.protect import Protected, path_tail, read_specs
from unimed_data.schema import RECORD_SCHEMA
from unimed_data.stages.base import Stage, StageSummary
from unimed_data.stamps import Stamp
from unimed_data.tables import iter_rows, row_count, table_writer, write_rows

if TYPE_CHECKING:
    from unimed_data.runner import StageContext

NAME = "dedupe"
DUPLICATE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("dataset", pa.string()),
        ("source_path", pa.string()),
        ("kept_key", pa.string()),
        ("kept_dataset", pa.string()),
        ("distance", pa.int16()),
        ("kind", pa.string()),
    ]
)
CONTAMINATION_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("dataset", pa.string()),
        ("source_path", pa.string()),
        ("eval_set", pa.string()),
        ("eval_key", pa.string()),
        ("kind", pa.string()),
        ("distance", pa.int16()),
    ]
)
KIND_ORDER = {"path": 0, "exact": 1, "near": 2}
THUMB_BYTES = THUMB_SIDE * THUMB_SIDE


def _int64(values: array) -> np.ndarray:
    return np.frombuffer(values, np.int64) if values else np.zeros(0, np.int64)


class Tables:
    """The build's captioned tables as one numbered sequence of rows."""

    def __init__(self, paths: list[Path], thumb_file: Path):
        self.paths = paths
        self.offsets = np.cumsum([0, *(row_count(path) for path in paths)])
        self.thumb_file = thumb_file  # every row's thumbnail, THUMB_BYTES each, in row order
        self.thumbs: np.ndarray | None = None

    def scan(self) -> match.Corpus:
        """The fingerprint arrays of every row, batch by batch: 8-byte typed arrays, so memory is
        about 33 bytes a row whatever the tables hold."""
        pixels, tails, series = array("q"), array("q"), array("q")
        phash, has = [], []
        thumbs = self.thumb_file.open("wb")
        for table, path in enumerate(self.paths):
            columns = ["pixels_sha256", "phash", "source_path", "patient_id", "thumb"]
            if "phash" not in pq.read_schema(path).names:
                raise ValueError(
                    f"{path}: written by an older unimed-data, without image fingerprints; "
                    "rerun `convert` and `caption` (or the whole build)"
                )
            for batch in pq.ParquetFile(path).iter_batches(columns=columns):
                pixels.extend(match.digest64(d) for d in batch.column("pixels_sha256").to_pylist())
                tails.extend(match.text64(path_tail(p)) for p in batch.column("source_path").to_pylist())
                series.extend(
                    match.text64(f"{table}/{patient}") if patient else 0
                    for patient in batch.column("patient_id").to_pylist()
                )
                for thumb in batch.column("thumb").to_pylist():
                    thumbs.write(thumb if thumb and len(thumb) == THUMB_BYTES else bytes(THUMB_BYTES))
                hashes = batch.column("phash")
                has.append(hashes.is_valid().to_numpy(zero_copy_only=False))
                phash.append(hashes.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64))
        thumbs.close()
        rows = int(self.offsets[-1])
        self.thumbs = np.memmap(self.thumb_file, np.uint8, "r", shape=(rows, THUMB_BYTES)) if rows else None
        return match.Corpus(
            _int64(pixels),
            np.concatenate(phash) if phash else np.zeros(0, np.int64),
            _int64(tails),
            np.concatenate(has) if has else np.zeros(0, bool),
            _int64(series),
        )

    def fetch(self, rows: set[int], columns: list[str]) -> dict[int, dict]:
        """The `columns` of `rows`, read in one pass (none when no row is asked for)."""
        found: dict[int, dict] = {}
        if not rows:
            return found
        wanted = np.array(sorted(rows), dtype=np.int64)
        for table, path in enumerate(self.paths):
            start = self.offsets[table]
            for batch in pq.ParquetFile(path).iter_batches(columns=columns):
                end = start + batch.num_rows
                here = wanted[(wanted >= start) & (wanted < end)]
                if len(here):
                    picked = batch.take(pa.array(here - start)).to_pylist()
                    found.update(zip(here.tolist(), picked, strict=True))
                start = end
        return found

    def thumb(self, row: int) -> bytes | None:
        """A row's thumbnail, from the file `scan` wrote (read on demand: memory holds none)."""
        data = bytes(self.thumbs[row])
        return data if any(data) else None


def contamination(
    tables: Tables, index: match.CorpusIndex, protected: list[Protected], settings
) -> dict[int, tuple[Protected, str, int]]:
    """Each corpus row that meets a protected image: (that image, match kind, distance)."""
    hits: dict[int, tuple[Protected, str, int]] = {}
    near: list[tuple[int, Protected, bytes, int]] = []
    owners, hashes, thumbs = [], [], []
    for image in protected:
        if image.path_tail is not None:
            for row in index.same("tails", match.text64(image.path_tail)):
                _hit(hits, int(row), image, "path", 0)
        for row in index.same("pixels", match.digest64(image.pixels)):
            _hit(hits, int(row), image, "exact", 0)
        for phash, thumb in image.variants:
            owners.append(image)
            hashes.append(phash)
            thumbs.append(thumb)
    queries = np.array(hashes, dtype=np.int64)
    for query, value, distance in index.index.search(queries, settings.radius):
        for q, v, d in zip(query, value, distance, strict=True):
            near.extend((int(row), owners[q], thumbs[q], int(d)) for row in index.rows_of_value(int(v)))
    for row, image, thumb, distance in near:
        theirs = tables.thumb(row)
        if theirs is not None and match.thumb_difference(thumb, theirs) <= settings.max_thumb_difference:
            _hit(hits, row, image, "near", distance)
    return _real_path_hits(tables, hits)


def _hit(hits: dict, row: int, image: Protected, kind: str, distance: int) -> None:
    """Keep the strongest match of a row (path, then exact, then the nearest), deterministically."""
    candidate = (image, kind, distance)
    rank = (KIND_ORDER[kind], distance, image.eval_set, image.eval_key)
    held = hits.get(row)
    if held is None or rank < (KIND_ORDER[held[1]], held[2], held[0].eval_set, held[0].eval_key):
        hits[row] = candidate


def _real_path_hits(tables: Tables, hits: dict) -> dict:
    """A path match where both files exist and differ in size is two files that share a name."""
    paths = tables.fetch({row for row, (_, kind, _) in hits.items() if kind == "path"}, ["source_path"])
    kept = {}
    for row, (image, kind, distance) in hits.items():
        if kind == "path" and _sizes_differ(paths[row]["source_path"], image.path):
            continue
        kept[row] = (image, kind, distance)
    return kept


def _sizes_differ(a: str, b: str) -> bool:
    try:
        return Path(a).stat().st_size != Path(b).stat().st_size
    except OSError:
        return False


def _fingerprints(sources: list, executor) -> list[Protected]:
    """The protected images' fingerprints; the decoders load here, not at start-up."""
    from unimed_data.protect_fingerprint import fingerprint_all

    return list(fingerprint_all(sources, executor))


def run_dedupe(ctx: StageContext, _: None) -> StageSummary:
    settings, ws = ctx.config.dedupe, ctx.ws
    slugs = [d.slug for d in ctx.datasets]
    tables = Tables([ws.captioned(slug) for slug in slugs], ws.work / "dedupe-thumbs.bin")
    sources = []
    convert_options = ctx.config.convert.options()
    if settings.enabled:
        with tempfile.TemporaryDirectory(prefix="unimed-protect-") as scratch:
            sources = read_specs(
                settings.protect, ctx.config.root, convert_options, Path(scratch), seed=ctx.config.seed
            )
    inputs = [*tables.paths, *(path for source in sources for path in source.inputs)]
    options = {
        **settings.model_dump(mode="json"),
        "slugs": slugs,
        "convert": vars(convert_options),
    }
    stamp = Stamp.of(ws.build_stamp(NAME), inputs, options)
    outputs = [*(ws.deduped(slug) for slug in slugs), ws.duplicates, ws.contamination]
    stored = stamp.stored(outputs)
    if stored is not None:
        return StageSummary(NAME, "*", stored["inputs"], stored["outputs"], 0, stored["filtered"], True)
    protected = _fingerprints(sources, ctx.executor) if settings.enabled else []
    try:
        summary = dedupe(ctx, tables, slugs, protected)
    finally:
        tables.thumbs = None  # the memory map closes with its last reference
        tables.thumb_file.unlink(missing_ok=True)
    summary["protected"] = _protected_counts(sources, protected, summary.pop("removed_by_set"))
    summary["enabled"] = settings.enabled
    stamp.write(summary, tables.paths)
    removed = summary["filtered"]
    if removed:
        print(
            f"dedupe: {removed} items removed (see duplicates.parquet, contamination.parquet)",
            file=sys.stderr,
        )
    return StageSummary(NAME, "*", summary["inputs"], summary["outputs"], 0, removed)


def _protected_counts(sources, protected: list[Protected], removed: dict[str, int]) -> dict:
    """Per protected set: its images, those that could not be read, and the corpus items removed."""
    counts = {
        source.name: {"images": 0, "unreadable": 0, "removed": removed.get(source.name, 0)}
        for source in sources
    }
    for image in protected:
        counts[image.eval_set]["images"] += 1
        counts[image.eval_set]["unreadable"] += image.pixels is None
    return counts


def dedupe(ctx: StageContext, tables: Tables, slugs: list[str], protected: list[Protected]) -> dict:
    """Find, choose and write; returns the counts for the stamp and the stats."""
    settings = ctx.config.dedupe
    rows = np.arange(tables.offsets[-1])
    hits: dict = {}
    pairs: list[match.Pair] = []
    corpus = None
    if settings.enabled and len(rows):
        corpus = tables.scan()
        index = match.CorpusIndex(corpus, rows)
        hits = contamination(tables, index, protected, settings)
        if hits:  # the rest, indexed again: a removed row must not be the link of a group
            index = match.CorpusIndex(corpus, np.setdiff1d(rows, np.fromiter(hits, np.int64)))
        candidates = match.across_series(corpus, index.near_candidates(settings.radius))
        pairs = index.exact_pairs() + match.confirmed(candidates, tables.thumb, settings.max_thumb_difference)
    grouped = match.groups(len(rows), pairs)
    wanted = set(hits) | {row for members in grouped.values() for row in members}
    info = tables.fetch(wanted, ["key", "dataset", "source_path", "captions"])
    rank = {name: i for i, name in enumerate(settings.priority)}
    table_of = np.searchsorted(tables.offsets, rows, "right") - 1

    def order(row: int):
        return (rank.get(info[row]["dataset"], len(rank)), int(table_of[row]), info[row]["key"])

    dropped: dict[int, tuple[int, int, str]] = {}
    merged: dict[int, list[str]] = defaultdict(list)
    for members in grouped.values():
        kept, *others = sorted(members, key=order)
        for row in others:
            same = corpus.pixels[row] == corpus.pixels[kept] != 0
            dropped[row] = (
                kept,
                0 if same else match.hamming(corpus.phash[row], corpus.phash[kept]),
                "exact" if same else "near",
            )
            merged[kept].extend(info[row]["captions"] or [])
    return _write(ctx.ws, tables, slugs, info, hits, dropped, merged)


def _write(ws, tables: Tables, slugs: list[str], info: dict, hits: dict, dropped: dict, merged: dict) -> dict:
    """The deduped tables and the two reports; returns the counts."""
    counts = {slug: {"inputs": 0, "duplicates": 0, "contaminated": 0, "captions_merged": 0} for slug in slugs}
    row = 0
    for slug, path in zip(slugs, tables.paths, strict=True):
        with table_writer(ws.deduped(slug), RECORD_SCHEMA) as out:
            for record in iter_rows(path):
                counts[slug]["inputs"] += 1
                if row in hits:
                    counts[slug]["contaminated"] += 1
                elif row in dropped:
                    counts[slug]["duplicates"] += 1
                else:
                    if row in merged:
                        captions = list(dict.fromkeys([*(record["captions"] or []), *merged[row]]))
                        counts[slug]["captions_merged"] += len(captions) - len(record["captions"] or [])
                        record = {**record, "captions": captions}
                    out.write(record)
                row += 1
    duplicates = [_duplicate_row(info, row, *how) for row, how in dropped.items()]
    contaminated = [_contamination_row(info, row, *how) for row, how in hits.items()]
    write_rows(ws.duplicates, DUPLICATE_SCHEMA, sorted(duplicates, key=lambda d: (d["dataset"], d["key"])))
    write_rows(
        ws.contamination, CONTAMINATION_SCHEMA, sorted(contaminated, key=lambda d: (d["dataset"], d["key"]))
    )
    inputs = sum(c["inputs"] for c in counts.values())
    removed = len(dropped) + len(hits)
    by_set: dict[str, int] = defaultdict(int)
    for row in contaminated:
        by_set[row["eval_set"]] += 1
    return {
        "inputs": inputs,
        "outputs": inputs - removed,
        "filtered": removed,
        "datasets": counts,
        "removed_by_set": dict(sorted(by_set.items())),
    }


def _duplicate_row(info: dict, row: int, kept: int, distance: int, kind: str) -> dict:
    return {
        **{field: info[row][field] for field in ("key", "dataset", "source_path")},
        "kept_key": info[kept]["key"],
        "kept_dataset": info[kept]["dataset"],
        "distance": distance,
        "kind": kind,
    }


def _contamination_row(info: dict, row: int, image: Protected, kind: str, distance: int) -> dict:
    return {
        **{field: info[row][field] for field in ("key", "dataset", "source_path")},
        "eval_set": image.eval_set,
        "eval_key": image.eval_key,
        "kind": kind,
        "distance": distance,
    }


STAGE = Stage(
    name=NAME,
    help="Remove duplicate images and protected evaluation images (--protect).",
    reads=("captioned",),
    writes=("deduped",),
    options=("workers", "protect", "dedupe"),
    run=run_dedupe,
    per_dataset=False,
)
