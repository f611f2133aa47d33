"""The thin runner: stages in pipeline order over a build's datasets, each stage's input checked,
the patient salt and the executor (local, or Ray: the config's choice) handed to them. Each stage
skips work its stamp vouches for.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from unimed_data.captions import Captioner
from unimed_data.config import BuildConfig
from unimed_data.executor import Executor, make_executor
from unimed_data.executor_figures import figures_dir
from unimed_data.parallel import default_workers
from unimed_data.pipeline import Dataset, prepare
from unimed_data.schema import SPLITS
from unimed_data.stages.base import DatasetLeftOut, Stage
from unimed_data.stages.order import STAGE_NAMES, STAGES, upstream, writer_of
from unimed_data.stamps import inputs_unchanged
from unimed_data.tables import atomic_write_text
from unimed_data.workspace import Workspace


class StageOrderError(RuntimeError):
    """A stage was asked to run before the stage it reads from."""


@dataclass
class StageContext:
    """What every stage of one run is given besides its dataset."""

    config: BuildConfig
    ws: Workspace
    datasets: list[Dataset]  # those still in the build
    left_out: list[tuple[Dataset, str]]  # those not built, with the reason
    captioner: Captioner
    executor: Executor
    stage_names: tuple[str, ...] = STAGE_NAMES  # every stage in order, for the build's error tables
    stats: dict | None = None  # set by the shard stage
    given_salt: str | None = None

    @property
    def salt(self) -> str:
        """The patient-id salt, read (or made) once, and only when a stage asks for it."""
        if self.given_salt is None:
            self.given_salt = patient_salt(self.config, self.ws)
        return self.given_salt


def run_stages(
    config: BuildConfig,
    out: Path,
    datasets: list[Dataset],
    stages: tuple[str, ...] = STAGE_NAMES,
    *,
    captioner: Captioner | None = None,
    left_out: tuple[tuple[Dataset, str], ...] = (),
) -> dict | None:
    """Run `stages` (in pipeline order); returns the stats when the shard stage ran.

    `captioner` is one already built for this output by `prepare` (the dry run's); by default the
    run builds its own. `left_out` holds the config's datasets not built because their files are
    absent, with the reason, for the stats' reference counts. With `missing_parts: skip`, a dataset
    whose annotations cannot be read joins them (reported once) and the rest are built.
    """
    ws = Workspace(out.resolve())
    if captioner is None:
        captioner = prepare(config, ws, datasets)
    executor = make_executor(
        config.executor,
        workers=config.workers or default_workers(),
        address=config.ray_address,
        figures=figures_dir(ws.work),
    )
    ctx = StageContext(config, ws, list(datasets), list(left_out), captioner, executor)
    _remove_stale_temp_files(ws)
    try:
        for stage in STAGES:
            if stage.name in stages:
                run_stage(ctx, stage)
    finally:
        executor.close()
    return ctx.stats


def run_stage(ctx: StageContext, stage: Stage) -> None:
    """One stage over every dataset still in the build (or once, on the whole build)."""
    if stage.start is not None:
        stage.start(ctx)
    for dataset in ctx.datasets:
        _require_input(ctx, stage, dataset.slug)
        if stage.per_dataset:
            try:
                stage.run(ctx, dataset)
            except DatasetLeftOut as gone:
                ctx.left_out.append((dataset, gone.reason))
    ctx.datasets = [d for d in ctx.datasets if all(d is not gone for gone, _ in ctx.left_out)]
    if not ctx.datasets:
        raise ValueError("no dataset of the build could be read: see the lines above")
    if stage.end is not None:
        stage.end(ctx)
    if not stage.per_dataset:
        stage.run(ctx, None)


def _require_input(ctx: StageContext, stage: Stage, slug: str) -> None:
    """A stage run alone must not read tables missing or left stale by an upstream rerun."""
    if not stage.reads:
        return
    ws = ctx.ws
    table = stage.reads[0]
    path = getattr(ws, table)(slug)
    if not path.exists():
        before = writer_of(table).name
        raise StageOrderError(
            f"{stage.name} needs {path}, which the {before} stage writes: run `{before}` first"
        )
    for earlier in upstream(stage):
        if not earlier.reads:
            continue
        source = getattr(ws, earlier.reads[0])
        if earlier.per_dataset:
            stamp, sources = ws.stamp(slug, earlier.name), [source(slug)]
        else:  # a whole-build stage (dedupe) read every dataset's table
            stamp, sources = ws.build_stamp(earlier.name), [source(d.slug) for d in ctx.datasets]
        if not inputs_unchanged(stamp, sources):
            raise StageOrderError(
                f"{getattr(ws, earlier.writes[0])(slug)} is out of date: {source(slug).name} changed since "
                f"`{earlier.name}` ran; run `{earlier.name}` first"
            )


def patient_salt(config: BuildConfig, ws: Workspace) -> str:
    """The salt from the environment, else one random salt kept for this output folder."""
    if salt := os.environ.get(config.patient_salt_env):
        return salt
    path = ws.salt
    if not path.exists():
        atomic_write_text(path, secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text()


_TEMP_NAME = re.compile(r"^\..+\.\d+\.tmp$")  # tables.temp_path: .<name>.<pid>.tmp


def _remove_stale_temp_files(ws: Workspace) -> None:
    """Half-written files left by a killed run in the build's own folders; never published."""
    folders = [ws.work, *(ws.split_dir(s) for s in SPLITS), ws.out]
    for folder in folders:
        if folder.is_dir():
            candidates = folder.rglob(".*.tmp") if folder != ws.out else folder.glob(".*.tmp")
            for path in candidates:
                if _TEMP_NAME.match(path.name):
                    path.unlink(missing_ok=True)
