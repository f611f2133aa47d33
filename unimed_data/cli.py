"""The `unimed-data` command line: build, the stages one by one, evalset, validate, stats, download.

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
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from unimed_data import cli_common as opt
from unimed_data import terminal
from unimed_data.cli_common import OFF, ONE_SOURCE, fail, os_problem, print_error_rows
from unimed_data.cli_evalset import evalset
from unimed_data.cli_sources import download, sources
from unimed_data.config import (
    BuildConfig,
    ConfigError,
    ConvertConfig,
    DatasetEntry,
    load_config,
    recipe_path,
)
from unimed_data.layouts import LayoutError
from unimed_data.manifest import ManifestError, validate_manifest
from unimed_data.outputs import OutputError, settle_output
from unimed_data.schema import MODALITIES
from unimed_data.workspace import STAGES

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


@dataclass(frozen=True)
class SourceOptions:
    """What a build or stage command was given: the data source and option overrides."""

    config: Path | None
    out: Path
    demo: bool
    from_folder: Path | None
    modality: str | None
    license: str
    recipe: str | None = None
    root: Path | None = None
    strict: bool = False
    force: bool = False
    workers: int | None = None
    seed: int | None = None
    shard_size: int | None = None
    txt_format: str | None = None
    max_side: int | None = None
    min_side: int | None = None
    jpeg_quality: int | None = None
    max_error_rate: float | None = None
    captioner: str | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_concurrency: int | None = None
    llm_api_key_env: str | None = None
    cache: Path | None = None
    llm_batch: bool = False
    limit: int | None = None
    dry_run: bool = False


def _plan(given: SourceOptions, stages: tuple[str, ...]):
    """The config and datasets of a command, from a config file, --demo or --from-folder.

    Everything that can be checked without writing is checked before the output folder is claimed.
    """
    from unimed_data.demo import DEMO_MIN_SIDE, stage_demo
    from unimed_data.pipeline import Dataset, claim_build_output, resolve_datasets

    sources = [given.config is not None, given.recipe is not None, given.demo, given.from_folder is not None]
    if sum(sources) != 1:
        fail("give exactly one of: a CONFIG file, --recipe NAME, --demo, or --from-folder DIR")
    if given.root is not None and given.config is None and given.recipe is None:
        fail("--root applies to a CONFIG file or --recipe only")
    left_out: list = []
    try:
        if given.config is not None or given.recipe is not None:
            if given.recipe is not None and given.root is None:
                fail(f"--recipe {given.recipe} needs --root RAW, the folder holding the raw sources")
            path = given.config if given.config is not None else recipe_path(given.recipe)
            config = load_config(path, root=given.root)
            if given.strict:
                config.missing_parts = "fail"
            datasets, left_out = _in_place(
                resolve_datasets(config), given.out, config.missing_parts == "fail"
            )
        elif given.demo:
            claim_build_output(given.out, force=given.force)  # before the demo's raw copy is written
            raw = given.out / "work" / "demo-raw"
            datasets = [Dataset(m, raw) for m in stage_demo(raw)]
            config = BuildConfig(
                datasets=[DatasetEntry(manifest=d.manifest.name, root=raw) for d in datasets],
                convert=ConvertConfig(min_side=DEMO_MIN_SIDE),
            )
        else:
            config, datasets = _from_folder(given)
        if not given.demo:
            claim_build_output(given.out, force=given.force)
    except (ConfigError, ManifestError, OutputError, ValueError) as exc:
        fail(str(exc))
    _override(config, given)
    return config, datasets, tuple(left_out)


def _from_folder(given: SourceOptions):
    """The config and dataset of `--from-folder DIR`: a folder-per-class tree as one manifest."""
    from unimed_data.pipeline import Dataset

    if not given.from_folder.is_dir():
        fail(f"--from-folder {given.from_folder}: not a folder")
    if given.modality not in MODALITIES:
        fail(f"--from-folder needs --modality, one of: {', '.join(MODALITIES)}")
    folder = given.from_folder.resolve()
    manifest = validate_manifest(
        {
            "name": folder.name,
            "modality": given.modality,
            "license": given.license,
            "layout": {"type": "folder"},
        },
        f"--from-folder {given.from_folder}",
    )
    config = BuildConfig(datasets=[DatasetEntry(manifest=manifest.name, root=folder.parent)])
    return config, [Dataset(manifest, folder.parent)]


def _override(config: BuildConfig, given: SourceOptions) -> None:
    """Options given on the command line replace the config's. The config was just built here and
    its models do not validate on assignment, so a plain setattr is all an override needs."""
    captions, llm = config.captions, config.captions.llm
    for target, attribute, value in (
        (config, "workers", given.workers),
        (config, "seed", given.seed),
        (config, "max_error_rate", given.max_error_rate),
        (config.shard, "shard_size", given.shard_size),
        (config.shard, "txt_format", given.txt_format),
        (config.convert, "max_side", given.max_side),
        (config.convert, "min_side", given.min_side),
        (config.convert, "jpeg_quality", given.jpeg_quality),
        (captions, "backend", given.captioner),
        (captions, "limit", given.limit),
        (llm, "base_url", given.llm_base_url),
        (llm, "model", given.llm_model),
        (llm, "concurrency", given.llm_concurrency),
        (llm, "api_key_env", given.llm_api_key_env),
        (llm, "cache_dir", given.cache.resolve() if given.cache else None),
        (llm, "batch", given.llm_batch or None),
    ):
        if value is not None:
            setattr(target, attribute, value)
    if captions.backend not in ("template", "openai"):
        fail(f"--captioner {captions.backend}: use template or openai")
    if config.shard.txt_format not in ("plain", "unimed"):
        fail(f"--txt-format {config.shard.txt_format}: use plain or unimed")


def _in_place(datasets, out: Path, strict: bool):
    """The datasets whose files are in place, and the others with what is missing.

    Checked before the output folder is made. Strict, the first absent dataset (a typo in `root:`,
    a source not downloaded yet) is the error; otherwise each is reported once, with what to
    download and where, and the build goes on with the rest. A dataset an earlier run already
    ingested into OUT stays in, so later stages can run alone after its raw files moved.
    """
    from unimed_data.parts import left_unread, missing_files, what_to_get
    from unimed_data.workspace import Workspace

    kept, left_out = [], []
    for dataset in datasets:
        absent = missing_files(dataset.manifest, dataset.root)
        if not absent or Workspace(out).records(dataset.slug).exists():
            kept.append(dataset)
            if skipped := left_unread(dataset.manifest, dataset.root):
                terminal.say(
                    f"{dataset.manifest.name}: not read (its layout's `skip` list): {', '.join(skipped)}"
                )
            continue
        problem = what_to_get(dataset.manifest, dataset.root, absent)
        if strict:
            fail(f"dataset {dataset.manifest.name}: {problem}")
        terminal.say((f"{dataset.manifest.name}:", "yellow"), " ", f"left out: {problem}")
        left_out.append((dataset, problem.partition("; ")[0]))
    if not kept:
        fail("no dataset of the build is in place: download them as said above, or check --root/`root:`")
    return kept, left_out


def _run(stages: tuple[str, ...], given: SourceOptions) -> None:
    from unimed_data.pipeline import StageOrderError, plan_captions, run_stages
    from unimed_data.stats import render_stats
    from unimed_data.tables import iter_rows

    out = given.out
    existed = out.exists()
    fresh = not existed or (out.is_dir() and not any(out.iterdir()))
    try:
        config, datasets, left_out = _plan(given, stages)
        try:
            if given.dry_run:
                plan = plan_captions(config, out, datasets)
            else:
                stats = run_stages(config, out, datasets, stages, left_out=left_out)
        except (StageOrderError, ManifestError, LayoutError, ValueError, RuntimeError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(os_problem(exc))
    except typer.Exit:
        if fresh and out.is_dir():  # new or empty before: everything in it is this failed run's
            for path in out.iterdir() if existed else [out]:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        raise
    settle_output(out)
    if given.dry_run:
        examples = plan.pop("example_prompts", [])
        sys.stdout.write(json.dumps(plan, indent=2) + "\n")
        for messages in examples:
            for message in messages:
                sys.stdout.write(f"--- {message['role']} ---\n{message['content']}\n")
        return
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
    seed: opt.SeedOpt = None,
    shard_size: opt.ShardSizeOpt = None,
    txt_format: opt.TxtFormatOpt = None,
    max_side: opt.MaxSideOpt = None,
    min_side: opt.MinSideOpt = None,
    jpeg_quality: opt.QualityOpt = None,
    max_error_rate: opt.MaxErrorRateOpt = None,
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
    """Run every stage: ingest, convert, caption, shard. Give exactly one of CONFIG, --recipe, --demo or --from-folder."""
    _run(STAGES, SourceOptions(**locals()))


# The options each stage reads besides the source ones; `build` takes them all.
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
)
_LLM_OPTIONS = ("llm_base_url", "llm_model", "llm_concurrency", "llm_api_key_env", "cache", "llm_batch")
_STAGE_OPTIONS = {
    "ingest": ("seed",),
    "convert": ("workers", "max_side", "min_side", "jpeg_quality"),
    "caption": ("seed", "captioner", *_LLM_OPTIONS, "limit", "dry_run"),
    "shard": ("workers", "seed", "shard_size", "txt_format", "max_error_rate"),
}


def _stage_command(stage: str, help_text: str):
    """`build`'s command narrowed to one stage and the options that stage reads."""

    def command(**given) -> None:
        _run((stage,), SourceOptions(**given))

    kept = (*_SOURCE_OPTIONS, *_STAGE_OPTIONS[stage])
    full = inspect.signature(build, eval_str=True)
    command.__signature__ = full.replace(parameters=[p for p in full.parameters.values() if p.name in kept])
    command.__doc__ = f"{help_text} {ONE_SOURCE}"
    return command


app.command("ingest")(_stage_command("ingest", "Read manifests into work/<dataset>/records.parquet."))
app.command("convert")(_stage_command("convert", "Convert source images to capped JPEGs."))
app.command("caption")(_stage_command("caption", "Give every record captions (template or LLM backend)."))
app.command("shard")(_stage_command("shard", "Write WebDataset shards, sizes.json, index, stats and card."))


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
