"""The build configuration: which datasets, and every stage option in one validated place."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unimed_data.bundled import bundled
from unimed_data.image_chunks import CHUNK_ROWS
from unimed_data.imaging import ConvertOptions
from unimed_data.stages.shard_options import ShardOptions


class ConfigError(ValueError):
    """A configuration problem, naming the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetEntry(_Strict):
    manifest: str = Field(description="a bundled manifest name or a path to a manifest YAML")
    root: Path | None = Field(
        None,
        description="raw data root; the dataset's files lie under root/<manifest.root or name>; "
        "default: the config's `root`",
    )
    expected_samples: int | None = Field(
        None,
        ge=0,
        description="samples the reference corpus has for this part; stats show the build's beside it",
    )


class ConvertConfig(_Strict):
    # The defaults are `ConvertOptions`'s own (one place owns them); here they gain bounds.
    max_side: int = Field(ConvertOptions.max_side, ge=16)
    # A corpus policy rather than a decoder default: icons, 1×1 placeholders and thumbnails carry
    # too little to learn from, while an evaluation set keeps every image its benchmark has.
    min_side: int = Field(32, ge=1)
    jpeg_quality: int = Field(ConvertOptions.jpeg_quality, ge=1, le=100)
    max_pixels: int = Field(ConvertOptions.max_pixels, ge=1)
    frame: Literal["first", "middle", "last"] = ConvertOptions.frame
    reencode: Literal["auto", "always"] = ConvertOptions.reencode
    jpeg_optimize: bool = ConvertOptions.jpeg_optimize
    # Records per task and per chunk file on average: big enough that per-task costs vanish, small
    # enough that a killed run loses little (smaller datasets get smaller chunks: chunk_size).
    chunk_rows: int = Field(CHUNK_ROWS, ge=1, le=1 << 20)

    def options(self) -> ConvertOptions:
        return ConvertOptions(**self.model_dump(exclude={"chunk_rows"}))


class LLMConfig(_Strict):
    """The `openai` backend: any OpenAI-compatible endpoint (OpenAI, Azure-style, vLLM, Ollama, TGI)."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the environment variable with the key")
    concurrency: int = Field(8, ge=1, le=1024)
    temperature: float = Field(0.7, ge=0, le=2)
    seed: int | None = 0
    max_tokens: int = Field(1024, ge=16)
    timeout: float = Field(60.0, gt=0)
    max_attempts: int = Field(6, ge=1)  # per request, for transport errors
    validation_attempts: int = Field(3, ge=1)  # per unit, for invalid answers
    retry_base_seconds: float = Field(1.0, ge=0)
    retry_max_seconds: float = Field(60.0, ge=0)
    token_budget: int = Field(77, ge=8, description="77 for CLIP BPE, 256 for BiomedBERT")
    tokenizer: str = Field("clip", description="clip | words | hf:<local tokenizer path>")
    price_input_per_1m: float = Field(0.0, ge=0, description="USD per million input tokens")
    price_output_per_1m: float = Field(0.0, ge=0, description="USD per million output tokens")
    structured_output: bool = True
    batch: bool = Field(False, description="use the Batch API (half price, asynchronous)")
    batch_poll_seconds: float = Field(30.0, gt=0)
    cache_dir: Path | None = Field(None, description="caption cache folder; default OUT/work/llm-cache")

    @property
    def prices(self) -> tuple[float, float]:
        """USD per million (input, output) tokens."""
        return self.price_input_per_1m, self.price_output_per_1m


class CaptionConfig(_Strict):
    backend: Literal["template", "openai"] = "template"
    per_record: int = Field(10, ge=1, le=100)
    templates_dir: Path | None = None
    limit: int | None = Field(None, ge=1, description="pilot: caption only the first N units")
    llm: LLMConfig = LLMConfig()


class ShardConfig(_Strict):
    # The defaults are `ShardOptions`'s own; the seed is the build's.
    shard_size: int = Field(ShardOptions.shard_size, ge=1)
    prefix: str = ShardOptions.prefix
    txt_format: Literal["plain", "unimed"] = ShardOptions.txt_format

    def options(self, seed: int) -> ShardOptions:
        return ShardOptions(
            shard_size=self.shard_size, prefix=self.prefix, seed=seed, txt_format=self.txt_format
        )


class DedupeConfig(_Strict):
    enabled: bool = Field(True, description="remove duplicates and benchmark images (off: keep everything)")
    radius: int = Field(
        8, ge=0, le=10, description="largest perceptual-hash distance of a near match, in bits"
    )
    max_thumb_difference: float = Field(
        0.45, ge=0, description="largest thumbnail difference that confirms a near match"
    )
    priority: list[str] = Field(
        [], description="dataset names, most preferred first: which member of a duplicate group is kept"
    )
    protect: list[str] = Field(
        [],
        description="evaluation sets kept out of the corpus: an evalset folder, NAME_OR_MANIFEST=RAW_ROOT, "
        "or all-present",
    )


class BuildConfig(_Strict):
    datasets: list[DatasetEntry] = Field(min_length=1)
    root: Path | None = Field(None, description="raw data root of every dataset that names none")
    reference: str = Field(
        "expected", description="name of the corpus whose counts `expected_samples` gives, e.g. UniMed"
    )
    seed: int = 0
    include_eval: bool = Field(
        False, description="build evaluation-only sources too (role: eval); by default they are left out"
    )
    workers: int | None = Field(None, ge=1, description="processes for convert/shard; default: all cores")
    executor: Literal["local", "ray"] = Field(
        "local", description="where convert, fingerprint and shard tasks run: this machine, or a Ray cluster"
    )
    ray_address: str | None = Field(
        None,
        description="the Ray cluster (HOST:PORT of its head, or auto); default: RAY_ADDRESS, else a local Ray",
    )
    missing_parts: Literal["fail", "skip"] = Field(
        "fail",
        description="a dataset whose folder or annotation files are absent: fail the build, or report "
        "it with what to download and build the rest",
    )
    max_error_rate: float = Field(
        0.5, ge=0, le=1, description="exit with status 1 when a larger share of inputs failed"
    )
    patient_salt_env: str = Field(
        "UNIMED_PATIENT_SALT",
        description="environment variable holding the salt for patient-id hashes; "
        "if unset, a random salt is kept in OUT/work/salt",
    )
    convert: ConvertConfig = ConvertConfig()
    captions: CaptionConfig = CaptionConfig()
    dedupe: DedupeConfig = DedupeConfig()
    shard: ShardConfig = ShardConfig()

    @model_validator(mode="after")
    def _every_dataset_has_a_root(self) -> BuildConfig:
        for index, entry in enumerate(self.datasets):
            entry.root = entry.root or self.root
            if entry.root is None:
                raise ValueError(f"datasets[{index}] ({entry.manifest}): no `root`, and the config has none")
        return self


def recipe_path(name: str) -> Path:
    """A bundled recipe (a build config users copy and edit) by name, e.g. `unimed`."""
    folder = bundled("recipes")
    names = sorted(
        entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )
    if name not in names:
        raise ConfigError(f"--recipe {name}: no such recipe (bundled: {', '.join(names)})")
    return folder / f"{name}.yaml"


def load_config(path: Path, *, root: Path | None = None) -> BuildConfig:
    """Read a YAML build config; relative paths are taken from the config file's folder."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if root is not None and isinstance(data, dict):  # --root RAW: every dataset's raw root
        data = {**data, "root": str(root.resolve())}
        for entry in data.get("datasets") or []:
            if isinstance(entry, dict):
                entry.pop("root", None)
    try:
        config = BuildConfig.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
    base = path.parent.resolve()
    config.root = (base / config.root).resolve() if config.root is not None else None
    for entry in config.datasets:
        entry.root = (base / entry.root).resolve()
        candidate = base / entry.manifest
        if candidate.suffix in (".yaml", ".yml"):
            entry.manifest = str(candidate.resolve())
    config.dedupe.protect = [resolve_protect(spec, base) for spec in config.dedupe.protect]
    if config.captions.templates_dir is not None:
        config.captions.templates_dir = (base / config.captions.templates_dir).resolve()
    if config.captions.llm.cache_dir is not None:
        config.captions.llm.cache_dir = (base / config.captions.llm.cache_dir).resolve()
    return config


def resolve_protect(spec: str, base: Path) -> str:
    """A `protect` entry with its path taken from `base` (the config's folder, or the working folder
    for `--protect`): an evalset folder, or the raw root after `=`; `all-present` as it is."""
    if spec in ("all-present", "unimed-benchmark"):
        return spec
    name, sep, root = spec.partition("=")
    if sep:
        if name.endswith((".yaml", ".yml")):
            name = str((base / name).resolve())
        return f"{name}={(base / root).resolve()}"
    return str((base / spec).resolve())
