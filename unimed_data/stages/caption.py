"""Caption stage: records without captions get them from a caption backend.

Captions are requested once per unique unit (dataset, modality, labels, uncertain labels; or one
report), collected in a first streaming pass, then attached to every record in a second pass.
Records that already carry captions (existing caption sets) keep them as they are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from unimed_data.captions import Captioner, CaptionFailure, CaptionUnit
from unimed_data.schema import ERROR_SCHEMA, RECORD_SCHEMA, error_row
from unimed_data.stages.base import Stage, StageSummary
from unimed_data.stamps import Stamp
from unimed_data.tables import atomic_write_text, iter_rows, row_count, table_writer
from unimed_data.workspace import Workspace

if TYPE_CHECKING:
    from unimed_data.pipeline import Dataset
    from unimed_data.runner import StageContext


def unit_of(row: dict) -> CaptionUnit:
    labels = tuple(row["labels"] or ())
    return CaptionUnit(
        dataset=row["dataset"],
        modality=row["modality"],
        labels=labels,
        uncertain=tuple(row["uncertain_labels"] or ()),
        report=None if labels else row["report"],
    )


def caption_units(table: Path) -> set[CaptionUnit]:
    """The distinct units of the records in `table` that still need captions."""
    columns = ["dataset", "modality", "labels", "uncertain_labels", "report", "captions"]
    return {unit_of(row) for row in iter_rows(table, columns) if not row["captions"]}


def caption_dataset(ws: Workspace, slug: str, captioner: Captioner) -> StageSummary:
    converted, captioned, errors = ws.converted(slug), ws.captioned(slug), ws.errors(slug, "caption")
    stamp = Stamp.of(ws.stamp(slug, "caption"), [converted], captioner.identity)
    stored = stamp.stored([captioned, errors])
    if stored is not None and stored["errors"] == 0:
        return StageSummary.from_dict(stored)
    # Units that failed are asked again on every run (the endpoint may be back, the key fixed);
    # answered ones come from the backend's cache, and an unchanged table is not rewritten.

    answers = captioner.caption(sorted(caption_units(converted), key=repr))

    with table_writer(captioned, RECORD_SCHEMA) as ok, table_writer(errors, ERROR_SCHEMA) as failed:
        for row in iter_rows(converted):
            if row["captions"]:
                ok.write({**row, "caption_source": row["caption_source"] or "original"})
                continue
            answer = answers[unit_of(row)]
            if isinstance(answer, CaptionFailure):
                failed.write(
                    error_row(row["dataset"], "caption", row["key"], row["source_path"], answer.reason)
                )
            else:
                ok.write({**row, "captions": answer, "caption_source": captioner.source})
    summary = StageSummary("caption", slug, row_count(converted), ok.count, failed.count)
    stamp.write(summary.as_dict(), [converted])
    return summary


def units_in_order(ws: Workspace, slugs: list[str]) -> list[CaptionUnit]:
    """Caption units dataset by dataset in build order (each dataset's sorted), from the converted
    tables where convert has run, else from the ingested records."""
    units = []
    for slug in slugs:
        table = ws.converted(slug) if ws.converted(slug).exists() else ws.records(slug)
        if table.exists():
            units.extend(sorted(caption_units(table), key=repr))
    return units


def choose_pilot(ctx: StageContext) -> None:
    """A `--limit` pilot picks its units over every dataset of the build, before the first."""
    if ctx.captioner.needs_all_units:
        ctx.captioner.choose_pilot(units_in_order(ctx.ws, [d.slug for d in ctx.datasets]))


def run_caption(ctx: StageContext, dataset: Dataset) -> StageSummary:
    """Caption a dataset; for a backend that spends, keep what it cost beside the dataset's tables."""
    before = ctx.captioner.spent()
    summary = caption_dataset(ctx.ws, dataset.slug, ctx.captioner)
    if before is not None and not summary.skipped:
        spent = {k: v - before[k] for k, v in ctx.captioner.spent().items()}
        atomic_write_text(ctx.ws.llm_usage(dataset.slug), json.dumps(spent, indent=2, sort_keys=True))
    return summary


def say_usage(ctx: StageContext) -> None:
    if line := ctx.captioner.usage_line():
        print(line, file=sys.stderr)


STAGE = Stage(
    name="caption",
    help="Give every record captions (template or LLM backend).",
    reads=("converted",),
    writes=("captioned",),
    options=(
        "seed",
        "captioner",
        "llm_base_url",
        "llm_model",
        "llm_concurrency",
        "llm_api_key_env",
        "cache",
        "llm_batch",
        "limit",
        "dry_run",
    ),
    run=run_caption,
    start=choose_pilot,
    end=say_usage,
)
