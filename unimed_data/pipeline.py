"""What a build is made of: its datasets (the config's, less evaluation-only sources), the output
folder claimed for it, and the checks and caption backend that come before any stage writes."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from unimed_data.captions import Captioner, DatasetHints, make_captioner
from unimed_data.captions.answers import leak_ids
from unimed_data.config import BuildConfig
from unimed_data.dataset_folders import dataset_root
from unimed_data.manifest import Manifest, find_manifest, load_manifest
from unimed_data.outputs import claim_output
from unimed_data.schema import SPLITS, dataset_slug
from unimed_data.workspace import Workspace


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


def prepare(config: BuildConfig, ws: Workspace, datasets: list[Dataset]) -> Captioner:
    """Checks that come before any stage writes, and the configured caption backend."""
    _check_output_outside_sources(ws, datasets)
    return build_captioner(config, ws, datasets)


def build_captioner(config: BuildConfig, ws: Workspace, datasets: list[Dataset]) -> Captioner:
    """The configured caption backend, with what each dataset's manifest tells the prompts."""
    hints = {
        d.manifest.name: DatasetHints(
            definitions=dict(d.manifest.definitions),
            raw_label_ids=tuple(leak_ids(d.manifest.classes, d.manifest.name, d.manifest.slug)),
        )
        for d in datasets
    }
    return make_captioner(config.captions, seed=config.seed, cache_path=ws.caption_cache, hints=hints)


def _check_output_outside_sources(ws: Workspace, datasets: list[Dataset]) -> None:
    """An output folder inside a dataset's folder would be read back as input on the next run."""
    for dataset in datasets:
        root = dataset_root(dataset.manifest, dataset.root).resolve()
        if ws.out == root or root in ws.out.parents:
            raise ValueError(
                f"the output folder {ws.out} lies inside the files of dataset {dataset.manifest.name} "
                f"({root}); choose an output folder outside it"
            )
