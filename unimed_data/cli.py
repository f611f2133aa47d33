"""The `unimed-data` command line: build, the stages one by one, validate and stats."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from unimed_data.config import BuildConfig, ConfigError, DatasetEntry, load_config
from unimed_data.manifest import ManifestError, validate_manifest
from unimed_data.schema import MODALITIES
from unimed_data.workspace import STAGES

app = typer.Typer(
    help="Build medical image-text corpora as WebDataset shards: ingest, convert, caption, shard.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

ConfigArg = Annotated[Path | None, typer.Argument(help="Build config YAML (datasets and stage options).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (shards, stats, work tables).")]
DemoOpt = Annotated[
    bool, typer.Option("--demo", help="Use the embedded demo corpus (pydicom's DICOM files).")
]
FolderOpt = Annotated[
    Path | None,
    typer.Option("--from-folder", help="A folder-per-class tree of images/DICOM (class = folder name)."),
]
ModalityOpt = Annotated[
    str | None, typer.Option("--modality", help=f"Modality of --from-folder: {', '.join(MODALITIES)}.")
]
LicenseOpt = Annotated[str, typer.Option("--license", help="Licence recorded for --from-folder data.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Processes (default: all cores).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for splits, shuffle and caption choice.")]
ShardSizeOpt = Annotated[
    int | None, typer.Option("--shard-size", min=1, help="Samples per shard (default 1000).")
]
MaxSideOpt = Annotated[
    int | None, typer.Option("--max-side", min=16, help="Longest image side (default 512).")
]
QualityOpt = Annotated[
    int | None, typer.Option("--jpeg-quality", min=1, max=100, help="JPEG quality (default 90).")
]
_LLM = "Captions"
CaptionerOpt = Annotated[
    str | None,
    typer.Option("--captioner", help="Caption backend: template (offline) or openai.", rich_help_panel=_LLM),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.",
        rich_help_panel=_LLM,
    ),
]
ModelOpt = Annotated[
    str | None, typer.Option("--llm-model", help="Model name at the endpoint.", rich_help_panel=_LLM)
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option("--llm-concurrency", min=1, help="Requests in flight (default 8).", rich_help_panel=_LLM),
]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option("--llm-api-key-env", help="Environment variable holding the API key.", rich_help_panel=_LLM),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Caption cache folder (default OUT/work/llm-cache).", rich_help_panel=_LLM),
]
BatchOpt = Annotated[
    bool, typer.Option("--llm-batch", help="Use the OpenAI Batch API (half price).", rich_help_panel=_LLM)
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="Pilot: caption only the first N units.", rich_help_panel=_LLM),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the prompts, call count and token estimate; no network.",
        rich_help_panel=_LLM,
    ),
]


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@dataclass(frozen=True)
class SourceOptions:
    """What a build or stage command was given: the data source and option overrides."""

    config: Path | None
    out: Path
    demo: bool
    from_folder: Path | None
    modality: str | None
    license: str
    workers: int | None
    seed: int | None
    shard_size: int | None
    max_side: int | None
    jpeg_quality: int | None
    captioner: str | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_concurrency: int | None = None
    llm_api_key_env: str | None = None
    cache: Path | None = None
    llm_batch: bool = False
    limit: int | None = None
    dry_run: bool = False


def _plan(given: SourceOptions):
    """The config and datasets of a command, from a config file, --demo or --from-folder."""
    from unimed_data.demo import stage_demo
    from unimed_data.pipeline import Dataset, resolve_datasets

    if sum([given.config is not None, given.demo, given.from_folder is not None]) != 1:
        _fail("give exactly one of: a CONFIG file, --demo, or --from-folder DIR")
    if given.out.exists() and not given.out.is_dir():
        _fail(f"--out {given.out}: exists and is not a folder")
    try:
        if given.config is not None:
            config = load_config(given.config)
            datasets = resolve_datasets(config)
        elif given.demo:
            raw = given.out / "work" / "demo-raw"
            datasets = [Dataset(m, raw) for m in stage_demo(raw)]
            config = BuildConfig(
                datasets=[DatasetEntry(manifest=d.manifest.name, root=raw) for d in datasets]
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
    except (ConfigError, ManifestError, ValueError) as exc:
        _fail(str(exc))
    # Options given on the command line replace the config's. The config was just built here and
    # its models do not validate on assignment, so a plain setattr is all an override needs.
    captions, llm = config.captions, config.captions.llm
    for target, attribute, value in (
        (config, "workers", given.workers),
        (config, "seed", given.seed),
        (config.shard, "shard_size", given.shard_size),
        (config.convert, "max_side", given.max_side),
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


def _run(stages: tuple[str, ...], given: SourceOptions) -> None:
    from unimed_data.pipeline import StageOrderError, plan_captions, run_stages
    from unimed_data.stats import render_stats
    from unimed_data.tables import iter_rows

    config, datasets = _plan(given)
    out = given.out
    if given.dry_run:
        try:
            plan = plan_captions(config, out, datasets)
        except (ManifestError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        examples = plan.pop("example_prompts", [])
        sys.stdout.write(json.dumps(plan, indent=2) + "\n")
        for messages in examples:
            for message in messages:
                sys.stdout.write(f"--- {message['role']} ---\n{message['content']}\n")
        return
    try:
        stats = run_stages(config, out, datasets, stages)
    except (StageOrderError, ManifestError, ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
    if stats is not None:
        render_stats(stats, Console())
        _print_error_rows(iter_rows(out / "errors.parquet"), out / "errors.parquet")
        console.print(f"Shards, stats.json, errors.parquet and README.md are in {out}")
        if stats["totals"]["samples"] == 0:
            console.print("[red]error:[/red] no sample was written: check the paths and the errors above")
            raise typer.Exit(1)
    else:
        console.print(f"{', '.join(stages)} done; work tables in {out / 'work'}")


def _print_error_rows(rows: Iterable[dict], more_at: Path, limit: int = 5) -> None:
    """The first `limit` error rows, then where the rest are when there are more."""
    for shown, row in enumerate(rows):
        if shown == limit:
            console.print(f"... and more: see {more_at}")
            break
        console.print(
            f"  {row['stage']}: {row['source_path']}: {row['reason']}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _stage_command(stages: tuple[str, ...], help_text: str):
    def command(
        config: ConfigArg = None,
        out: OutOpt = ...,
        demo: DemoOpt = False,
        from_folder: FolderOpt = None,
        modality: ModalityOpt = None,
        license: LicenseOpt = "unknown",
        workers: WorkersOpt = None,
        seed: SeedOpt = None,
        shard_size: ShardSizeOpt = None,
        max_side: MaxSideOpt = None,
        jpeg_quality: QualityOpt = None,
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
        given = SourceOptions(**{k: v for k, v in locals().items() if k != "stages"})
        _run(stages, given)

    command.__doc__ = help_text
    return command


app.command("build")(_stage_command(STAGES, "Run every stage: ingest, convert, caption, shard."))
app.command("ingest")(_stage_command(("ingest",), "Read manifests into work/<dataset>/records.parquet."))
app.command("convert")(_stage_command(("convert",), "Convert source images to capped JPEGs."))
app.command("caption")(_stage_command(("caption",), "Give every record captions (template or LLM backend)."))
app.command("shard")(
    _stage_command(("shard",), "Write WebDataset shards, sizes.json, index, stats and card.")
)


@app.command()
def validate(
    out: Annotated[Path, typer.Argument(help="Output folder of a build.")],
    workers: WorkersOpt = None,
) -> None:
    """Re-read every shard with webdataset and check images, keys, json and counts."""
    from unimed_data.parallel import default_workers
    from unimed_data.validate import validate_output

    problems = validate_output(out, workers=workers or default_workers())
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}", highlight=False)
    if problems:
        console.print(f"{len(problems)} problem(s) in {out}")
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: every shard in {out} reads back and matches sizes.json and stats.json")


@app.command()
def stats(
    out: Annotated[Path, typer.Argument(help="Output folder of a build.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print stats.json instead of tables.")] = False,
) -> None:
    """Counts per dataset, modality, split, caption source, and errors."""
    from unimed_data.stats import load_stats, render_stats

    try:
        data = load_stats(out)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        render_stats(data, Console())


@app.command()
def download(
    names: Annotated[list[str], typer.Argument(help="Bundled manifest names or manifest YAML paths.")],
    root: Annotated[Path, typer.Option("--root", help="Raw data root; each source goes to ROOT/<name>/.")],
    mirror: Annotated[
        str | None,
        typer.Option("--mirror", help="Base URL of an institutional mirror serving the same paths."),
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="Verify and unpack an archive fetched by hand.")
    ] = None,
) -> None:
    """Fetch sources (HTTP, Zenodo, Figshare, Hugging Face, Kaggle, PhysioNet), verify and unpack them."""
    from unimed_data.download import DownloadError, ManualDownloadRequired, download_dataset
    from unimed_data.manifest import find_manifest, load_manifest

    failed = 0
    for name in names:
        try:
            manifest = load_manifest(find_manifest(name))
            report = download_dataset(manifest, root, mirror=mirror, from_file=from_file)
        except ManualDownloadRequired as exc:
            console.print(f"[yellow]{name}:[/yellow] {exc}", highlight=False, markup=False)
            failed += 1
            continue
        except (DownloadError, ManifestError, OSError, ValueError) as exc:
            console.print(f"[red]error:[/red] {name}: {exc}", highlight=False)
            failed += 1
            continue
        state = "already complete" if report.skipped else f"{len(report.files)} file(s)"
        console.print(f"{name}: {state} in {root / (manifest.root or manifest.name)}")
    if failed:
        raise typer.Exit(1)


@app.command()
def sources(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every bundled source: modality, role (pretrain/eval), access, licence, expected images."""
    from unimed_data.sources import render_sources, source_rows

    rows = source_rows()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        render_sources(rows, Console())


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
    root: Annotated[Path | None, typer.Option("--root", help="Raw data root of MANIFEST.")] = None,
    from_folder: Annotated[
        Path | None, typer.Option("--from-folder", help="A folder-per-class tree: DIR/<class>/<images>.")
    ] = None,
    from_build: Annotated[
        Path | None, typer.Option("--from-build", help="The output folder of `unimed-data build`.")
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option("--modality", help=f"Needed for --from-folder: {', '.join(MODALITIES)}."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the set (default: the source's).")
    ] = None,
    holdout_train: Annotated[
        float, typer.Option("--holdout-train", help="--from-folder: fraction per class written to train.")
    ] = 0.0,
    holdout_val: Annotated[
        float, typer.Option("--holdout-val", help="--from-folder: fraction per class written to val.")
    ] = 0.0,
    with_train: Annotated[
        bool, typer.Option("--with-train", help="MANIFEST: also write its train and val splits.")
    ] = False,
    split: Annotated[
        str, typer.Option("--split", help="Source split(s) that form the test split, comma-separated.")
    ] = "test",
    train_split: Annotated[
        str | None, typer.Option("--train-split", help="--from-build: split(s) written as train.")
    ] = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", help="--from-build: keep only this dataset (repeatable).")
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="--from-build: classification (labels), modality (modality recognition) or retrieval (captions).",
        ),
    ] = "classification",
    templates: Annotated[
        Path | None, typer.Option("--templates", help="Zero-shot templates, one per line with {c}.")
    ] = None,
    shard_size: ShardSizeOpt = None,
    max_side: MaxSideOpt = None,
    jpeg_quality: QualityOpt = None,
    seed: SeedOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Write an evaluation set (CLIP_benchmark webdataset layout) from a class-folder tree, a
    classification manifest or a build's held-out split."""
    from unimed_data.evalset import EvalSetError, write_evalset
    from unimed_data.evalset import sources as eval_sources
    from unimed_data.evalset.templates import bundled_templates_file
    from unimed_data.imaging import ConvertOptions
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
                seed=seed or 0,
            )
        elif source == "manifest":
            if root is None:
                _fail(f"{manifest}: a manifest needs --root RAW (the folder holding RAW/<name>/)")
            collected = eval_sources.from_manifest(
                manifest,
                root,
                test_splits=splits,
                with_train=with_train,
                seed=seed or 0,
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
        sizes = {"max_side": max_side, "jpeg_quality": jpeg_quality}
        options = ConvertOptions(**{k: v for k, v in sizes.items() if v is not None})
        summary = write_evalset(
            collected,
            out,
            task=task,
            templates=templates,
            shard_size=shard_size or 1000,
            options=options,
            workers=workers or default_workers(),
        )
    except (EvalSetError, ManifestError) as exc:
        _fail(str(exc))
    info = summary.info
    splits_line = ", ".join(f"{s} {n}" for s, n in info["splits"].items())
    console.print(
        f"{info['name']}: {info['task']}, {len(info['classes'])} classes; samples per split: {splits_line}"
    )
    console.print(f"Inputs {info['inputs']} = samples {summary.samples} + errors {info['errors']}")
    _print_error_rows(summary.errors, summary.out / "errors.parquet")
    console.print(f"Evaluation set in {summary.out}")
    if info["splits"].get("test", 0) == 0:
        console.print("[red]error:[/red] no test sample was written: see the errors above")
        raise typer.Exit(1)
