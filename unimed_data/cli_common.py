"""What the `unimed-data` commands share: their option types (each with its help line and the
default it shows) and the one way they report a failure.

Expected failures end as one `error:` line and exit status 2; `unimed_data.cli.main` reports
anything else as a bug.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import typer

from unimed_data import terminal
from unimed_data.config import BuildConfig, ConvertConfig, LLMConfig
from unimed_data.image_chunks import CHUNK_ROWS
from unimed_data.imaging import ConvertOptions
from unimed_data.schema import MODALITIES
from unimed_data.stages.shard_options import ShardOptions

ONE_SOURCE = "Give exactly one of CONFIG, --recipe NAME, --demo or --from-folder DIR."
OFF = "off"


def from_config(fallback: object) -> str:
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
        show_default=OFF,
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
RecipeOpt = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="A bundled build config by name (unimed: UniMed's 13 parts from its caption annotations), not CONFIG.",
        show_default="none",
    ),
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Raw data root of every dataset of CONFIG or --recipe (replaces the config's roots).",
        show_default="config's root",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail when a dataset's files are absent, instead of reporting it and building the rest.",
        show_default=from_config("missing_parts"),
    ),
]
TxtFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--txt-format",
        help="txt member: plain (the primary caption) or unimed (UniMed's separator-glued captions).",
        show_default=from_config("plain"),
    ),
]
LicenseOpt = Annotated[str, typer.Option("--license", help="Licence recorded for --from-folder data.")]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into a non-empty folder that is not ours; its files are never replaced.",
        show_default=OFF,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Processes.", show_default=from_config("all cores")),
]
ExecutorOpt = Annotated[
    Literal["local", "ray"] | None,
    typer.Option(
        "--executor",
        help="Where convert, fingerprint and shard tasks run: local (this machine's processes) or ray "
        "(a Ray cluster; needs the cluster extra and an OUT every node mounts).",
        show_default=from_config("local"),
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --executor ray: the cluster's head as HOST:PORT, or auto (a cluster started on this node).",
        show_default=from_config("RAY_ADDRESS, else a Ray started for the build"),
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Seed for splits, shuffle and caption choice.",
        show_default=from_config(BuildConfig.model_fields["seed"].default),
    ),
]
ShardSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--shard-size", min=1, help="Samples per shard.", show_default=from_config(ShardOptions.shard_size)
    ),
]
MaxSideOpt = Annotated[
    int | None,
    typer.Option(
        "--max-side", min=16, help="Longest image side.", show_default=from_config(ConvertOptions.max_side)
    ),
]
MinSideOpt = Annotated[
    int | None,
    typer.Option(
        "--min-side",
        min=1,
        help="Images whose shorter side is smaller are filtered (counted, with the reason).",
        show_default=from_config(ConvertConfig.model_fields["min_side"].default),
    ),
]
QualityOpt = Annotated[
    int | None,
    typer.Option(
        "--jpeg-quality",
        min=1,
        max=100,
        help="JPEG quality.",
        show_default=from_config(ConvertOptions.jpeg_quality),
    ),
]
OptimizeOpt = Annotated[
    bool | None,
    typer.Option(
        "--jpeg-optimize/--no-jpeg-optimize",
        help="Optimal Huffman tables: JPEGs 4-8 % smaller, convert up to a third slower.",
        show_default=from_config("off"),
    ),
]
ReencodeOpt = Annotated[
    Literal["auto", "always"] | None,
    typer.Option(
        "--reencode",
        help="auto: a source JPEG that fits the cap keeps its data (metadata removed); always: "
        "decode and encode every image.",
        show_default=from_config(ConvertOptions.reencode),
    ),
]
ChunkRowsOpt = Annotated[
    int | None,
    typer.Option(
        "--chunk-rows",
        min=1,
        help="Records per convert task and chunk file, on average (small datasets: ~256 chunks).",
        show_default=from_config(CHUNK_ROWS),
    ),
]
MaxErrorRateOpt = Annotated[
    float | None,
    typer.Option(
        "--max-error-rate",
        min=0.0,
        max=1.0,
        help="Exit with status 1 (after writing everything) when a larger share of inputs failed.",
        show_default=from_config(BuildConfig.model_fields["max_error_rate"].default),
    ),
]
ProtectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--protect",
        help="Keep an evaluation set's images out of the corpus (repeatable; added to the config's "
        "dedupe.protect): an evalset folder, NAME_OR_MANIFEST=RAW_ROOT, or all-present.",
        show_default="none",
    ),
]
DedupeOpt = Annotated[
    bool | None,
    typer.Option(
        "--dedupe/--no-dedupe",
        help="Remove duplicate and protected images (--no-dedupe keeps every image).",
        show_default=from_config("on"),
    ),
]
_LLM = "Captions"
_LLM_DEFAULTS = LLMConfig()
CaptionerOpt = Annotated[
    str | None,
    typer.Option(
        "--captioner",
        help="Caption backend: template (offline) or openai.",
        show_default=from_config("template"),
        rich_help_panel=_LLM,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.",
        show_default=from_config("OpenAI's"),
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
        show_default=from_config(_LLM_DEFAULTS.concurrency),
        rich_help_panel=_LLM,
    ),
]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-api-key-env",
        help="Environment variable holding the API key.",
        show_default=from_config(_LLM_DEFAULTS.api_key_env),
        rich_help_panel=_LLM,
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="Caption cache folder.",
        show_default=from_config("OUT/work/llm-cache"),
        rich_help_panel=_LLM,
    ),
]
BatchOpt = Annotated[
    bool,
    typer.Option(
        "--llm-batch",
        help="Use the OpenAI Batch API (half price).",
        show_default=from_config(OFF),
        rich_help_panel=_LLM,
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        help="Pilot: caption only the first N units.",
        show_default=from_config("all"),
        rich_help_panel=_LLM,
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the prompts, call count and token estimate; no network.",
        show_default=OFF,
        rich_help_panel=_LLM,
    ),
]


def fail(message: str) -> None:
    terminal.error(message)
    raise typer.Exit(2)


def os_problem(exc: OSError) -> str:
    """`path: reason` for a file-system error, without Python's `[Errno N]` noise."""
    return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)


def print_caption_plan(plan: dict) -> None:
    """A `--dry-run`'s plan (calls, cache hits, tokens, cost) as JSON, then its example prompts."""
    examples = plan.pop("example_prompts", [])
    sys.stdout.write(json.dumps(plan, indent=2) + "\n")
    for messages in examples:
        for message in messages:
            sys.stdout.write(f"--- {message['role']} ---\n{message['content']}\n")


def print_error_rows(rows: Iterable[dict], more: str, limit: int = 5) -> None:
    """The first `limit` error rows, then `more` (where the rest are) when there are more."""
    for shown, row in enumerate(rows):
        if shown == limit:
            terminal.say(f"... and more: {more}")
            break
        terminal.say(f"  {row['stage']}: {row['source_path']}: {row['reason']}")
