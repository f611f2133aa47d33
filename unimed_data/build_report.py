"""What a finished build publishes beside its shards: all errors, stats.json (with the per-node
figures of stages run on a cluster) and the dataset card."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from unimed_data.card import SourceInfo, write_card
from unimed_data.executor_figures import collect, figures_dir
from unimed_data.stats import collect_errors, compute_stats, write_stats
from unimed_data.workspace import Workspace

if TYPE_CHECKING:
    from unimed_data.pipeline import Dataset
    from unimed_data.runner import StageContext


def write_report(ctx: StageContext, tags: dict[str, str]) -> dict:
    """Collect the errors, write stats.json and README.md; returns the stats."""
    config, ws, datasets = ctx.config, ctx.ws, ctx.datasets
    slugs = [d.slug for d in datasets]
    collect_errors(ws, slugs, ctx.stage_names)
    stats = compute_stats(
        ws,
        slugs,
        stages=ctx.stage_names,
        filtered={slug: _ingest_filtered(ws, slug) for slug in slugs},
        config={"seed": config.seed, **config.shard.model_dump(), **({"txt_tags": tags} if tags else {})},
        reference=reference_counts(config.reference, datasets, ctx.left_out),
    )
    if figures := collect(figures_dir(ws.work)):  # per-node figures of the stages run on a cluster
        stats["executor"] = figures
    write_stats(ws, stats)
    sources = [
        SourceInfo(
            d.slug,
            d.manifest.name,
            d.manifest.modality,
            d.manifest.license,
            d.manifest.homepage,
            d.manifest.citation,
        )
        for d in datasets
    ]
    write_card(ws, stats, sources, config.shard.prefix)
    return stats


def reference_counts(name: str, datasets: list[Dataset], left_out: list[tuple[Dataset, str]]) -> dict | None:
    """Each part's count in the reference corpus (the config's `expected_samples`), with the reason
    a part was not built; None when the config gives no counts."""
    parts = {
        dataset.manifest.name: {"expected": dataset.expected, "missing": reason}
        for dataset, reason in [*((d, None) for d in datasets), *left_out]
        if dataset.expected is not None
    }
    return {"name": name, "parts": parts} if parts else None


def _ingest_filtered(ws: Workspace, slug: str) -> int:
    """Rows ingest left out on purpose, and rows merged into an earlier row's image."""
    if not ws.stamp(slug, "ingest").exists():
        return 0
    summary = json.loads(ws.stamp(slug, "ingest").read_text()).get("summary", {})
    return summary.get("filtered", 0) + summary.get("merged", 0)
