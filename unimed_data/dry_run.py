"""`build --dry-run`: what the caption stage would ask for, planned without writing to OUT and
without the network.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from unimed_data.captions import cache_file
from unimed_data.captions.cache import scratch_copy
from unimed_data.config import BuildConfig
from unimed_data.executor import LocalExecutor
from unimed_data.pipeline import Dataset, prepare
from unimed_data.runner import StageContext, run_stage
from unimed_data.stages.caption import units_in_order
from unimed_data.stages.order import stage_named
from unimed_data.workspace import Workspace


def plan_captions(config: BuildConfig, out: Path, datasets: list[Dataset]) -> dict:
    """`--dry-run`: the caption units, calls and tokens a run would need; nothing is written to OUT.

    Units come from OUT's converted tables where convert has run, else from the records of an
    ingest into a temporary folder (an upper bound: records that fail conversion are never
    captioned). Nothing goes to the network.
    """
    ws = Workspace(out.resolve())
    with tempfile.TemporaryDirectory(prefix="unimed-dry-run-") as scratch:
        cache = cache_file(config.captions, ws.caption_cache)
        config = config.model_copy(deep=True)
        config.captions.llm.cache_dir = scratch_copy(cache, Path(scratch) / "llm-cache").parent
        captioner = prepare(config, ws, datasets)
        scratch_ws = Workspace(Path(scratch))
        salt = secrets.token_hex(32)  # caption units hold no patient id
        ctx = StageContext(
            config, scratch_ws, list(datasets), [], captioner, LocalExecutor(1), given_salt=salt
        )
        run_stage(ctx, stage_named("ingest"))
        units = []
        for dataset in ctx.datasets:
            source = ws if ws.converted(dataset.slug).exists() else scratch_ws
            units.extend(units_in_order(source, [dataset.slug]))
        captioner.choose_pilot(units)
        return captioner.plan(units)
