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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from unimed_data import terminal
from unimed_data.config import BuildConfig, ConfigError, ConvertConfig, DatasetEntry, LLMConfig, load_config
from unimed_data.imaging import ConvertOptions
from unimed_data.layouts import LayoutError
from unimed_data.manifest import ManifestError, validate_manifest
from unimed_data.outputs import OutputError, settle_output
from unimed_data.schema import MODALITIES
from unimed_data.stages.shard import ShardOptions
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


ONE_SOURCE = "Give exactly one of CONFIG, --demo or --from-folder DIR."
_OFF = "off"


def _from_config(fallback: object) -> str:
    """The default shown for an option that overrides the config."""
    return f"config, else {fallback}"


ConfigArg = Annotated[
    Path | None,
    typer.Argument(help=f"Build config YAML (datasets and stage options). {ONE_SOURCE}", show_default=False),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (shards, stats, work tables).")]
DemoOpt = Annotated[
    bool,
    typer.Option(
        "--demo",
        help="Use the embedded demo corpus (pydicom's DICOM files), not CONFIG or --from-folder.",
        show_default=_OFF,
    ),
]
FolderOpt = Annotated[
    Path | None,
    typer.Option(
        "--from-folder",
        help="A folder-per-class tree of images/DICOM (class = folder name), not CONFIG or --demo.",
        show_default="none",
    ),
]
ModalityOpt = Annotated[
    str | None,
    typer.Option(
        "--modality",
        help=f"Modality of --from-folder: {', '.join(MODALITIES)}.",
        show_default="none; needed with --from-folder",
    ),
]
LicenseOpt = Annotated[str, typer.Option("--license", help="Licence recorded for --from-folder data.")]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into a non-empty folder that is not ours; its files are never replaced.",
        show_default=_OFF,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Processes.", show_default=_from_config("all cores")),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Seed for splits, shuffle and caption choice.",
        show_default=_from_config(BuildConfig.model_fields["seed"].default),
    ),
]
ShardSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--shard-size", min=1, help="Samples per shard.", show_default=_from_config(ShardOptions.shard_size)
    ),
]
MaxSideOpt = Annotated[
    int | None,
    typer.Option(
        "--max-side", min=16, help="Longest image side.", show_default=_from_config(ConvertOptions.max_side)
    ),
]
MinSideOpt = Annotated[
    int | None,
    typer.Option(
        "--min-side",
        min=1,
        help="Images whose shorter side is smaller are filtered (counted, with the reason).",
        show_default=_from_config(ConvertConfig.model_fields["min_side"].default),
    ),
]
QualityOpt = Annotated[
    int | None,
    typer.Option(
        "--jpeg-quality",
        min=1,
        max=100,
        help="JPEG quality.",
        show_default=_from_config(ConvertOptions.jpeg_quality),
    ),
]
MaxErrorRateOpt = Annotated[
    float | None,
    typer.Option(
        "--max-error-rate",
        min=0.0,
        max=1.0,
        help="Exit with status 1 (after writing everything) when a larger share of inputs failed.",
        show_default=_from_config(BuildConfig.model_fields["max_error_rate"].default),
    ),
]
_LLM = "Captions"
_LLM_DEFAULTS = LLMConfig()
CaptionerOpt = Annotated[
    str | None,
    typer.Option(
        "--captioner",
        help="Caption backend: template (offline) or openai.",
        show_default=_from_config("template"),
        rich_help_panel=_LLM,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.",
        show_default=_from_config("OpenAI's"),
        rich_help_panel=_LLM,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-model",
        help="Model name at the endpoint.",
        show_default="config; needed by openai",
        rich_help_panel=_LLM,
    ),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--llm-concurrency",
        min=1,
        help="Requests in flight.",
        show_default=_from_config(_LLM_DEFAULTS.concurrency),
        rich_help_panel=_LLM,
    ),
]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-api-key-env",
        help="Environment variable holding the API key.",
        show_default=_from_config(_LLM_DEFAULTS.api_key_env),
        rich_help_panel=_LLM,
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="Caption cache folder.",
        show_default=_from_config("OUT/work/llm-cache"),
        rich_help_panel=_LLM,
    ),
]
BatchOpt = Annotated[
    bool,
    typer.Option(
        "--llm-batch",
        help="Use the OpenAI Batch API (half price).",
        show_default=_from_config(_OFF),
        rich_help_panel=_LLM,
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        help="Pilot: caption only the first N units.",
        show_default=_from_config("all"),
        rich_help_panel=_LLM,
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the prompts, call count and token estimate; no network.",
        show_default=_OFF,
        rich_help_panel=_LLM,
    ),
]


def _fail(message: str) -> None:
    terminal.error(message)
    raise typer.Exit(2)


def _os_problem(exc: OSError) -> str:
    """`path: reason` for a file-system error, without Python's `[Errno N]` noise."""
    return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)


@dataclass(frozen=True)
class SourceOptions:
    """What a build or stage command was given: the data source and option overrides."""

    config: Path | None
    out: Path
    demo: bool
    from_folder: Path | None
    modality: str | None
    license: str
    force: bool = False
    workers: int | None = None
    seed: int | None = None
    shard_size: int | None = None
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

    if sum([given.config is not None, given.demo, given.from_folder is not None]) != 1:
        _fail("give exactly one of: a CONFIG file, --demo, or --from-folder DIR")
    try:
        if given.config is not None:
            config = load_config(given.config)
            datasets = resolve_datasets(config)
            if "ingest" in stages or given.dry_run:
                _check_dataset_folders(datasets)
        elif given.demo:
            claim_build_output(given.out, force=given.force)  # before the demo's raw copy is written
            raw = given.out / "work" / "demo-raw"
            datasets = [Dataset(m, raw) for m in stage_demo(raw)]
            config = BuildConfig(
                datasets=[DatasetEntry(manifest=d.manifest.name, root=raw) for d in datasets],
                convert=ConvertConfig(min_side=DEMO_MIN_SIDE),
            )
        else:
            if not given.from_folder.is_dir():
                _fail(f"--from-folder {given.from_folder}: not a folder")
            if given.modality not in MODALITIES:
                _fail(f"--from-folder needs --modality, one of: {', '.join(MODALITIES)}")
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
            datasets = [Dataset(manifest, folder.parent)]
            config = BuildConfig(datasets=[DatasetEntry(manifest=manifest.name, root=folder.parent)])
        if not given.demo:
            claim_build_output(given.out, force=given.force)
    except (ConfigError, ManifestError, OutputError, ValueError) as exc:
        _fail(str(exc))
    # Options given on the command line replace the config's. The config was just built here and
    # its models do not validate on assignment, so a plain setattr is all an override needs.
    captions, llm = config.captions, config.captions.llm
    for target, attribute, value in (
        (config, "workers", given.workers),
        (config, "seed", given.seed),
        (config, "max_error_rate", given.max_error_rate),
        (config.shard, "shard_size", given.shard_size),
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
        _fail(f"--captioner {captions.backend}: use template or openai")
    return config, datasets


def _check_dataset_folders(datasets) -> None:
    """A dataset folder that is not there (a typo in `root:`, a source not downloaded yet) is
    reported before the output folder is made."""
    from unimed_data.ingest import dataset_root

    for dataset in datasets:
        folder = dataset_root(dataset.manifest, dataset.root)
        if not folder.is_dir():
            _fail(
                f"dataset {dataset.manifest.name}: folder {folder} not found (the config's root "
                f"{dataset.root}, then {dataset.manifest.root or dataset.manifest.name}/): "
                "download the source there, or correct `root:`"
            )


def _run(stages: tuple[str, ...], given: SourceOptions) -> None:
    from unimed_data.pipeline import StageOrderError, plan_captions, run_stages
    from unimed_data.stats import render_stats
    from unimed_data.tables import iter_rows

    out = given.out
    existed = out.exists()
    fresh = not existed or (out.is_dir() and not any(out.iterdir()))
    try:
        config, datasets = _plan(given, stages)
        try:
            if given.dry_run:
                plan = plan_captions(config, out, datasets)
            else:
                stats = run_stages(config, out, datasets, stages)
        except (StageOrderError, ManifestError, LayoutError, ValueError, RuntimeError) as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(_os_problem(exc))
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
    _print_error_rows(iter_rows(out / "errors.parquet"), hint)
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


def _print_error_rows(rows: Iterable[dict], more: str, limit: int = 5) -> None:
    """The first `limit` error rows, then `more` (where the rest are) when there are more."""
    for shown, row in enumerate(rows):
        if shown == limit:
            terminal.say(f"... and more: {more}")
            break
        terminal.say(f"  {row['stage']}: {row['source_path']}: {row['reason']}")


@app.command()
def build(
    config: ConfigArg = None,
    out: OutOpt = ...,
    demo: DemoOpt = False,
    from_folder: FolderOpt = None,
    modality: ModalityOpt = None,
    license: LicenseOpt = "unknown",
    force: ForceOpt = False,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    shard_size: ShardSizeOpt = None,
    max_side: MaxSideOpt = None,
    min_side: MinSideOpt = None,
    jpeg_quality: QualityOpt = None,
    max_error_rate: MaxErrorRateOpt = None,
    captioner: CaptionerOpt = None,
    llm_base_url: BaseUrlOpt = None,
    llm_model: ModelOpt = None,
    llm_concurrency: ConcurrencyOpt = None,
    llm_api_key_env: KeyEnvOpt = None,
    cache: CacheOpt = None,
    llm_batch: BatchOpt = False,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Run every stage: ingest, convert, caption, shard. Give exactly one of CONFIG, --demo or --from-folder DIR."""
    _run(STAGES, SourceOptions(**locals()))


# The options each stage reads besides the source ones; `build` takes them all.
_SOURCE_OPTIONS = ("config", "out", "demo", "from_folder", "modality", "license", "force")
_LLM_OPTIONS = ("llm_base_url", "llm_model", "llm_concurrency", "llm_api_key_env", "cache", "llm_batch")
_STAGE_OPTIONS = {
    "ingest": ("seed",),
    "convert": ("workers", "max_side", "min_side", "jpeg_quality"),
    "caption": ("seed", "captioner", *_LLM_OPTIONS, "limit", "dry_run"),
    "shard": ("workers", "seed", "shard_size", "max_error_rate"),
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
        _fail(f"{out}: no stats.json; is it the output folder of a finished build?")
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
        bool, typer.Option("--json", help="Print stats.json instead of tables.", show_default=_OFF)
    ] = False,
    errors: Annotated[
        bool,
        typer.Option(
            "--errors",
            help="Instead of the counts, the first error rows and the number of errors per reason.",
            show_default=_OFF,
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
        _fail(str(exc))
    if errors:
        path = Workspace(out).all_errors
        if not path.is_file():
            _fail(f"{path} not found: is {out} the output folder of a finished build?")
        render_errors(read_errors(path, rows), path, terminal.console(), rows)
    elif as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        render_stats(data, terminal.console())


@app.command()
def download(
    names: Annotated[list[str], typer.Argument(help="Bundled manifest names or manifest YAML paths.")],
    root: Annotated[Path, typer.Option("--root", help="Raw data root; each source goes to ROOT/<name>/.")],
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            help="Base URL of an institutional mirror serving the same paths.",
            show_default="none",
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", help="Verify and unpack an archive fetched by hand.", show_default="none"
        ),
    ] = None,
) -> None:
    """Fetch sources (HTTP, Zenodo, Figshare, Hugging Face, Kaggle, PhysioNet), verify and unpack them.

    A source that cannot be fetched automatically gets its homepage, access terms and the layout
    its files must have, and exit status 1 until they are in place.
    """
    from unimed_data.download import DownloadError, ManualDownloadRequired, download_dataset
    from unimed_data.manifest import find_manifest, load_manifest

    failed = 0
    for name in names:
        try:
            manifest = load_manifest(find_manifest(name))
            report = download_dataset(manifest, root, mirror=mirror, from_file=from_file)
        except ManualDownloadRequired as exc:
            terminal.say((f"{name}:", "yellow"), " ", str(exc))
            failed += 1
            continue
        except (DownloadError, ManifestError, ValueError) as exc:
            message = str(exc)
            terminal.error(message if message.startswith(f"{name}:") else f"{name}: {message}")
            failed += 1
            continue
        except OSError as exc:
            terminal.error(f"{name}: {_os_problem(exc)}")
            failed += 1
            continue
        state = "already complete" if report.skipped else f"{len(report.files)} file(s)"
        terminal.say(f"{name}: {state} in {root / (manifest.root or manifest.name)}")
    if failed:
        raise typer.Exit(1)


@app.command()
def sources(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (every field) instead of a table.", show_default=_OFF)
    ] = False,
    long: Annotated[
        bool,
        typer.Option("--long", help="Add licence, homepage and fetchers to the table.", show_default=_OFF),
    ] = False,
) -> None:
    """Every bundled source: modality, role (pretrain/eval), access, expected images; --long adds licences."""
    from unimed_data.sources import render_sources, source_rows

    rows = source_rows()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        render_sources(rows, terminal.console(), long=long)


# Options that only one or two evalset sources read: flag -> (parameter, default, sources).
_EVAL_ONLY = {
    "--holdout-train": ("holdout_train", 0.0, ("folder",)),
    "--holdout-val": ("holdout_val", 0.0, ("folder",)),
    "--root": ("root", None, ("manifest",)),
    "--with-train": ("with_train", False, ("manifest",)),
    "--split": ("split", "test", ("manifest", "build")),
    "--train-split": ("train_split", None, ("build",)),
    "--dataset": ("dataset", None, ("build",)),
    "--task": ("task", "classification", ("build",)),
}
_SOURCE_NAMES = {"folder": "--from-folder", "manifest": "MANIFEST", "build": "--from-build"}


@app.command()
def evalset(
    manifest: Annotated[
        str | None, typer.Argument(help="A classification manifest: bundled name or YAML path.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Evaluation set folder (CLIP_benchmark layout).")
    ] = ...,
    root: Annotated[
        Path | None, typer.Option("--root", help="Raw data root of MANIFEST.", show_default="none")
    ] = None,
    from_folder: Annotated[
        Path | None,
        typer.Option(
            "--from-folder", help="A folder-per-class tree: DIR/<class>/<images>.", show_default="none"
        ),
    ] = None,
    from_build: Annotated[
        Path | None,
        typer.Option("--from-build", help="The output folder of `unimed-data build`.", show_default="none"),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            "--modality",
            help=f"Needed for --from-folder: {', '.join(MODALITIES)}.",
            show_default="the source's",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the set.", show_default="the source's")
    ] = None,
    holdout_train: Annotated[
        float, typer.Option("--holdout-train", help="--from-folder: fraction per class written to train.")
    ] = 0.0,
    holdout_val: Annotated[
        float, typer.Option("--holdout-val", help="--from-folder: fraction per class written to val.")
    ] = 0.0,
    with_train: Annotated[
        bool,
        typer.Option(
            "--with-train", help="MANIFEST: also write its train and val splits.", show_default=_OFF
        ),
    ] = False,
    split: Annotated[
        str, typer.Option("--split", help="Source split(s) that form the test split, comma-separated.")
    ] = "test",
    train_split: Annotated[
        str | None,
        typer.Option("--train-split", help="--from-build: split(s) written as train.", show_default="none"),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", help="--from-build: keep only this dataset (repeatable).", show_default="all"
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="--from-build: classification (labels), modality (modality recognition) or retrieval (captions).",
        ),
    ] = "classification",
    templates: Annotated[
        Path | None,
        typer.Option(
            "--templates", help="Zero-shot templates, one per line with {c}.", show_default="bundled"
        ),
    ] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Samples per shard.")] = 1000,
    max_side: Annotated[
        int, typer.Option("--max-side", min=16, help="Longest image side.")
    ] = ConvertOptions.max_side,
    jpeg_quality: Annotated[
        int, typer.Option("--jpeg-quality", min=1, max=100, help="JPEG quality.")
    ] = ConvertOptions.jpeg_quality,
    seed: Annotated[int, typer.Option("--seed", help="Seed for holdout and shuffle.")] = 0,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes.", show_default="all cores")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Write an evaluation set (CLIP_benchmark webdataset layout) from a class-folder tree, a
    classification manifest or a build's held-out split."""
    from unimed_data.evalset import EvalSetError, write_evalset
    from unimed_data.evalset import sources as eval_sources
    from unimed_data.evalset.templates import bundled_templates_file
    from unimed_data.parallel import default_workers

    given = {
        "manifest": manifest is not None,
        "folder": from_folder is not None,
        "build": from_build is not None,
    }
    if sum(given.values()) != 1:
        _fail("give exactly one of: a MANIFEST (with --root), --from-folder DIR, or --from-build OUT")
    source = next(kind for kind, present in given.items() if present)
    for flag, (parameter, default, sources) in _EVAL_ONLY.items():
        if source not in sources and locals()[parameter] not in (None, default):
            _fail(f"{flag} applies to {' and '.join(_SOURCE_NAMES[s] for s in sources)} only")
    if modality is not None and modality not in MODALITIES:
        _fail(f"--modality {modality}: use one of {', '.join(MODALITIES)}")
    splits = tuple(s.strip() for s in split.split(",") if s.strip())
    try:
        if source == "folder":
            if modality is None:
                _fail(f"--from-folder needs --modality, one of: {', '.join(MODALITIES)}")
            collected = eval_sources.from_folder(
                from_folder,
                modality=modality,
                name=name,
                holdout_train=holdout_train,
                holdout_val=holdout_val,
                seed=seed,
            )
        elif source == "manifest":
            if root is None:
                _fail(f"{manifest}: a manifest needs --root RAW (the folder holding RAW/<name>/)")
            collected = eval_sources.from_manifest(
                manifest,
                root,
                test_splits=splits,
                with_train=with_train,
                seed=seed,
                name=name,
                modality=modality,
            )
        else:
            trains = tuple(s.strip() for s in (train_split or "").split(",") if s.strip())
            collected = eval_sources.from_build(
                from_build,
                splits=splits,
                train_splits=trains,
                datasets=tuple(dataset or ()),
                name=name or out.name,
                modality=modality,
                classes_from="modality" if task == "modality" else "labels",
            )
            if task == "modality":
                task, templates = "classification", templates or bundled_templates_file("modality")
        options = ConvertOptions(max_side=max_side, jpeg_quality=jpeg_quality)
        summary = write_evalset(
            collected,
            out,
            task=task,
            templates=templates,
            shard_size=shard_size,
            options=options,
            workers=workers or default_workers(),
            force=force,
        )
    except (EvalSetError, ManifestError, LayoutError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(_os_problem(exc))
    info = summary.info
    splits_line = ", ".join(f"{s} {n}" for s, n in info["splits"].items())
    terminal.say(
        f"{info['name']}: {info['task']}, {len(info['classes'])} classes; samples per split: {splits_line}"
    )
    terminal.say(f"Inputs {info['inputs']} = samples {summary.samples} + errors {info['errors']}")
    _print_error_rows(summary.errors, f"see {summary.out / 'errors.parquet'}")
    terminal.say(f"Evaluation set in {summary.out}")
    if info["splits"].get("test", 0) == 0:
        terminal.error("no test sample was written: see the errors above")
        raise typer.Exit(1)
