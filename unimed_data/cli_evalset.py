"""`unimed-data evalset`: an evaluation set in CLIP_benchmark's webdataset layout, from a
class-folder tree, a classification manifest or a build's held-out split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unimed_data import terminal
from unimed_data.cli_common import OFF, ForceOpt, fail, os_problem, print_error_rows
from unimed_data.imaging import ConvertOptions
from unimed_data.layouts import LayoutError
from unimed_data.manifest import ManifestError
from unimed_data.schema import MODALITIES

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


def evalset(
    manifest: Annotated[
        str | None, typer.Argument(help="A classification manifest: bundled name or YAML path.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Evaluation set folder (CLIP_benchmark layout).")
    ] = ...,
    root: Annotated[
        Path | None, typer.Option("--root", help="Raw data root of MANIFEST.", show_default="none")
    ] = None,
    from_folder: Annotated[
        Path | None,
        typer.Option(
            "--from-folder", help="A folder-per-class tree: DIR/<class>/<images>.", show_default="none"
        ),
    ] = None,
    from_build: Annotated[
        Path | None,
        typer.Option("--from-build", help="The output folder of `unimed-data build`.", show_default="none"),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            "--modality",
            help=f"Needed for --from-folder: {', '.join(MODALITIES)}.",
            show_default="the source's",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the set.", show_default="the source's")
    ] = None,
    holdout_train: Annotated[
        float, typer.Option("--holdout-train", help="--from-folder: fraction per class written to train.")
    ] = 0.0,
    holdout_val: Annotated[
        float, typer.Option("--holdout-val", help="--from-folder: fraction per class written to val.")
    ] = 0.0,
    with_train: Annotated[
        bool,
        typer.Option("--with-train", help="MANIFEST: also write its train and val splits.", show_default=OFF),
    ] = False,
    split: Annotated[
        str, typer.Option("--split", help="Source split(s) that form the test split, comma-separated.")
    ] = "test",
    train_split: Annotated[
        str | None,
        typer.Option("--train-split", help="--from-build: split(s) written as train.", show_default="none"),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", help="--from-build: keep only this dataset (repeatable).", show_default="all"
        ),
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="--from-build: classification (labels), modality (modality recognition) or retrieval (captions).",
        ),
    ] = "classification",
    templates: Annotated[
        Path | None,
        typer.Option(
            "--templates", help="Zero-shot templates, one per line with {c}.", show_default="bundled"
        ),
    ] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Samples per shard.")] = 1000,
    max_side: Annotated[
        int, typer.Option("--max-side", min=16, help="Longest image side.")
    ] = ConvertOptions.max_side,
    jpeg_quality: Annotated[
        int, typer.Option("--jpeg-quality", min=1, max=100, help="JPEG quality.")
    ] = ConvertOptions.jpeg_quality,
    seed: Annotated[int, typer.Option("--seed", help="Seed for holdout and shuffle.")] = 0,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes.", show_default="all cores")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Write an evaluation set (CLIP_benchmark webdataset layout) from a class-folder tree, a
    classification manifest or a build's held-out split."""
    from unimed_data.evalset import EvalSetError, write_evalset
    from unimed_data.parallel import default_workers

    given = dict(locals())
    present = {"manifest": manifest, "folder": from_folder, "build": from_build}
    if sum(value is not None for value in present.values()) != 1:
        fail("give exactly one of: a MANIFEST (with --root), --from-folder DIR, or --from-build OUT")
    source = next(kind for kind, value in present.items() if value is not None)
    for flag, (parameter, default, sources) in _EVAL_ONLY.items():
        if source not in sources and given[parameter] not in (None, default):
            fail(f"{flag} applies to {' and '.join(_SOURCE_NAMES[s] for s in sources)} only")
    if modality is not None and modality not in MODALITIES:
        fail(f"--modality {modality}: use one of {', '.join(MODALITIES)}")
    try:
        collected, task, templates = _collect(source, given)
        summary = write_evalset(
            collected,
            out,
            task=task,
            templates=templates,
            shard_size=shard_size,
            options=ConvertOptions(max_side=max_side, jpeg_quality=jpeg_quality),
            workers=workers or default_workers(),
            force=force,
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
