"""`unimed-data validate`: re-read every shard with webdataset and check it against the metadata.

Every image is decoded, every json parsed, every key checked, and the counts compared with
`sizes.json`, the index and `stats.json`. Problems are collected (not raised) so one run names
all of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

from unimed_data.parallel import ordered_map
from unimed_data.schema import SAMPLE_JSON_FIELDS, SPLITS, dataset_slug
from unimed_data.stats import load_stats
from unimed_data.unimed_txt import TXT_FORMATS, txt_member
from unimed_data.workspace import Workspace

KEY_PATTERN = re.compile(r"^[a-z0-9_-]+$")
REQUIRED_MEMBERS = {"jpg", "txt", "json"}
REQUIRED_JSON = set(SAMPLE_JSON_FIELDS) - {"report"}  # builds made before json carried the report
_TXT_PROBLEM = {
    "plain": "txt is not the first of json.captions",
    "unimed": "txt is not json.captions (with json.report) in UniMed's tagged form",
}


@dataclass
class ShardReport:
    shard: str
    samples: int = 0
    key_hashes: list[int] = field(default_factory=list)
    per_dataset: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def check_shard(args: tuple[str, str, str, dict[str, str]]) -> ShardReport:
    """Check every sample of the shard at `path` in `split`, whose `txt` is in `txt_format`."""
    path, split, txt_format, tags = args
    report = ShardReport(Path(path).name)
    where = f"{split}/{report.shard}"

    def problem(message: str) -> None:
        report.problems.append(f"{where}: {message}")

    try:
        for sample in wds.WebDataset(path, shardshuffle=False):
            key = sample["__key__"]
            report.samples += 1
            report.key_hashes.append(
                int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
            )
            meta = _json_or_none(sample.get("json"))  # parsed once, for the checks and the tally
            for message in _check_sample(sample, split, meta, txt_format, tags):
                problem(f"sample {key}: {message}")
            if meta is not None and "dataset" in meta:
                report.per_dataset[dataset_slug(meta["dataset"])] += 1
    except Exception as exc:  # a truncated or corrupt tar: report it and move on
        problem(f"unreadable shard after {report.samples} samples: {type(exc).__name__}: {exc}")
    return report


def _check_sample(sample: dict, split: str, meta, txt_format: str, tags: dict[str, str]) -> list[str]:
    """What is wrong with one sample; `meta` is its json member parsed (None if absent or invalid)."""
    problems = []
    key = sample["__key__"]
    if not KEY_PATTERN.match(key):
        problems.append("key has characters other than a-z, 0-9, '_' and '-'")
    members = {k for k in sample if not k.startswith("__")}
    if missing := REQUIRED_MEMBERS - members:
        problems.append(f"missing members {sorted(missing)}")
        return problems
    if meta is None or not isinstance(meta, dict):
        return [*problems, "json is not a JSON object"]
    if missing := REQUIRED_JSON - set(meta):
        problems.append(f"json lacks fields {sorted(missing)}")
        return problems
    captions = meta["captions"]
    if (
        not isinstance(captions, list)
        or not captions
        or not all(isinstance(c, str) and c.strip() for c in captions)
    ):
        problems.append("json.captions must be a non-empty list of non-empty strings")
    elif not isinstance(meta["dataset"], str) or not isinstance(meta["report"], str | None):
        problems.append("json.dataset must be a string and json.report a string or null")
    elif sample["txt"].decode("utf-8", "replace") != txt_member(meta, txt_format, tags):
        problems.append(_TXT_PROBLEM[txt_format])
    if meta["split"] != split:
        problems.append(f"json.split is {meta['split']!r} but the shard is in {split!r}")
    try:
        with Image.open(io.BytesIO(sample["jpg"])) as image:
            image.load()
            if image.format != "JPEG":
                problems.append(f"jpg is {image.format}, not JPEG")
            if image.size != (meta["width"], meta["height"]):
                problems.append(f"image is {image.size}, json says {(meta['width'], meta['height'])}")
    except Exception as exc:
        problems.append(f"jpg does not decode: {exc}")
    return problems


def _json_or_none(data: bytes | None):
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def _check_split_folders(
    ws: Workspace, stats: dict, txt_format: str, tags: dict
) -> tuple[list[str], list[tuple[str, str, str, dict[str, str]]], dict[tuple[str, str], int]]:
    """Each split's sizes.json/index problems and the shards left to check, before any is opened."""
    problems: list[str] = []
    tasks: list[tuple[str, str, str, dict[str, str]]] = []
    sizes_by_shard: dict[tuple[str, str], int] = {}
    for split in SPLITS:
        folder = ws.split_dir(split)
        sizes_path = folder / "sizes.json"
        expected = stats["splits"].get(split)
        if not sizes_path.exists():
            if expected:
                problems.append(
                    f"{split}/sizes.json missing but stats.json lists {expected['samples']} samples"
                )
            continue
        sizes = json.loads(sizes_path.read_text())
        on_disk = {p.name for p in folder.glob("*.tar")}
        for name in sorted(on_disk - set(sizes)):
            problems.append(f"{split}/{name}: shard not listed in sizes.json")
        for name in sorted(set(sizes) - on_disk):
            problems.append(f"{split}/{name}: listed in sizes.json but missing")
        for name in sorted(set(sizes) & on_disk):
            tasks.append((str(folder / name), split, txt_format, tags))
            sizes_by_shard[(split, name)] = sizes[name]
        if expected is None or expected["samples"] != sum(sizes.values()):
            problems.append(f"{split}: sizes.json sums to {sum(sizes.values())}, stats.json says {expected}")
        index = folder / "index.parquet"
        if not index.exists() or pq.ParquetFile(index).metadata.num_rows != sum(sizes.values()):
            problems.append(f"{split}/index.parquet missing or its row count differs from sizes.json")
    return problems, tasks, sizes_by_shard


def validate_output(out: Path, *, workers: int = 1) -> list[str]:
    """All problems found in the output folder `out`; empty when everything holds."""
    ws = Workspace(out)
    try:
        stats = load_stats(out)
    except (FileNotFoundError, ValueError) as exc:
        return [str(exc)]
    txt_format = stats.get("config", {}).get("txt_format", "plain")  # builds before it: plain
    tags = stats.get("config", {}).get("txt_tags", {})
    if txt_format not in TXT_FORMATS:
        return [f"stats.json: config.txt_format is {txt_format!r}, not one of {', '.join(TXT_FORMATS)}"]
    problems, tasks, sizes_by_shard = _check_split_folders(ws, stats, txt_format, tags)

    per_dataset: Counter = Counter()
    hashes: list[np.ndarray] = []
    for (_, split, _, _), report in zip(
        tasks,
        ordered_map(check_shard, tasks, workers=workers, desc="validate", total=len(tasks)),
        strict=True,
    ):
        problems.extend(report.problems)
        expected = sizes_by_shard[(split, report.shard)]
        if report.samples != expected:
            problems.append(f"{split}/{report.shard}: {report.samples} samples, sizes.json says {expected}")
        per_dataset.update(report.per_dataset)
        hashes.append(np.asarray(report.key_hashes, dtype=np.uint64))
    all_hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
    if (duplicates := all_hashes.size - np.unique(all_hashes).size) > 0:
        problems.append(f"{duplicates} duplicate keys across shards")
    for slug, info in stats["datasets"].items():
        if per_dataset.get(slug, 0) != info["samples"]:
            problems.append(
                f"dataset {slug}: {per_dataset.get(slug, 0)} samples in shards, stats.json says {info['samples']}"
            )
    if not stats["totals"]["balanced"]:
        problems.append("stats.json: inputs != samples + errors + filtered (items were lost)")
    return problems
