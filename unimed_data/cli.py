"""The `unimed-data` command line: build, the stages one by one, validate and stats."""

from __future__ import annotations

import json
import sys
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
    overrides = {"workers": given.workers, "seed": given.seed}
    config = config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if given.shard_size is not None:
        config.shard.shard_size = given.shard_size
    if given.max_side is not None:
        config.convert.max_side = given.max_side
    if given.jpeg_quality is not None:
        config.convert.jpeg_quality = given.jpeg_quality
    captions, llm = config.captions, config.captions.llm
    for target, attribute, value in (
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
        _print_error_examples(out)
        console.print(f"Shards, stats.json, errors.parquet and README.md are in {out}")
        if stats["totals"]["samples"] == 0:
            console.print("[red]error:[/red] no sample was written: check the paths and the errors above")
            raise typer.Exit(1)
    else:
        console.print(f"{', '.join(stages)} done; work tables in {out / 'work'}")


def _print_error_examples(out: Path, limit: int = 5) -> None:
    from unimed_data.tables import iter_rows

    errors = out / "errors.parquet"
    for shown, row in enumerate(iter_rows(errors)):
        if shown == limit:
            console.print(f"... and more: see {errors}")
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
