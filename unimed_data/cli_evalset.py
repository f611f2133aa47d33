"""`unimed-data evalset`: an evaluation set in CLIP_benchmark's webdataset layout, from a
class-folder tree, a classification manifest or a build's held-out split; or, with `--recipe
unimed`, one set per UniMed-CLIP benchmark set found in its extracted evaluation archive."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from unimed_data import terminal
from unimed_data.cli_common import OFF, ForceOpt, fail, os_problem, print_error_rows
from unimed_data.imaging import ConvertOptions
from unimed_data.layouts import LayoutError
from unimed_data.manifest import ManifestError
from unimed_data.schema import MODALITIES

_SINGLE = ("folder", "manifest", "build")
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
RECIPES = ("unimed",)


# The options, one alias each, so that `evalset`'s signature stays a list of names and defaults.
_Manifest = Annotated[
    str | None, typer.Argument(help="A classification manifest: bundled name or YAML path.")
]
_Out = Annotated[
    Path,
    typer.Option(
        "--out", "-o", help="Evaluation set folder (CLIP_benchmark layout); with --recipe, one per set."
    ),
]
_Root = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Raw data root of MANIFEST; with --recipe, the extracted evaluation archive.",
        show_default="none",
    ),
]
_Recipe = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="A benchmark's sets from its evaluation archive: unimed (UniMed-CLIP's 21).",
        show_default="none",
    ),
]
_Annotations = Annotated[
    Path | None,
    typer.Option(
        "--annotations",
        help="--recipe unimed: folder with the CSVs not in the archive (UniMed-CLIP's local_data/).",
        show_default="none: those sets are skipped",
    ),
]
_Sets = Annotated[
    str | None, typer.Option("--sets", help="--recipe: only these sets, comma-separated.", show_default="all")
]
_FromFolder = Annotated[
    Path | None,
    typer.Option(
        "--from-folder",
        help="A folder-per-class tree; the class is each image's parent folder, as in a build.",
        show_default="none",
    ),
]
_FromBuild = Annotated[
    Path | None,
    typer.Option("--from-build", help="The output folder of `unimed-data build`.", show_default="none"),
]
_Modality = Annotated[
    str | None,
    typer.Option(
        "--modality", help=f"Needed for --from-folder: {', '.join(MODALITIES)}.", show_default="the source's"
    ),
]
_Name = Annotated[str | None, typer.Option("--name", help="Name of the set.", show_default="the source's")]
_HoldoutTrain = Annotated[
    float, typer.Option("--holdout-train", help="--from-folder: fraction per class written to train.")
]
_HoldoutVal = Annotated[
    float, typer.Option("--holdout-val", help="--from-folder: fraction per class written to val.")
]
_WithTrain = Annotated[
    bool,
    typer.Option("--with-train", help="MANIFEST: also write its train and val splits.", show_default=OFF),
]
_Split = Annotated[
    str, typer.Option("--split", help="Source split(s) that form the test split, comma-separated.")
]
_TrainSplit = Annotated[
    str | None,
    typer.Option("--train-split", help="--from-build: split(s) written as train.", show_default="none"),
]
_Dataset = Annotated[
    list[str] | None,
    typer.Option("--dataset", help="--from-build: keep only this dataset (repeatable).", show_default="all"),
]
_Task = Annotated[
    str,
    typer.Option(
        "--task",
        help="--from-build: classification (labels), modality (modality recognition) or retrieval (captions).",
    ),
]
_Templates = Annotated[
    Path | None,
    typer.Option("--templates", help="Zero-shot templates, one per line with {c}.", show_default="bundled"),
]
_ShardSize = Annotated[int, typer.Option("--shard-size", min=1, help="Samples per shard.")]
_MaxSide = Annotated[int, typer.Option("--max-side", min=16, help="Longest image side.")]
_JpegQuality = Annotated[int, typer.Option("--jpeg-quality", min=1, max=100, help="JPEG quality.")]
_Seed = Annotated[int, typer.Option("--seed", help="Seed for holdout and shuffle.")]
_Workers = Annotated[
    int | None, typer.Option("--workers", min=1, help="Processes.", show_default="all cores")
]


def evalset(
    manifest: _Manifest = None,
    out: _Out = ...,
    root: _Root = None,
    recipe: _Recipe = None,
    annotations: _Annotations = None,
    sets: _Sets = None,
    from_folder: _FromFolder = None,
    from_build: _FromBuild = None,
    modality: _Modality = None,
    name: _Name = None,
    holdout_train: _HoldoutTrain = 0.0,
    holdout_val: _HoldoutVal = 0.0,
    with_train: _WithTrain = False,
    split: _Split = "test",
    train_split: _TrainSplit = None,
    dataset: _Dataset = None,
    task: _Task = "classification",
    templates: _Templates = None,
    shard_size: _ShardSize = 1000,
    max_side: _MaxSide = ConvertOptions.max_side,
    jpeg_quality: _JpegQuality = ConvertOptions.jpeg_quality,
    seed: _Seed = 0,
    workers: _Workers = None,
    force: ForceOpt = False,
) -> None:
    """Write an evaluation set (CLIP_benchmark webdataset layout) from a class-folder tree, a
    classification manifest or a build's held-out split; or a benchmark's sets with --recipe."""
    given = dict(locals())
    source = _source(given)
    options = ConvertOptions(max_side=max_side, jpeg_quality=jpeg_quality)
    if source == "recipe":
        _recipe(given, options)
    else:
        _single(source, given, options)


def _source(given: dict) -> str:
    """The one source given (folder, manifest, build or recipe), once the options fit it."""
    present = {
        "manifest": given["manifest"],
        "folder": given["from_folder"],
        "build": given["from_build"],
        "recipe": given["recipe"],
    }
    if sum(value is not None for value in present.values()) != 1:
        fail(
            "give exactly one of: a MANIFEST (with --root), --from-folder DIR, --from-build OUT, "
            "or --recipe unimed (with --root)"
        )
    source = next(kind for kind, value in present.items() if value is not None)
    for flag, (parameter, default, sources) in _EVAL_ONLY.items():
        if source not in sources and given[parameter] not in (None, default):
            fail(f"{flag} applies to {_listed([_SOURCE_NAMES[s] for s in sources])} only")
    if given["modality"] is not None and given["modality"] not in MODALITIES:
        fail(f"--modality {given['modality']}: use one of {', '.join(MODALITIES)}")
    return source


def _single(source: str, given: dict, options: ConvertOptions) -> None:
    """One evaluation set from a folder tree, a manifest or a build."""
    from unimed_data.evalset import EvalSetError, write_evalset
    from unimed_data.parallel import default_workers

    try:
        collected, task, templates = _collect(source, given)
        summary = write_evalset(
            collected,
            given["out"],
            task=task,
            templates=templates,
            shard_size=given["shard_size"],
            options=options,
            workers=given["workers"] or default_workers(),
            force=given["force"],
        )
    except (EvalSetError, ManifestError, LayoutError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_problem(exc))
    _report(summary)


def _collect(source: str, given: dict):
    """The candidates of the one source given, and the task and templates they are written with
    (`--task modality` is a classification over modality names, with the bundled modality prompts)."""
    from unimed_data.evalset import sources as eval_sources
    from unimed_data.evalset.templates import bundled_templates_file

    task, templates, modality = given["task"], given["templates"], given["modality"]
    splits = _split_list(given["split"])
    if source == "folder":
        if modality is None:
            fail(f"--from-folder needs --modality, one of: {', '.join(MODALITIES)}")
        collected = eval_sources.from_folder(
            given["from_folder"],
            modality=modality,
            name=given["name"],
            holdout_train=given["holdout_train"],
            holdout_val=given["holdout_val"],
            seed=given["seed"],
        )
    elif source == "manifest":
        if given["root"] is None:
            fail(f"{given['manifest']}: a manifest needs --root RAW (the folder holding RAW/<name>/)")
        collected = eval_sources.from_manifest(
            given["manifest"],
            given["root"],
            test_splits=splits,
            with_train=given["with_train"],
            seed=given["seed"],
            name=given["name"],
            modality=modality,
        )
    else:
        collected = eval_sources.from_build(
            given["from_build"],
            splits=splits,
            train_splits=_split_list(given["train_split"] or ""),
            datasets=tuple(given["dataset"] or ()),
            name=given["name"] or given["out"].name,
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


def _recipe(given: dict, options: ConvertOptions) -> None:
    """Every set of the recipe that the archive holds, one line per set as it ends, then the table
    and the count of sets; exit 1 when a set failed or none was written (skipped sets are not
    failures: their folder or CSV is absent, which a line says)."""
    from unimed_data.evalset import EvalSetError
    from unimed_data.evalset.unimed_recipe import write_unimed_sets
    from unimed_data.parallel import default_workers

    if given["recipe"] not in RECIPES:
        fail(f"--recipe {given['recipe']}: use one of {', '.join(RECIPES)}")
    if given["root"] is None:
        fail("--recipe unimed needs --root EXTRACTED (the folder the evaluation archive was extracted to)")
    try:
        outcomes = write_unimed_sets(
            given["root"],
            given["out"],
            annotations=given["annotations"],
            names=list(_split_list(given["sets"] or "")),
            shard_size=given["shard_size"],
            options=options,
            workers=given["workers"] or default_workers(),
            force=given["force"],
            progress=_say_outcome,
        )
    except EvalSetError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_problem(exc))
    _outcome_table(outcomes)
    _recipe_end(outcomes, given["out"])


def _recipe_end(outcomes: list, out: Path) -> None:
    """`Sets N = written + skipped + failed`; then the error line and exit 1, or where the sets are."""
    counts = Counter(outcome.status for outcome in outcomes)
    terminal.say(
        f"Sets {len(outcomes)} = written {counts['written']} + skipped {counts['skipped']} "
        f"+ failed {counts['failed']}"
    )
    if counts["failed"]:
        failed = ", ".join(outcome.spec.name for outcome in outcomes if outcome.status == "failed")
        terminal.error(f"{counts['failed']} set(s) failed ({failed}): see the reasons above")
        raise typer.Exit(1)
    if not counts["written"]:
        terminal.error(f"no set was written to {out}: see the reasons above")
        raise typer.Exit(1)
    terminal.say(f"Evaluation sets in {out}")


def _say_outcome(outcome) -> None:
    name = outcome.spec.name
    if outcome.summary is None:
        terminal.say(f"{name}: {outcome.status}: {outcome.reason}")
        return
    info = outcome.summary.info
    terminal.say(
        f"{name}: written to {outcome.summary.out}; inputs {info['inputs']} = "
        f"samples {outcome.summary.samples} + errors {info['errors']}"
    )
    print_error_rows(outcome.summary.errors, f"see {outcome.summary.out / 'errors.parquet'}", limit=3)


def _outcome_table(outcomes) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="UniMed evaluation sets")
    for column in ("set", "modality", "classes", "test samples", "errors", "status"):
        justify = "right" if column in ("classes", "test samples", "errors") else "left"
        table.add_column(column, justify=justify, no_wrap=column != "status", overflow="fold")
    for outcome in outcomes:
        info = outcome.summary.info if outcome.summary else None
        status = outcome.status if info else f"{outcome.status}: {outcome.reason}"
        table.add_row(
            outcome.spec.name,
            outcome.spec.modality,
            str(len(outcome.spec.classes)),
            str(info["splits"].get("test", 0)) if info else "-",
            str(info["errors"]) if info else "-",
            Text(status),  # Text: a reason's `[...]` is not markup
        )
    terminal.print_table(terminal.console(), table)


def _report(summary) -> None:
    """Classes, samples per split and the accounting line; exit 1 when the test split is empty."""
    info = summary.info
    splits_line = ", ".join(f"{s} {n}" for s, n in info["splits"].items())
    terminal.say(
        f"{info['name']}: {info['task']}, {len(info['classes'])} classes; samples per split: {splits_line}"
    )
    terminal.say(f"Inputs {info['inputs']} = samples {summary.samples} + errors {info['errors']}")
    print_error_rows(summary.errors, f"see {summary.out / 'errors.parquet'}")
    terminal.say(f"Evaluation set in {summary.out}")
    if info["splits"].get("test", 0) == 0:
        terminal.error("no test sample was written: see the errors above")
        raise typer.Exit(1)
