"""Collected candidates -> an evaluation set on disk: plan the task and classes, read or convert
every image, write the splits' shards, then the metadata.

Samples go out sorted by key (a digest, so classes come mixed and the order is the same on every
run); every input ends as a sample or an errors.parquet row, so `inputs = samples + errors`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from unimed_data.evalset.images import ImageTask, crashed, load_image
from unimed_data.evalset.layout import METADATA_FILES, SplitWriter, clear_other_splits, write_metadata
from unimed_data.evalset.samples import (
    Candidate,
    Collected,
    EvalSetError,
    Plan,
    plan_classification,
    plan_retrieval,
    target_members,
)
from unimed_data.evalset.templates import load_templates, prompt_ensemble
from unimed_data.executor import LocalExecutor
from unimed_data.imaging import ConvertOptions
from unimed_data.outputs import OutputError, claim_output, settle_output
from unimed_data.schema import SPLITS, error_row


@dataclass(frozen=True)
class EvalSetSummary:
    out: Path
    info: dict
    errors: list[dict]

    @property
    def samples(self) -> int:
        return sum(self.info["splits"].values())


def write_evalset(
    collected: Collected,
    out: Path,
    *,
    task: str = "classification",
    templates: Path | None = None,
    shard_size: int = 1000,
    options: ConvertOptions | None = None,
    workers: int = 1,
    force: bool = False,
) -> EvalSetSummary:
    """Write `collected` to `out` in the CLIP_benchmark webdataset layout; `task` is
    `classification` (single- or multi-label, decided by the labels) or `retrieval`."""
    if task not in ("classification", "retrieval"):
        raise EvalSetError(f"task {task!r}: use classification or retrieval")
    if shard_size < 1:
        raise EvalSetError(f"shard size must be at least 1, got {shard_size}")
    out = out.resolve()
    _claim(out, collected.read_from, force)
    plan = plan_retrieval(collected) if task == "retrieval" else plan_classification(collected)
    templates = templates or collected.templates
    prompt_lines = load_templates(collected.modality, templates) if plan.task != "retrieval" else []
    errors = [*collected.errors, *plan.errors]
    by_split: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(plan.candidates, key=lambda c: c.key):
        by_split[candidate.split].append(candidate)
    if not by_split["test"]:
        raise EvalSetError(f"{collected.source}: no usable sample for the test split (errors: {len(errors)})")
    class_ids = {name: index for index, name in enumerate(plan.classes)}
    options = options or ConvertOptions()
    counts = {}
    for split in (s for s in SPLITS if by_split.get(s)):
        with SplitWriter(out / split, shard_size) as writer:
            for candidate, jpeg, reason in _images(by_split[split], split, options, workers):
                if jpeg is None:
                    errors.append(
                        error_row(candidate.dataset, "convert", candidate.key, candidate.path, reason)
                    )
                else:
                    writer.write(
                        candidate.key, {"jpg": jpeg, **target_members(candidate, plan.task, class_ids)}
                    )
        counts[split] = writer.count
    clear_other_splits(out, counts)
    info = _info(collected, plan, counts, errors)
    write_metadata(
        out,
        task=plan.task,
        classes=plan.classes,
        templates=prompt_lines,
        prompts=_prompts(plan.classes, prompt_lines, collected),
        info=info,
        errors=errors,
    )
    settle_output(out)
    return EvalSetSummary(out, info, errors)


def _images(
    candidates: list[Candidate], split: str, options: ConvertOptions, workers: int
) -> Iterator[tuple[Candidate, bytes | None, str | None]]:
    """Each candidate with its JPEG bytes, or None and the reason, in the candidates' order."""
    tasks = (ImageTask(c.path, c.member, options) for c in candidates)
    copying = all(c.member is not None for c in candidates)  # no decoding: no processes needed
    results = LocalExecutor(1 if copying else workers).map(
        load_image,
        tasks,
        desc=f"evalset {split}",
        total=len(candidates),
        on_crash=crashed,
    )
    for candidate, (jpeg, reason) in zip(candidates, results, strict=True):
        yield candidate, jpeg, reason


def _prompts(classes: list[str], templates: list[str], collected: Collected) -> dict[str, list[str]]:
    """prompts.json, keyed by class: the templates filled with each class's readable wording (a
    benchmark's terse class keys such as `ADI` make poor prompts), else with the class itself."""
    wording = [collected.readable.get(name, name) for name in classes]
    definitions = {collected.readable.get(name, name): text for name, text in collected.definitions.items()}
    filled = prompt_ensemble(wording, templates, definitions)
    return {name: filled[words] for name, words in zip(classes, wording, strict=True)}


def _info(collected: Collected, plan: Plan, counts: dict[str, int], errors: list[dict]) -> dict:
    """info.json: the standard fields, then the source's own (never replacing a standard one)."""
    info = {
        "name": collected.name,
        "modality": collected.modality,
        "task": plan.task,
        "classes": plan.classes,
        "splits": counts,
        "source": collected.source,
        "inputs": len(collected.candidates) + len(collected.errors),
        "errors": len(errors),
    }
    return info | {field: value for field, value in collected.info.items() if field not in info}


def _claim(out: Path, read_from: list[Path], force: bool) -> None:
    """EVAL's files must not land among the inputs, which a rerun would then read back; the folder
    is claimed (or refused) before anything is written."""
    for folder in read_from:
        folder = folder.resolve()
        for written in (out, *(out / split for split in SPLITS)):
            if written == folder or folder in written.parents:
                raise EvalSetError(f"--out {out}: lies inside the input {folder}; choose a folder outside it")
    try:
        claim_output(out, "evalset", [*SPLITS, *METADATA_FILES], force=force)
    except OutputError as exc:
        raise EvalSetError(str(exc)) from exc
