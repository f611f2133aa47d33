"""`unimed-data evalset`: an evaluation set in CLIP_benchmark's webdataset layout, from a
class-folder tree, a classification manifest or a build's held-out split; or, with `--recipe
unimed`, one set per UniMed-CLIP benchmark set found in its extracted evaluation archive."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from unimed_data import terminal
from unimed_data.cli_common import OFF, ForceOpt, fail, os_problem, print_error_rows
from unimed_data.imaging import ConvertOptions
from unimed_data.layouts import LayoutError
from unimed_data.manifest import ManifestError
from unimed_data.schema import MODALITIES

if TYPE_CHECKING:
    from unimed_data.evalset.plan import EvalSetRequest

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
    from unimed_data.evalset.plan import EvalSetRequest
    from unimed_data.parallel import default_workers

    request = EvalSetRequest(
        manifest=manifest,
        out=out,
        root=root,
        recipe=recipe,
        annotations=annotations,
        sets=sets,
        from_folder=from_folder,
        from_build=from_build,
        modality=modality,
        name=name,
        holdout_train=holdout_train,
        holdout_val=holdout_val,
        with_train=with_train,
        split=split,
        train_split=train_split,
        dataset=dataset,
        task=task,
        templates=templates,
        seed=seed,
    )
    options = ConvertOptions(max_side=max_side, jpeg_quality=jpeg_quality)
    workers = workers or default_workers()
    _run(request, {"shard_size": shard_size, "options": options, "workers": workers, "force": force})


def _run(request: EvalSetRequest, writing: dict) -> None:
    """The one set of a folder tree, manifest or build, or a recipe's sets, once the options fit."""
    from unimed_data.evalset import EvalSetError
    from unimed_data.evalset.plan import source_of

    try:
        source = source_of(request)
    except EvalSetError as exc:
        fail(str(exc))
    if source == "recipe":
        _recipe(request, writing)
    else:
        _single(source, request, writing)


def _single(source: str, request: EvalSetRequest, writing: dict) -> None:
    """One evaluation set from a folder tree, a manifest or a build."""
    from unimed_data.evalset import EvalSetError, write_evalset
    from unimed_data.evalset.plan import collect

    try:
        collected, task, templates = collect(request, source)
        summary = write_evalset(collected, request.out, task=task, templates=templates, **writing)
    except (EvalSetError, ManifestError, LayoutError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_problem(exc))
    _report(summary)


def _recipe(request: EvalSetRequest, writing: dict) -> None:
    """Every set of the recipe that the archive holds, one line per set as it ends, then the table
    and the count of sets; exit 1 when a set failed or none was written (skipped sets are not
    failures: their folder or CSV is absent, which a line says)."""
    from unimed_data.evalset import EvalSetError, write_unimed_sets
    from unimed_data.evalset.plan import recipe_set_names

    try:
        names = recipe_set_names(request)
        outcomes = write_unimed_sets(
            request.root,
            request.out,
            annotations=request.annotations,
            names=names,
            progress=_say_outcome,
            **writing,
        )
    except EvalSetError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_problem(exc))
    _outcome_table(outcomes)
    _recipe_end(outcomes, request.out)


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
