"""Build accounting: stats.json, the combined errors table, and the readable stats table.

Counts come from the tables themselves (records, error tables, shard indexes), not from
in-memory tallies, so `stats` and `validate` can re-derive them from any finished output folder.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from rich.text import Text

from unimed_data import terminal
from unimed_data.captions.accounting import Usage
from unimed_data.schema import ERROR_SCHEMA, SPLITS, dataset_slug
from unimed_data.tables import atomic_write_text, iter_rows, row_count, table_writer
from unimed_data.workspace import Workspace


def collect_errors(ws: Workspace, slugs: list[str], stages: Sequence[str]) -> int:
    """Concatenate every stage's error table (`stages` in pipeline order) into OUT/errors.parquet;
    returns the row count."""
    with table_writer(ws.all_errors, ERROR_SCHEMA) as out:
        for slug in slugs:
            for stage in stages:
                path = ws.errors(slug, stage)
                if path.exists():
                    for row in iter_rows(path):
                        out.write(row)
    return out.count


def _dataset_counts(
    ws: Workspace, slugs: list[str], filtered: dict[str, int], stages: Sequence[str], deduped: dict
) -> tuple[dict[str, dict], Counter]:
    """Per-dataset inputs/records/filtered/errors from the tables (and what dedupe removed, from
    its summary), kept apart from split counting."""
    datasets: dict[str, dict] = {}
    errors_by_stage: Counter = Counter()
    for slug in slugs:
        errors = {}
        for stage in stages:
            path = ws.errors(slug, stage)
            errors[stage] = row_count(path) if path.exists() else 0
            errors_by_stage[stage] += errors[stage]
        records = row_count(ws.records(slug))
        dropped = ws.filtered(slug, "convert")
        by_rule = row_count(dropped) if dropped.exists() else 0
        removed = deduped.get(slug, {})
        datasets[slug] = {
            "inputs": records + errors["ingest"] + filtered.get(slug, 0),
            "records": records,
            "filtered": filtered.get(slug, 0) + by_rule,
            "duplicates": removed.get("duplicates", 0),
            "contaminated": removed.get("contaminated", 0),
            "captions_merged": removed.get("captions_merged", 0),
            "errors": {k: v for k, v in errors.items() if v},
            "samples": 0,
            "splits": {},
        }
    return datasets, errors_by_stage


def _dedupe_summary(ws: Workspace) -> dict:
    """What the dedupe stage recorded: per dataset what it removed, and the protected sets."""
    stamp = ws.build_stamp("dedupe")
    return json.loads(stamp.read_text())["summary"] if stamp.exists() else {}


def _split_counts(ws: Workspace, datasets: dict[str, dict]) -> tuple[dict[str, dict], Counter, Counter]:
    """Per-split totals from the shard indexes, adding each dataset's samples into `datasets` in place."""
    splits: dict[str, dict] = {}
    modalities: Counter = Counter()
    sources: Counter = Counter()
    slug_of: dict[str, str] = {}
    for split in SPLITS:
        index = ws.split_dir(split) / "index.parquet"
        if not index.exists():
            continue
        sizes = json.loads((ws.split_dir(split) / "sizes.json").read_text())
        splits[split] = {"samples": sum(sizes.values()), "shards": len(sizes)}
        # Counted per distinct (dataset, modality, caption source) by Arrow, not row by row in Python.
        columns = ["dataset", "modality", "caption_source"]
        groups = pq.read_table(index, columns=columns).group_by(columns).aggregate([([], "count_all")])
        for group in groups.to_pylist():
            n = group["count_all"]
            if group["dataset"] not in slug_of:
                slug_of[group["dataset"]] = dataset_slug(group["dataset"])
            info = datasets[slug_of[group["dataset"]]]
            info["samples"] += n
            info["splits"][split] = info["splits"].get(split, 0) + n
            modalities[group["modality"]] += n
            sources[group["caption_source"]] += n
    return splits, modalities, sources


def _llm_usage(ws: Workspace, slugs: list[str]) -> Usage:
    """The LLM captioning usage summed over every dataset that recorded one."""
    llm = Usage()
    for slug in slugs:
        usage = ws.llm_usage(slug)
        if usage.exists():
            llm = llm.merged(json.loads(usage.read_text()))
    return llm


def compute_stats(
    ws: Workspace,
    slugs: list[str],
    *,
    stages: Sequence[str],
    filtered: dict[str, int],
    config: dict,
    reference: dict | None = None,
) -> dict:
    """The build's counts (errors of `stages`, in pipeline order); with `reference` ({"name",
    "parts": {dataset name: {"expected", "missing"}}}), also each part's samples against the
    reference corpus's count."""
    dedupe = _dedupe_summary(ws)
    datasets, errors_by_stage = _dataset_counts(ws, slugs, filtered, stages, dedupe.get("datasets", {}))
    splits, modalities, sources = _split_counts(ws, datasets)
    for info in datasets.values():
        removed = info["filtered"] + info["duplicates"] + info["contaminated"]
        info["balanced"] = info["inputs"] == info["samples"] + sum(info["errors"].values()) + removed
    samples = sum(d["samples"] for d in datasets.values())
    errors_total = sum(errors_by_stage.values())
    inputs = sum(d["inputs"] for d in datasets.values())
    filtered_total = sum(d["filtered"] for d in datasets.values())
    duplicates = sum(d["duplicates"] for d in datasets.values())
    contaminated = sum(d["contaminated"] for d in datasets.values())
    llm = _llm_usage(ws, slugs)
    stats = {
        "llm": llm.as_dict(),
        "totals": {
            "inputs": inputs,
            "samples": samples,
            "errors": errors_total,
            "filtered": filtered_total,
            "duplicates": duplicates,
            "contaminated": contaminated,
            "balanced": inputs == samples + errors_total + filtered_total + duplicates + contaminated,
        },
        "protected": dedupe.get("protected", {}),
        "dedupe": {"enabled": dedupe.get("enabled", True)},
        "splits": splits,
        "datasets": datasets,
        "modalities": dict(sorted(modalities.items())),
        "caption_sources": dict(sorted(sources.items())),
        "errors_by_stage": {s: errors_by_stage[s] for s in stages if errors_by_stage[s]},
        "config": config,
    }
    if reference is not None:  # absent otherwise, so stats.json of other builds is unchanged
        stats["reference"] = against_reference(reference, datasets)
    return stats


def against_reference(reference: dict, datasets: dict[str, dict]) -> dict:
    """Samples per reference part (all splits; 0 for a part not built) beside its expected count."""
    parts = {}
    for name, part in reference["parts"].items():
        missing = part.get("missing")
        samples = 0 if missing else datasets.get(dataset_slug(name), {}).get("samples", 0)
        parts[name] = {
            "expected": part["expected"],
            "samples": samples,
            "ratio": _ratio(samples, part["expected"]),
            "missing": missing,
        }
    expected = sum(p["expected"] for p in parts.values())
    samples = sum(p["samples"] for p in parts.values())
    return {
        "name": reference["name"],
        "parts": parts,
        "expected_total": expected,
        "samples_total": samples,
        "ratio": _ratio(samples, expected),
    }


def _ratio(samples: int, expected: int) -> float | None:
    return round(samples / expected, 4) if expected else None


def reference_rows(reference: dict) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The header and rows (parts by name, then the total) of the table of samples against the
    reference corpus, as text: the stats command and the dataset card show the same table."""
    header = ("part", "samples", f"{reference['name']}'s count", "ratio", "note")
    rows = [
        (
            name,
            str(part["samples"]),
            str(part["expected"]),
            _percent(part["ratio"]),
            f"not built: {part['missing']}" if part["missing"] else "",
        )
        for name, part in sorted(reference["parts"].items())
    ]
    total = reference["samples_total"], reference["expected_total"], _percent(reference["ratio"])
    rows.append(("total", str(total[0]), str(total[1]), total[2], ""))
    return header, rows


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2%}"


def write_stats(ws: Workspace, stats: dict) -> None:
    atomic_write_text(ws.stats, json.dumps(stats, indent=2, sort_keys=True))


def load_stats(out: Path) -> dict:
    path = Workspace(out).stats
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {out} the output folder of a finished build?")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a stats file of ours ({exc}); rerun the build's shard stage") from exc


def render_stats(stats: dict, console: Console | None = None) -> None:
    """Print the counts a person checks after a build, as tables."""
    console = console or terminal.console()
    totals = stats["totals"]
    datasets = Table(title="Samples per dataset")
    datasets.add_column("dataset", no_wrap=True, overflow="fold")
    for column in ("inputs", "samples", "errors", "filtered", *SPLITS):
        datasets.add_column(column, justify="right")
    for name, info in sorted(stats["datasets"].items()):
        datasets.add_row(
            Text(name),
            str(info["inputs"]),
            str(info["samples"]),
            str(sum(info["errors"].values())),
            str(info["filtered"]),
            *(str(info["splits"].get(split, 0)) for split in SPLITS),
        )
    terminal.print_table(console, datasets)
    if "reference" in stats:
        terminal.print_table(console, _reference_table(stats["reference"]))
    for table in _dedupe_tables(stats):
        terminal.print_table(console, table)
    tallies = (
        ("Modality", stats["modalities"]),
        ("Caption source", stats["caption_sources"]),
        ("Stage", stats["errors_by_stage"]),
    )
    for title, counts in tallies:
        what = "errors" if title == "Stage" else "samples"
        table = Table(title=f"{what.capitalize()} per {title.lower()}")
        table.add_column(title, no_wrap=True, overflow="fold")
        table.add_column(what, justify="right")
        for name, n in counts.items():
            table.add_row(Text(name), str(n))
        terminal.print_table(console, table)
    if any(stats.get("llm", {}).values()):
        console.print(Text(Usage(**stats["llm"]).line() + " (all finished caption runs of this output)"))
    splits = ", ".join(f"{s}: {v['samples']} in {v['shards']} shard(s)" for s, v in stats["splits"].items())
    console.print(Text(f"Splits: {splits or 'none'}"))
    balance = "adds up" if totals["balanced"] else "DOES NOT ADD UP"
    console.print(
        f"Inputs {totals['inputs']} = samples {totals['samples']} + errors {totals['errors']} "
        f"+ filtered {totals['filtered']} + duplicates {totals.get('duplicates', 0)} "
        f"+ contaminated {totals.get('contaminated', 0)} ({balance})"
    )


def _dedupe_tables(stats: dict) -> list[Table]:
    """What the dedupe stage removed per dataset, and per protected evaluation set; none when it
    removed nothing and protected nothing."""
    tables = []
    removed = {
        name: info
        for name, info in sorted(stats["datasets"].items())
        if info.get("duplicates") or info.get("contaminated")
    }
    if removed:
        table = Table(title="Removed by dedupe per dataset")
        table.add_column("dataset", no_wrap=True, overflow="fold")
        for column in ("duplicates", "captions merged", "contaminated"):
            table.add_column(column, justify="right")
        for name, info in removed.items():
            table.add_row(
                Text(name), str(info["duplicates"]), str(info["captions_merged"]), str(info["contaminated"])
            )
        tables.append(table)
    if stats.get("protected"):
        table = Table(title="Protected evaluation sets")
        table.add_column("set", no_wrap=True, overflow="fold")
        for column in ("images", "unreadable", "removed"):
            table.add_column(column, justify="right")
        for name, info in sorted(stats["protected"].items()):
            table.add_row(Text(name), str(info["images"]), str(info["unreadable"]), str(info["removed"]))
        tables.append(table)
    return tables


def _reference_table(reference: dict) -> Table:
    header, rows = reference_rows(reference)
    table = Table(title=f"Samples against {reference['name']}")
    table.add_column(header[0], no_wrap=True, overflow="fold")
    for column in header[1:4]:
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column(header[4], no_wrap=True, overflow="fold")
    for i, row in enumerate(rows):
        table.add_row(*(Text(cell) for cell in row), end_section=i == len(rows) - 2)  # a rule above total
    return table
