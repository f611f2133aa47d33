"""What `unimed-data evalset` was asked to do: the one source its options name (a folder tree, a
classification manifest, a build or a recipe), checked against the options that apply to that
source, and for a single set the candidates, task and templates it is written with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unimed_data.evalset import sources
from unimed_data.evalset.samples import Collected, EvalSetError
from unimed_data.evalset.templates import bundled_templates_file
from unimed_data.schema import MODALITIES

RECIPES = ("unimed",)
_SINGLE = ("folder", "manifest", "build")
# Each option that fits some sources only: its field, its default and the sources it applies to.
_EVAL_ONLY = {
    "--holdout-train": ("holdout_train", 0.0, ("folder",)),
    "--holdout-val": ("holdout_val", 0.0, ("folder",)),
    "--root": ("root", None, ("manifest", "recipe")),
    "--annotations": ("annotations", None, ("recipe",)),
    "--sets": ("sets", None, ("recipe",)),
    "--name": ("name", None, _SINGLE),
    "--modality": ("modality", None, _SINGLE),
    "--templates": ("templates", None, _SINGLE),
    "--with-train": ("with_train", False, ("manifest",)),
    "--split": ("split", "test", ("manifest", "build")),
    "--train-split": ("train_split", None, ("build",)),
    "--dataset": ("dataset", None, ("build",)),
    "--task": ("task", "classification", ("build",)),
}
_SOURCE_NAMES = {
    "folder": "--from-folder",
    "manifest": "MANIFEST",
    "build": "--from-build",
    "recipe": "--recipe",
}


@dataclass(frozen=True)
class EvalSetRequest:
    """The options of `unimed-data evalset` that choose and read the source, as parsed."""

    manifest: str | None
    out: Path
    root: Path | None
    recipe: str | None
    annotations: Path | None
    sets: str | None
    from_folder: Path | None
    from_build: Path | None
    modality: str | None
    name: str | None
    holdout_train: float
    holdout_val: float
    with_train: bool
    split: str
    train_split: str | None
    dataset: list[str] | None
    task: str
    templates: Path | None
    seed: int


def source_of(request: EvalSetRequest) -> str:
    """The one source given (folder, manifest, build or recipe), once the options fit it; an
    EvalSetError otherwise."""
    present = {
        "manifest": request.manifest,
        "folder": request.from_folder,
        "build": request.from_build,
        "recipe": request.recipe,
    }
    if sum(value is not None for value in present.values()) != 1:
        raise EvalSetError(
            "give exactly one of: a MANIFEST (with --root), --from-folder DIR, --from-build OUT, "
            "or --recipe unimed (with --root)"
        )
    source = next(kind for kind, value in present.items() if value is not None)
    for flag, (field, default, fits) in _EVAL_ONLY.items():
        if source not in fits and getattr(request, field) not in (None, default):
            raise EvalSetError(f"{flag} applies to {_listed([_SOURCE_NAMES[s] for s in fits])} only")
    if request.modality is not None and request.modality not in MODALITIES:
        raise EvalSetError(f"--modality {request.modality}: use one of {', '.join(MODALITIES)}")
    return source


def recipe_set_names(request: EvalSetRequest) -> list[str]:
    """The sets `--sets` asks for (empty: all), once the recipe is known and has its --root."""
    if request.recipe not in RECIPES:
        raise EvalSetError(f"--recipe {request.recipe}: use one of {', '.join(RECIPES)}")
    if request.root is None:
        raise EvalSetError(
            "--recipe unimed needs --root EXTRACTED (the folder the evaluation archive was extracted to)"
        )
    return list(_split_list(request.sets or ""))


def collect(request: EvalSetRequest, source: str) -> tuple[Collected, str, Path | None]:
    """The candidates of the one source given, and the task and templates they are written with
    (`--task modality` is a classification over modality names, with the bundled modality prompts)."""
    task, templates, modality = request.task, request.templates, request.modality
    splits = _split_list(request.split)
    if source == "folder":
        if modality is None:
            raise EvalSetError(f"--from-folder needs --modality, one of: {', '.join(MODALITIES)}")
        collected = sources.from_folder(
            request.from_folder,
            modality=modality,
            name=request.name,
            holdout_train=request.holdout_train,
            holdout_val=request.holdout_val,
            seed=request.seed,
        )
    elif source == "manifest":
        if request.root is None:
            raise EvalSetError(
                f"{request.manifest}: a manifest needs --root RAW (the folder holding RAW/<name>/)"
            )
        collected = sources.from_manifest(
            request.manifest,
            request.root,
            test_splits=splits,
            with_train=request.with_train,
            seed=request.seed,
            name=request.name,
            modality=modality,
        )
    else:
        collected = sources.from_build(
            request.from_build,
            splits=splits,
            train_splits=_split_list(request.train_split or ""),
            datasets=tuple(request.dataset or ()),
            name=request.name or request.out.name,
            modality=modality,
            classes_from="modality" if task == "modality" else "labels",
        )
        if task == "modality":
            task, templates = "classification", templates or bundled_templates_file("modality")
    return collected, task, templates


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _listed(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"
