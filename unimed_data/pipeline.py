"""Runs the stages in order over the datasets of a build; each stage can also run alone."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from unimed_data.captions import Captioner, make_captioner
from unimed_data.captions.answers import leak_ids
from unimed_data.captions.openai_backend import DatasetHints, LLMSettings, OpenAICaptioner
from unimed_data.card import SourceInfo, write_card
from unimed_data.config import BuildConfig
from unimed_data.ingest import dataset_root, ingest_dataset
from unimed_data.layouts import LayoutError
from unimed_data.manifest import Manifest, find_manifest, load_manifest
from unimed_data.outputs import claim_output
from unimed_data.parallel import default_workers
from unimed_data.schema import SPLITS, dataset_slug
from unimed_data.stages.caption import caption_dataset, caption_units
from unimed_data.stages.convert import convert_dataset
from unimed_data.stages.shard import shard_datasets
from unimed_data.stamps import inputs_unchanged
from unimed_data.stats import collect_errors, compute_stats, write_stats
from unimed_data.tables import atomic_write_text
from unimed_data.workspace import STAGES, Workspace


class StageOrderError(RuntimeError):
    """A stage was asked to run before the stage it reads from."""


@dataclass(frozen=True)
class Dataset:
    manifest: Manifest
    root: Path
    expected: int | None = None  # samples the reference corpus has for this part

    @property
    def slug(self) -> str:
        return dataset_slug(self.manifest.name)


def resolve_datasets(config: BuildConfig) -> list[Dataset]:
    """The config's datasets; evaluation-only sources are left out unless `include_eval` is set,
    so a pretraining corpus never holds the images it will be evaluated on."""
    datasets = [
        Dataset(load_manifest(find_manifest(e.manifest)), e.root, e.expected_samples) for e in config.datasets
    ]
    excluded = [d.manifest.name for d in datasets if d.manifest.role == "eval" and not config.include_eval]
    if excluded:
        print(
            f"left out evaluation-only sources: {', '.join(excluded)} (set include_eval to build them)",
            file=sys.stderr,
        )
        datasets = [d for d in datasets if d.manifest.name not in excluded]
    if not datasets:
        raise ValueError("no dataset left to build: every listed source is evaluation-only")
    slugs = [d.slug for d in datasets]
    if duplicates := sorted({s for s in slugs if slugs.count(s) > 1}):
        raise ValueError(f"datasets listed twice in the build: {', '.join(duplicates)}")
    return datasets


def claim_build_output(out: Path, *, force: bool = False) -> None:
    """Make `out` a build folder of ours before anything (the demo's raw copy included) is written."""
    ws = Workspace(out)
    names = [ws.work, *(ws.split_dir(s) for s in SPLITS), ws.stats, ws.all_errors, ws.card]
    claim_output(out, "build", [p.name for p in names], force=force)


def patient_salt(config: BuildConfig, ws: Workspace) -> str:
    """The salt from the environment, else one random salt kept for this output folder."""
    if salt := os.environ.get(config.patient_salt_env):
        return salt
    path = ws.salt
    if not path.exists():
        atomic_write_text(path, secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text()


def run_stages(
    config: BuildConfig,
    out: Path,
    datasets: list[Dataset],
    stages: tuple[str, ...] = STAGES,
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
    datasets, left_out = list(datasets), list(left_out)
    ws = Workspace(out.resolve())
    workers = config.workers or default_workers()
    if captioner is None:
        captioner = prepare(config, ws, datasets)
    _remove_stale_temp_files(ws)
    salt = None  # read (or made) once, and only when ingest runs
    for stage in STAGES:
        if stage not in stages:
            continue
        llm = captioner if stage == "caption" and isinstance(captioner, OpenAICaptioner) else None
        if llm is not None and llm.limit is not None:  # only a --limit pilot needs every unit up front
            llm.choose_pilot(_units_in_order(ws, datasets))
        for dataset in datasets:
            _require_input(ws, stage, dataset.slug)
            if stage == "ingest":
                if salt is None:
                    salt = patient_salt(config, ws)
                if reason := _ingest_or_reason(config, ws, dataset, salt):
                    left_out.append((dataset, reason))
            elif stage == "convert":
                convert_dataset(ws, dataset.slug, config.convert.options(), workers=workers)
            elif stage == "caption":
                _caption_with_usage(ws, dataset.slug, captioner)
        datasets = [d for d in datasets if all(d is not gone for gone, _ in left_out)]
        if not datasets:
            raise ValueError("no dataset of the build could be read: see the lines above")
        if llm is not None:
            print(llm.usage.line(), file=sys.stderr)
        if stage == "shard":
            before = _published_files(ws)
            stats = finish(config, ws, datasets, workers, left_out)
            if _published_files(ws) == before:
                print(
                    f"nothing to do: {ws.out} was already up to date; no file was rewritten", file=sys.stderr
                )
            return stats
    return None


def _ingest_or_reason(config: BuildConfig, ws: Workspace, dataset: Dataset, salt: str) -> str | None:
    """Ingest one dataset. With `missing_parts: skip`, annotations that cannot be read (a broken
    file, lists of different lengths) leave that dataset out, said once, instead of the build."""
    try:
        ingest_dataset(dataset.manifest, dataset.root, ws.datasets, salt=salt, seed=config.seed)
    except LayoutError as exc:
        if config.missing_parts == "fail":
            raise
        print(f"{dataset.manifest.name}: left out: {exc}", file=sys.stderr)
        return str(exc)
    return None


def _published_files(ws: Workspace) -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file a build publishes (not its work folder)."""
    folders = [ws.out, *(ws.split_dir(s) for s in SPLITS)]
    files = [p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.is_file()]
    return sorted((str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in files)


def prepare(config: BuildConfig, ws: Workspace, datasets: list[Dataset]) -> Captioner:
    """Checks that come before any stage writes, and the configured caption backend."""
    _check_output_outside_sources(ws, datasets)
    return build_captioner(config, ws, datasets)


def _caption_with_usage(ws: Workspace, slug: str, captioner: Captioner) -> None:
    """Caption a dataset; for an LLM backend, keep what it cost beside the dataset's tables."""
    before = captioner.usage.as_dict() if isinstance(captioner, OpenAICaptioner) else None
    summary = caption_dataset(ws, slug, captioner)
    if before is not None and not summary.skipped:
        spent = {k: v - before[k] for k, v in captioner.usage.as_dict().items()}
        atomic_write_text(ws.llm_usage(slug), json.dumps(spent, indent=2, sort_keys=True))


def build_captioner(config: BuildConfig, ws: Workspace, datasets: list[Dataset]) -> Captioner:
    """The configured caption backend, with what each dataset's manifest tells the prompts."""
    captions = config.captions
    if captions.backend == "template":
        return make_captioner(
            "template", seed=config.seed, per_record=captions.per_record, templates_dir=captions.templates_dir
        )
    llm = captions.llm
    if not llm.model:
        raise ValueError("the openai caption backend needs a model: captions.llm.model or --llm-model")
    hints = {
        d.manifest.name: DatasetHints(
            definitions=dict(d.manifest.definitions),
            raw_label_ids=tuple(leak_ids(d.manifest.classes, d.manifest.name, d.manifest.slug)),
        )
        for d in datasets
    }
    settings = LLMSettings(**llm.model_dump(exclude={"cache_dir"}))
    return OpenAICaptioner(
        settings,
        cache_path=(llm.cache_dir or ws.work / "llm-cache") / "captions.sqlite",
        per_record=captions.per_record,
        templates_dir=captions.templates_dir,
        hints=hints,
        limit=captions.limit,
    )


def plan_captions(config: BuildConfig, out: Path, datasets: list[Dataset]) -> dict:
    """`--dry-run`: ingest (cheap, local), then the caption units, calls and tokens a run would need.

    Units come from the converted tables where convert has run, else from the ingested records
    (an upper bound: records that fail conversion are never captioned). Nothing goes to the network.
    """
    ws = Workspace(out.resolve())
    captioner = prepare(config, ws, datasets)
    run_stages(config, out, datasets, ("ingest",), captioner=captioner)
    units = _units_in_order(ws, datasets)
    if isinstance(captioner, OpenAICaptioner):
        captioner.choose_pilot(units)
        return captioner.plan(units)
    return {"backend": "template", "units": len(set(units)), "calls": 0}


def _units_in_order(ws: Workspace, datasets: list[Dataset]) -> list:
    """Caption units dataset by dataset in config order (each dataset's sorted), from the converted
    tables where convert has run, else from the ingested records."""
    units = []
    for dataset in datasets:
        converted = ws.converted(dataset.slug)
        table = converted if converted.exists() else ws.records(dataset.slug)
        if table.exists():
            units.extend(sorted(caption_units(table), key=repr))
    return units


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


def _check_output_outside_sources(ws: Workspace, datasets: list[Dataset]) -> None:
    """An output folder inside a dataset's folder would be read back as input on the next run."""
    for dataset in datasets:
        root = dataset_root(dataset.manifest, dataset.root).resolve()
        if ws.out == root or root in ws.out.parents:
            raise ValueError(
                f"the output folder {ws.out} lies inside the files of dataset {dataset.manifest.name} "
                f"({root}); choose an output folder outside it"
            )


def finish(
    config: BuildConfig,
    ws: Workspace,
    datasets: list[Dataset],
    workers: int,
    left_out: list[tuple[Dataset, str]],
) -> dict:
    slugs = [d.slug for d in datasets]
    tags = {d.manifest.name: d.manifest.unimed_tag for d in datasets if d.manifest.unimed_tag}
    options = replace(config.shard.options(config.seed), txt_tags=tuple(sorted(tags.items())))
    shard_datasets(ws, slugs, options, workers=workers)
    collect_errors(ws, slugs)
    filtered = {slug: _ingest_filtered(ws, slug) for slug in slugs}
    stats = compute_stats(
        ws,
        slugs,
        filtered=filtered,
        config={"seed": config.seed, **config.shard.model_dump(), **({"txt_tags": tags} if tags else {})},
        reference=reference_counts(config.reference, datasets, left_out),
    )
    write_stats(ws, stats)
    sources = [
        SourceInfo(
            d.slug,
            d.manifest.name,
            d.manifest.modality,
            d.manifest.license,
            d.manifest.homepage,
            d.manifest.citation,
        )
        for d in datasets
    ]
    write_card(ws, stats, sources, config.shard.prefix)
    return stats


def reference_counts(name: str, datasets: list[Dataset], left_out: list[tuple[Dataset, str]]) -> dict | None:
    """Each part's count in the reference corpus (the config's `expected_samples`), with the reason
    a part was not built; None when the config gives no counts."""
    parts = {
        dataset.manifest.name: {"expected": dataset.expected, "missing": reason}
        for dataset, reason in [*((d, None) for d in datasets), *left_out]
        if dataset.expected is not None
    }
    return {"name": name, "parts": parts} if parts else None


# stage -> the stages before it that it depends on: (their stamp, the table they read, their output)
_UPSTREAM = {
    "convert": [],
    "caption": [("convert", "records", "converted")],
    "shard": [("convert", "records", "converted"), ("caption", "converted", "captioned")],
}
_FIRST_INPUT = {
    "convert": ("records", "ingest"),
    "caption": ("converted", "convert"),
    "shard": ("captioned", "caption"),
}


def _require_input(ws: Workspace, stage: str, slug: str) -> None:
    """A stage run alone must not read tables missing or left stale by an upstream rerun."""
    if stage not in _FIRST_INPUT:
        return
    table, before = _FIRST_INPUT[stage]
    path = getattr(ws, table)(slug)
    if not path.exists():
        raise StageOrderError(f"{stage} needs {path}, which the {before} stage writes: run `{before}` first")
    for upstream, read, wrote in _UPSTREAM[stage]:
        source = getattr(ws, read)(slug)
        if not inputs_unchanged(ws.stamp(slug, upstream), [source]):
            raise StageOrderError(
                f"{getattr(ws, wrote)(slug)} is out of date: {source.name} changed since `{upstream}` ran; "
                f"run `{upstream}` first"
            )


def _ingest_filtered(ws: Workspace, slug: str) -> int:
    """Rows ingest left out on purpose, and rows merged into an earlier row's image."""
    if not ws.stamp(slug, "ingest").exists():
        return 0
    summary = json.loads(ws.stamp(slug, "ingest").read_text()).get("summary", {})
    return summary.get("filtered", 0) + summary.get("merged", 0)
