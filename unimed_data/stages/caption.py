"""Caption stage: records without captions get them from a caption backend.

Captions are requested once per unique unit (dataset, modality, labels, uncertain labels; or one
report), collected in a first streaming pass, then attached to every record in a second pass.
Records that already carry captions (existing caption sets) keep them as they are.
"""

from __future__ import annotations

from pathlib import Path

from unimed_data.captions import Captioner, CaptionFailure, CaptionUnit
from unimed_data.schema import ERROR_SCHEMA, RECORD_SCHEMA, error_row
from unimed_data.stages.summary import StageSummary
from unimed_data.stamps import fingerprint, read_stamp, write_stamp
from unimed_data.tables import iter_rows, row_count, table_writer
from unimed_data.workspace import Workspace


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
    stamp = ws.stamp(slug, "caption")
    digest = fingerprint([converted], captioner.identity)
    stored = read_stamp(stamp, digest, [captioned, errors])
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
    write_stamp(stamp, digest, summary.as_dict(), [converted])
    return summary
