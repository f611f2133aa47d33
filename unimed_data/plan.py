"""Build planning: the config and datasets a `build` or stage command runs on, from a config file,
a bundled recipe, the demo corpus or a folder-per-class tree, with the command line's overrides.

Everything that can be checked without writing is checked before the output folder is claimed;
a dry run claims nothing and stages the demo corpus in a scratch folder instead of OUT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unimed_data import terminal
from unimed_data.config import (
    BuildConfig,
    ConvertConfig,
    DatasetEntry,
    load_config,
    recipe_path,
    resolve_protect,
)
from unimed_data.manifest import folder_manifest
from unimed_data.parts import left_unread, missing_files, what_to_get
from unimed_data.pipeline import Dataset, claim_build_output, resolve_datasets
from unimed_data.protect import ProtectError, check_spec
from unimed_data.schema import MODALITIES
from unimed_data.workspace import Workspace


class PlanError(ValueError):
    """The command line names no usable source or option; its message is the one error line."""


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
    executor: str | None = None
    ray_address: str | None = None
    seed: int | None = None
    shard_size: int | None = None
    txt_format: str | None = None
    max_side: int | None = None
    min_side: int | None = None
    jpeg_quality: int | None = None
    jpeg_optimize: bool | None = None
    reencode: str | None = None
    chunk_rows: int | None = None
    max_error_rate: float | None = None
    protect: list[str] | None = None
    dedupe: bool | None = None
    captioner: str | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_concurrency: int | None = None
    llm_api_key_env: str | None = None
    cache: Path | None = None
    llm_batch: bool = False
    limit: int | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class BuildPlan:
    config: BuildConfig
    datasets: list[Dataset]
    left_out: tuple[tuple[Dataset, str], ...]  # datasets whose files are absent, with what is missing


def plan_build(given: SourceOptions, scratch: Path | None = None) -> BuildPlan:
    """The plan of a command; claims OUT unless it is a dry run, whose demo corpus goes to `scratch`.

    Raises `PlanError` (or the config's and manifests' own errors) for bad input.
    """
    _check_out(given.out)
    sources = [given.config is not None, given.recipe is not None, given.demo, given.from_folder is not None]
    if sum(sources) != 1:
        raise PlanError("give exactly one of: a CONFIG file, --recipe NAME, --demo, or --from-folder DIR")
    if given.root is not None and given.config is None and given.recipe is None:
        raise PlanError("--root applies to a CONFIG file or --recipe only")
    left_out: list = []
    if given.config is not None or given.recipe is not None:
        config, datasets, left_out = _from_config(given)
    elif given.demo:
        from unimed_data.demo import DEMO_MIN_SIDE, stage_demo  # pydicom: only the demo reads headers

        if not given.dry_run:
            claim_build_output(given.out, force=given.force)  # before the demo's raw copy is written
        raw = (scratch if given.dry_run else given.out / "work") / "demo-raw"
        datasets = [Dataset(m, raw) for m in stage_demo(raw)]
        config = BuildConfig(
            datasets=[DatasetEntry(manifest=d.manifest.name, root=raw) for d in datasets],
            convert=ConvertConfig(min_side=DEMO_MIN_SIDE),
        )
    else:
        config, datasets = _from_folder(given)
    if not given.demo and not given.dry_run:
        claim_build_output(given.out, force=given.force)
    _override(config, given)
    return BuildPlan(config, datasets, tuple(left_out))


def _check_out(out: Path) -> None:
    """OUT is a folder every worker writes to (with Ray: on every node), never object storage."""
    scheme = out.parts[0] if out.parts else ""
    if scheme.endswith(":") and len(scheme) > 2:  # s3://bucket/x, as the shell passed it (not C:)
        url = str(out).replace(":/", "://", 1)
        raise PlanError(
            f"--out {url}: a build writes to a folder (with --executor ray, one every node mounts), "
            f"not to object storage; build to a shared folder, then `unimed-data publish OUT {url}`"
        )


def _from_config(given: SourceOptions):
    if given.recipe is not None and given.root is None:
        raise PlanError(f"--recipe {given.recipe} needs --root RAW, the folder holding the raw sources")
    path = given.config if given.config is not None else recipe_path(given.recipe)
    config = load_config(path, root=given.root)
    if given.strict:
        config.missing_parts = "fail"
    datasets, left_out = _in_place(resolve_datasets(config), given.out, config.missing_parts == "fail")
    return config, datasets, left_out


def _from_folder(given: SourceOptions):
    """The config and dataset of `--from-folder DIR`: a folder-per-class tree as one manifest."""
    if not given.from_folder.is_dir():
        raise PlanError(f"--from-folder {given.from_folder}: not a folder")
    if given.modality not in MODALITIES:
        raise PlanError(f"--from-folder needs --modality, one of: {', '.join(MODALITIES)}")
    folder = given.from_folder.resolve()
    manifest = folder_manifest(folder, name=folder.name, modality=given.modality, license=given.license)
    config = BuildConfig(datasets=[DatasetEntry(manifest=manifest.name, root=folder.parent)])
    return config, [Dataset(manifest, folder.parent)]


def _override(config: BuildConfig, given: SourceOptions) -> None:
    """Options given on the command line replace the config's. The config was just built here and
    its models do not validate on assignment, so a plain setattr is all an override needs."""
    captions, llm = config.captions, config.captions.llm
    for target, attribute, value in (
        (config, "workers", given.workers),
        (config, "executor", given.executor),
        (config, "ray_address", given.ray_address),
        (config, "seed", given.seed),
        (config, "max_error_rate", given.max_error_rate),
        (config.dedupe, "enabled", given.dedupe),
        (config.shard, "shard_size", given.shard_size),
        (config.shard, "txt_format", given.txt_format),
        (config.convert, "max_side", given.max_side),
        (config.convert, "min_side", given.min_side),
        (config.convert, "jpeg_quality", given.jpeg_quality),
        (config.convert, "jpeg_optimize", given.jpeg_optimize),
        (config.convert, "reencode", given.reencode),
        (config.convert, "chunk_rows", given.chunk_rows),
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
    protect = [resolve_protect(spec, Path.cwd()) for spec in given.protect or ()]
    config.dedupe.protect = [*config.dedupe.protect, *(s for s in protect if s not in config.dedupe.protect)]
    for spec in config.dedupe.protect:
        try:
            check_spec(spec, config.root)
        except ProtectError as exc:
            raise PlanError(str(exc)) from None
    if config.ray_address is not None and config.executor != "ray":
        raise PlanError(f"--ray-address {config.ray_address} applies to --executor ray only")
    if captions.backend not in ("template", "openai"):
        raise PlanError(f"--captioner {captions.backend}: use template or openai")
    if config.shard.txt_format not in ("plain", "unimed"):
        raise PlanError(f"--txt-format {config.shard.txt_format}: use plain or unimed")


def _in_place(datasets: list[Dataset], out: Path, strict: bool):
    """The datasets whose files are in place, and the others with what is missing.

    Checked before the output folder is made. Strict, the first absent dataset (a typo in `root:`,
    a source not downloaded yet) is the error; otherwise each is reported once, with what to
    download and where, and the build goes on with the rest. A dataset an earlier run already
    ingested into OUT stays in, so later stages can run alone after its raw files moved.
    """
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
            raise PlanError(f"dataset {dataset.manifest.name}: {problem}")
        terminal.say((f"{dataset.manifest.name}:", "yellow"), " ", f"left out: {problem}")
        left_out.append((dataset, problem.partition("; ")[0]))
    if not kept:
        raise PlanError(
            "no dataset of the build is in place: download them as said above, or check --root/`root:`"
        )
    return kept, left_out
