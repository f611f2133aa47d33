"""Every task on every eval set for every model: one list of result entries.

Each model is built once; each eval set's test split is encoded once per model and reused by all tasks.
Entries are ``{model, pretrained, dataset, modality, task, status, metrics, score, n}`` with status
``ok``, ``skipped`` (plus ``reason``) or ``error`` (plus ``error``): a broken set or task is recorded
and the rest still runs. Tasks: ``zeroshot``, ``linear_probe`` (and ``linear_probe_<k>shot`` per
few-shot k), ``retrieval``. Under a protocol (``unimed``) only zero-shot runs, and its entries add
``protocol``, ``metric`` and ``column``, with ``score`` the protocol's headline.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unimed_train.eval import PROTOCOLS, TASKS
from unimed_train.eval.encode import ModelSpec, encode_images, encode_texts, load_model
from unimed_train.eval.evalsets import EvalSet, iter_batches, load_evalset
from unimed_train.eval.metrics import (
    base_task,
    class_embeddings,
    classification_metrics,
    multilabel_metrics,
    probe_task,
    retrieval_metrics,
    summary_score,
)
from unimed_train.eval.probe import linear_probe
from unimed_train.eval.prompt_files import PromptFile, use_prompt_file
from unimed_train.eval.protocols import NAME as UNIMED
from unimed_train.eval.protocols import cap_prompts, entry_fields, unimed_protocol, unimed_score
from unimed_train.model import Built

log = logging.getLogger(__name__)

RETRIEVAL_KS = (1, 5, 10)


def _entry(spec: ModelSpec, name: str, modality: str, task: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": spec.label,
        "pretrained": spec.pretrained,
        "dataset": name,
        "modality": modality,
        "task": task,
        **fields,
    }


class _Context:
    """One model on one eval set: features are encoded on first use and kept for the other tasks."""

    def __init__(self, built: Built, evalset: EvalSet, opts: dict[str, Any]):
        self.built, self.evalset, self.opts = built, evalset, opts
        self._cache: dict[str, tuple[np.ndarray, list]] = {}

    def split(self, split: str) -> tuple[np.ndarray, list]:
        if split not in self._cache:
            o = self.opts
            batches = iter_batches(
                self.evalset, split, self.built.preprocess_val, o["batch_size"], o["workers"]
            )
            feats, targets = encode_images(
                self.built, batches, o["device"], o["precision"], desc=f"{self.evalset.name}/{split}"
            )
            if not targets:
                raise ValueError(f"{self.evalset.root}: split {split} has no samples")
            order = sorted(range(len(targets)), key=lambda i: targets[i].key)
            self._cache[split] = (feats.numpy()[order], [targets[i].value for i in order])
        return self._cache[split]

    def texts(self, texts: list[str]) -> np.ndarray:
        o = self.opts
        return encode_texts(self.built, texts, o["device"], o["precision"], o["batch_size"]).numpy()


def _targets(evalset: EvalSet, labels: list) -> np.ndarray:
    return np.stack(labels) if evalset.kind == "multilabel" else np.asarray(labels, dtype=np.int64)


def zeroshot_scores(ctx: _Context) -> tuple[np.ndarray, np.ndarray]:
    """(scores, targets): 100 * image @ class embeddings (prompt-ensemble means), as CLIP_benchmark does."""
    ensembles = ctx.evalset.prompt_ensembles()
    flat = ctx.texts([p for prompts in ensembles for p in prompts])
    bounds = np.cumsum([0] + [len(p) for p in ensembles])
    classes = np.asarray(class_embeddings([flat[a:b] for a, b in itertools.pairwise(bounds)]))
    feats, labels = ctx.split("test")
    return 100.0 * feats @ classes.T, _targets(ctx.evalset, labels)


def zeroshot(ctx: _Context) -> dict[str, Any]:
    """Classification metrics, or per-class AUROC / AP on multi-label sets."""
    ev = ctx.evalset
    scores, targets = zeroshot_scores(ctx)
    if ev.kind == "multilabel":
        return multilabel_metrics(scores, targets, classnames=ev.classnames)
    return classification_metrics(scores, targets, classnames=ev.classnames)


def probe(ctx: _Context, k_shot: int | None, seed: int) -> dict[str, Any]:
    """Logistic regression on frozen image features; the val split (if any) picks C."""
    ev = ctx.evalset
    train_x, train_y = ctx.split("train")
    test_x, test_y = ctx.split("test")
    val = {}
    if "val" in ev.splits:
        val_x, val_y = ctx.split("val")
        val = {"val_x": val_x, "val_y": _targets(ev, val_y)}
    return linear_probe(
        train_x,
        _targets(ev, train_y),
        test_x,
        _targets(ev, test_y),
        **val,
        multilabel=ev.kind == "multilabel",
        k_shot=k_shot,
        seed=seed,
        classnames=ev.classnames,
    )


def retrieval(ctx: _Context) -> dict[str, Any]:
    """Image <-> caption recall@k over all test captions (each caption points at its image)."""
    feats, captions = ctx.split("test")
    texts = [c for caps in captions for c in caps]
    text_to_image = np.asarray([i for i, caps in enumerate(captions) for _ in caps], dtype=np.int64)
    if not texts:
        raise ValueError(f"{ctx.evalset.root}: no captions in the test split")
    unique, groups = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    text_feats = ctx.texts(unique.tolist())[groups]  # each distinct caption encoded once
    return retrieval_metrics(feats, text_feats, text_to_image, ks=RETRIEVAL_KS, text_groups=groups)


def _skip_reason(evalset: EvalSet, task: str) -> str | None:
    if task == "retrieval":
        return None if evalset.kind == "retrieval" else f"{evalset.kind} set (not a retrieval set)"
    if evalset.kind == "retrieval":
        return "retrieval set (no classes)"
    if base_task(task) == "linear_probe" and "train" not in evalset.splits:
        return "no train split"
    return None


def _task_names(tasks: Sequence[str], k_shots: Sequence[int]) -> list[tuple[str, int | None]]:
    """(task name, k-shot or None) in run order: each probe followed by its few-shot variants."""
    names = []
    for task in tasks:
        names.append((task, None))
        if task == "linear_probe":
            names.extend((probe_task(k), k) for k in k_shots)
    return names


def prepare_evalset(
    path: str | Path, prompts: PromptFile | None = None, protocol: str | None = None
) -> EvalSet:
    """Read an eval folder and make it ready: the prompt file's ensembles replace its own prompts,
    and a protocol checks what the set declares (and caps its prompts when it says so). Raises
    `EvalSetError`, `PromptFileError` or `ProtocolError`, each naming the set."""
    _check_protocol(protocol)
    evalset = load_evalset(path)
    if prompts is not None:
        use_prompt_file(prompts, evalset)
    if protocol == UNIMED:
        cap_prompts(evalset, unimed_protocol(evalset))
    return evalset


def _check_protocol(protocol: str | None) -> None:
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")


def _load_sets(
    data_dirs: Sequence[str | Path], prompts: PromptFile | None = None, protocol: str | None = None
) -> list[EvalSet | Exception]:
    """Each eval folder read once: its EvalSet, or the error that makes it unusable."""
    loaded: list[EvalSet | Exception] = []
    for d in data_dirs:
        try:
            loaded.append(prepare_evalset(d, prompts, protocol))
        except Exception as e:  # becomes an error entry per model; the other sets still run
            loaded.append(e)
    return loaded


def _distinct_names(data_dirs: Sequence[str | Path], loaded: Sequence[EvalSet | Exception]) -> list[str]:
    names, seen = [], {}
    for d, evalset in zip(data_dirs, loaded, strict=True):
        name = evalset.name if isinstance(evalset, EvalSet) else Path(d).name
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names


def set_names(data_dirs: Sequence[str | Path]) -> list[str]:
    """A distinct display name per eval folder: its info.json name (else the folder name), with
    `#2`, `#3`... on repeats, so two sets never share a table column, an average or a plot."""
    return _distinct_names(data_dirs, _load_sets(data_dirs))


def _metrics(ctx: _Context, task: str, k_shot: int | None, seed: int) -> dict[str, Any]:
    if task == "zeroshot":
        return zeroshot(ctx)
    if task == "retrieval":
        return retrieval(ctx)
    return probe(ctx, k_shot, seed)


def evaluate_one(
    spec: ModelSpec,
    built: Built,
    evalset: EvalSet | Exception,
    name: str,
    tasks: Sequence[tuple[str, int | None]],
    opts: dict[str, Any],
) -> list[dict[str, Any]]:
    """All tasks of one model on one eval set (shown as `name`); an unreadable folder (its load
    error) becomes one error entry."""
    if isinstance(evalset, Exception):  # recorded, the other sets still run
        log.error("%s", evalset)
        return [_entry(spec, name, "unknown", "all", status="error", error=str(evalset))]
    ctx = _Context(built, evalset, opts)
    declared = unimed_protocol(evalset) if opts.get("protocol") == UNIMED else None
    out = []
    for task, k_shot in tasks:
        entry = _entry(spec, evalset.name, evalset.modality, task)
        if declared is not None:
            entry.update(entry_fields(declared))
        reason = _skip_reason(evalset, task)
        if reason:
            out.append({**entry, "status": "skipped", "reason": reason})
            continue
        try:
            if declared is not None:
                scores, targets = zeroshot_scores(ctx)
                metrics = classification_metrics(scores, targets, classnames=evalset.classnames)
                score = unimed_score(declared, scores, targets, metrics)
            else:
                metrics = _metrics(ctx, task, k_shot, opts["seed"])
                score = summary_score(base_task(task), metrics)
        except Exception as e:
            log.exception("%s on %s, %s failed", spec.label, evalset.name, task)
            out.append({**entry, "status": "error", "error": f"{type(e).__name__}: {e}"})
            continue
        n = len(ctx.split("test")[1])
        out.append({**entry, "status": "ok", "metrics": metrics, "score": score, "n": n})
    return out


def run(
    specs: Iterable[ModelSpec],
    data_dirs: Sequence[str | Path],
    *,
    tasks: Sequence[str] = TASKS,
    k_shots: Sequence[int] = (),
    batch_size: int = 64,
    workers: int = 0,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    prompts: PromptFile | None = None,
    protocol: str | None = None,
) -> list[dict[str, Any]]:
    """Entries for every model x eval set x task, in that order. `prompts` replaces every set's
    prompts; `protocol="unimed"` scores zero-shot the way UniMed-CLIP's table does."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {TASKS}")
    _check_protocol(protocol)
    if protocol is not None and (list(tasks) != ["zeroshot"] or k_shots):
        raise ValueError(f"protocol {protocol!r} scores zero-shot only; got tasks {list(tasks)}")
    opts = {
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "precision": precision,
        "seed": seed,
        "protocol": protocol,
    }
    names = _task_names(tasks, k_shots)
    evalsets = _load_sets(data_dirs, prompts, protocol)
    set_labels = _distinct_names(data_dirs, evalsets)
    for evalset, label in zip(evalsets, set_labels, strict=True):
        if isinstance(evalset, EvalSet):
            evalset.name = label
    entries: list[dict[str, Any]] = []
    for spec in specs:
        try:
            built = load_model(spec, device=device, precision=precision)
        except Exception as e:
            log.exception("model %s could not be built", spec.label)
            error = f"{type(e).__name__}: {e}"
            for label in set_labels:
                entries.append(_entry(spec, label, "unknown", "all", status="error", error=error))
            continue
        for evalset, label in zip(evalsets, set_labels, strict=True):
            entries.extend(evaluate_one(spec, built, evalset, label, names, opts))
        del built
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return entries
