"""The stages in pipeline order: the one place that order, and what each stage depends on, live."""

from __future__ import annotations

from unimed_data.stages import caption, convert, dedupe, ingest, shard
from unimed_data.stages.base import Stage

STAGES: tuple[Stage, ...] = (ingest.STAGE, convert.STAGE, caption.STAGE, dedupe.STAGE, shard.STAGE)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def stage_named(name: str) -> Stage:
    return next(stage for stage in STAGES if stage.name == name)


def writer_of(table: str) -> Stage:
    """The stage that writes `table`."""
    return next(stage for stage in STAGES if table in stage.writes)


def upstream(stage: Stage) -> list[Stage]:
    """The stages `stage` depends on, nearest last: the writer of its first input, and theirs."""
    if not stage.reads:
        return []
    before = writer_of(stage.reads[0])
    return [*upstream(before), before]
