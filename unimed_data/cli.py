"""The `unimed-data` command line: build, the stages one by one, evalset, prompts, validate, stats,
download, publish.

Expected failures (bad input data, a missing folder, a wrong option) end as one `error:` line and
exit 2; `main`, the console-script entry, shows anything else with its traceback as a bug. Ctrl-C
ends any command with one line and exit 130: every stage publishes its files atomically, so what
finished is kept and a rerun resumes.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from unimed_data import cli_common as opt
from unimed_data import terminal
from unimed_data.cli_common import OFF, ONE_SOURCE, fail, os_problem, print_caption_plan, print_error_rows
from unimed_data.cli_evalset import evalset
from unimed_data.cli_prompts import prompts
from unimed_data.cli_publish import publish
from unimed_data.cli_sources import download, sources
from unimed_data.config import BuildConfig, ConfigError
from unimed_data.layouts import LayoutError
from unimed_data.manifest import ManifestError
from unimed_data.outputs import OutputError, settle_output
from unimed_data.stages.base import Stage
from unimed_data.stages.order import STAGE_NAMES, STAGES

INTERRUPTED = (
    "stopped by Ctrl-C; finished stages and files are kept (half-written temporary files are "
    "removed on the next run): rerun the same command to resume"
)
BUG = "unexpected failure (a bug in unimed-data; please report it with the traceback above)"


class _Commands(TyperGroup):
    """Turns a Ctrl-C in any command into one line and exit 130, instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            terminal.say(("interrupted:", "yellow"), " ", INTERRUPTED)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Commands,
    help="Build medical image-text corpora as WebDataset shards: ingest, convert, caption, shard.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    """Console-script entry: an exception no command expects is a bug; say so under its traceback."""
    try:
        app()
    except Exception:
        traceback.print_exc()
        terminal.error(BUG)
        sys.exit(1)


def _run(stages: tuple[str, ...], given: dict) -> None:
    """Plan and run `stages` with the options a command was `given`, then say what they did."""
    from unimed_data.dry_run import plan_captions
    from unimed_data.plan import SourceOptions, plan_build
    from unimed_data.runner import run_stages

    given = SourceOptions(**given)
    out = given.out
    existed = out.exists()
    fresh = not existed or (out.is_dir() and not any(out.iterdir()))
    try:
        with tempfile.TemporaryDirectory(prefix="unimed-plan-") as scratch:
            plan = _guarded(plan_build, given, Path(scratch))
            if given.dry_run:
                print_caption_plan(_guarded(plan_captions, plan.config, out, plan.datasets))
                return
            stats = _guarded(run_stages, plan.config, out, plan.datasets, stages, left_out=plan.left_out)
    except typer.Exit:
        if fresh and out.is_dir():  # new or empty before: everything in it is this failed run's
            for path in out.iterdir() if existed else [out]:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        raise
    settle_output(out)
    _report(stages, out, plan.config, stats)


def _guarded(step, *args, **kwargs):
    """`step`'s result; an expected failure (bad input, a stage run out of order, a file-system
    error) ends the command as one error line."""
    from unimed_data.runner import StageOrderError

    try:
        return step(*args, **kwargs)
    except (
        ConfigError,
        ManifestError,
        OutputError,
        StageOrderError,
        LayoutError,
        ValueError,
        RuntimeError,
    ) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_problem(exc))


def _report(stages: tuple[str, ...], out: Path, config: BuildConfig, stats: dict | None) -> None:
    """What a run did; exit 1 when it wrote no sample or more inputs failed than allowed."""
    from unimed_data.stats import render_stats
    from unimed_data.tables import iter_rows

    if stats is None:
        terminal.say(f"{', '.join(stages)} done; work tables in {out / 'work'}")
        return
    render_stats(stats, terminal.console())
    hint = f"`unimed-data stats {out} --errors` counts them by reason"
    print_error_rows(iter_rows(out / "errors.parquet"), hint)
    terminal.say(f"Shards, stats.json, errors.parquet and README.md are in {out}")
    totals = stats["totals"]
    if totals["samples"] == 0:
        terminal.error(
            "no sample was written: check the paths, the errors above and the filtered count "
            "(e.g. images below --min-side)"
        )
        raise typer.Exit(1)
    rate = totals["errors"] / totals["inputs"] if totals["inputs"] else 0.0
    pilot = config.captions.limit is not None  # a --limit pilot leaves most records uncaptioned on purpose
    if rate > config.max_error_rate and not pilot:
        terminal.error(
            f"{totals['errors']} of {totals['inputs']} inputs failed ({rate:.0%}), more than the "
            f"allowed {config.max_error_rate:.0%} (--max-error-rate {config.max_error_rate:g}); "
            f"see `unimed-data stats {out} --errors`"
        )
        raise typer.Exit(1)


@app.command()
def build(
    config: opt.ConfigArg = None,
    out: opt.OutOpt = ...,
    recipe: opt.RecipeOpt = None,
    root: opt.RootOpt = None,
    strict: opt.StrictOpt = False,
    demo: opt.DemoOpt = False,
    from_folder: opt.FolderOpt = None,
    modality: opt.ModalityOpt = None,
    license: opt.LicenseOpt = "unknown",
    force: opt.ForceOpt = False,
    workers: opt.WorkersOpt = None,
    executor: opt.ExecutorOpt = None,
    ray_address: opt.RayAddressOpt = None,
    seed: opt.SeedOpt = None,
    shard_size: opt.ShardSizeOpt = None,
    txt_format: opt.TxtFormatOpt = None,
    max_side: opt.MaxSideOpt = None,
    min_side: opt.MinSideOpt = None,
    jpeg_quality: opt.QualityOpt = None,
    jpeg_optimize: opt.OptimizeOpt = None,
    reencode: opt.ReencodeOpt = None,
    chunk_rows: opt.ChunkRowsOpt = None,
    max_error_rate: opt.MaxErrorRateOpt = None,
    protect: opt.ProtectOpt = None,
    dedupe: opt.DedupeOpt = None,
    captioner: opt.CaptionerOpt = None,
    llm_base_url: opt.BaseUrlOpt = None,
    llm_model: opt.ModelOpt = None,
    llm_concurrency: opt.ConcurrencyOpt = None,
    llm_api_key_env: opt.KeyEnvOpt = None,
    cache: opt.CacheOpt = None,
    llm_batch: opt.BatchOpt = False,
    limit: opt.LimitOpt = None,
    dry_run: opt.DryRunOpt = False,
) -> None:
    """Run every stage: ingest, convert, caption, dedupe, shard. Give exactly one of CONFIG, --recipe, --demo or --from-folder."""
    _run(STAGE_NAMES, locals())


# The options every build or stage command takes; each stage adds the ones it declares.
_SOURCE_OPTIONS = (
    "config",
    "out",
    "recipe",
    "root",
    "strict",
    "demo",
    "from_folder",
    "modality",
    "license",
    "force",
    "executor",
    "ray_address",
)


def _stage_command(stage: Stage):
    """`build`'s command narrowed to one stage and the options that stage declares."""

    def command(**given) -> None:
        _run((stage.name,), given)

    kept = (*_SOURCE_OPTIONS, *stage.options)
    full = inspect.signature(build, eval_str=True)
    command.__signature__ = full.replace(parameters=[p for p in full.parameters.values() if p.name in kept])
    command.__doc__ = f"{stage.help} {ONE_SOURCE}"
    return command


for _stage in STAGES:
    app.command(_stage.name)(_stage_command(_stage))


@app.command()
def validate(
    out: Annotated[Path, typer.Argument(help="Output folder of a build.")],
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes.", show_default="all cores")
    ] = None,
) -> None:
    """Re-read every shard with webdataset and check images, keys, json and counts."""
    from unimed_data.parallel import default_workers
    from unimed_data.validate import validate_output

    if not (out / "stats.json").is_file():
        fail(f"{out}: no stats.json; is it the output folder of a finished build?")
    problems = validate_output(out, workers=workers or default_workers())
    for problem in problems:
        terminal.say(("problem:", "red"), " ", problem)
    if problems:
        terminal.say(f"{len(problems)} problem(s) in {out}")
        raise typer.Exit(1)
    terminal.say(("ok", "green"), f": every shard in {out} reads back and matches sizes.json and stats.json")


@app.command()
def stats(
    out: Annotated[Path, typer.Argument(help="Output folder of a build.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print stats.json instead of tables.", show_default=OFF)
    ] = False,
    errors: Annotated[
        bool,
        typer.Option(
            "--errors",
            help="Instead of the counts, the first error rows and the number of errors per reason.",
            show_default=OFF,
        ),
    ] = False,
    rows: Annotated[int, typer.Option("--rows", min=1, help="With --errors: rows and reasons to show.")] = 20,
) -> None:
    """Counts per dataset, modality, split, caption source, and errors."""
    from unimed_data.error_report import read_errors, render_errors
    from unimed_data.stats import load_stats, render_stats
    from unimed_data.workspace import Workspace

    try:
        data = load_stats(out)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if errors:
        path = Workspace(out).all_errors
        if not path.is_file():
            fail(f"{path} not found: is {out} the output folder of a finished build?")
        render_errors(read_errors(path, rows), path, terminal.console(), rows)
    elif as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        render_stats(data, terminal.console())


app.command()(download)
app.command()(sources)
app.command()(evalset)
app.command()(prompts)
app.command()(publish)
