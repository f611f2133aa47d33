"""The evaluation report: results.json (every entry), results.md (models x datasets per task, with
per-modality and overall averages as UniMed-CLIP reports them; under `--protocol unimed` UniMed's
own table instead of the zero-shot one) and PNG plots.

Every file is written to a temporary name and renamed, so a reader never sees half a report; the
same entries always give the same bytes (stable ordering, no timestamps).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unimed_train.eval.metrics import base_task, task_shots
from unimed_train.eval.protocols import COLUMNS, SET_COUNT, summarise
from unimed_train.eval.protocols import NAME as UNIMED

TASK_ORDER = ("zeroshot", "linear_probe", "retrieval")
HEADLINES = {
    "zeroshot": "top-1 accuracy (macro AUROC on multi-label sets)",
    "linear_probe": "accuracy (macro AUROC on multi-label sets)",
    "retrieval": "mean of image and text recall@1",
}


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _task_key(task: str) -> tuple:
    base = base_task(task)
    rank = TASK_ORDER.index(base) if base in TASK_ORDER else len(TASK_ORDER)
    return (rank, task != base, task_shots(task) or 0, task)


def _tasks(entries: Sequence[dict]) -> list[str]:
    """The tasks of the entries in report order (zeroshot, probes by shots, retrieval, others)."""
    return sorted(_unique(e["task"] for e in entries if e["task"] != "all"), key=_task_key)


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _fmt(score: float | None) -> str:
    return "–" if score is None else f"{100 * score:.2f}"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _score(entry: dict | None) -> float | None:
    """A cell's headline score; None when it is missing, skipped, failed or undefined."""
    return entry.get("score") if entry and entry["status"] == "ok" else None


def task_table(entries: Sequence[dict], task: str) -> tuple[list[str], list[tuple[str, str]], dict]:
    """(models, [(dataset, modality)], {(model, dataset): entry}) for one task; datasets where every
    model was skipped are left out, datasets sorted by modality then name."""
    rows = [e for e in entries if e["task"] == task]
    models = _unique(e["model"] for e in entries)
    datasets = sorted(
        {(e["dataset"], e["modality"]) for e in rows if e["status"] != "skipped"}, key=lambda d: (d[1], d[0])
    )
    cells = {(e["model"], e["dataset"]): e for e in rows}
    return models, datasets, cells


def averages(
    model: str, datasets: list[tuple[str, str]], cells: dict
) -> tuple[dict[str, tuple[float | None, bool]], tuple[float | None, bool]]:
    """Per modality and overall mean headline score of one model (means over datasets, each dataset
    weighted once); the flag is True when some dataset had no score (the mean is over fewer sets)."""
    groups: dict[str, list] = {}
    for name, modality in datasets:
        groups.setdefault(modality, []).append(_score(cells.get((model, name))))

    def summarise(scores: list) -> tuple[float | None, bool]:
        have = [s for s in scores if s is not None]
        return _mean(have), len(have) < len(scores)

    per = {m: summarise(s) for m, s in groups.items()}
    return per, summarise([s for ss in groups.values() for s in ss])


def _cell(entry: dict | None) -> str:
    if entry is None or entry["status"] == "skipped":
        return "–"
    return "err" if entry["status"] == "error" else _fmt(entry.get("score"))


def unimed_table(entries: Sequence[dict]) -> tuple[list[str], list[tuple[str, str, str]], dict]:
    """(models, [(set, column, metric)], {(model, set): entry}) of the `unimed` protocol entries;
    sets in UniMed's column order, then by name. A model that failed as a whole (task `all`) has
    its error in every cell."""
    rows = [e for e in entries if e.get("protocol") == UNIMED]
    sets = sorted(
        {(e["dataset"], e["column"], e["metric"]) for e in rows}, key=lambda s: (COLUMNS.index(s[1]), s[0])
    )
    names = {name for name, _, _ in sets}
    failed = [e for e in entries if e["task"] == "all" and e["dataset"] in names]
    cells = {(e["model"], e["dataset"]): e for e in [*failed, *rows]}
    return _unique(e["model"] for e in entries), sets, cells


def _coverage(n_sets: int, n_columns: int | None = None) -> str:
    parts = [] if n_sets == SET_COUNT else [f"{n_sets} of {SET_COUNT} sets"]
    if n_columns is not None and n_columns < len(COLUMNS):
        parts.append(f"{n_columns} of {len(COLUMNS)} modalities")
    return f" ({', '.join(parts)})" if parts else ""


def unimed_markdown(entries: Sequence[dict]) -> list[str]:
    """UniMed-CLIP's zero-shot table (a row per model: modality means and both averages), then a
    row per set; empty when there are no `unimed` entries."""
    models, sets, cells = unimed_table(entries)
    if not sets:
        return []
    n_columns = len({column for _, column, _ in sets})
    full = len(sets) == SET_COUNT
    header = [
        "model",
        *COLUMNS,
        f"Average (mean of {SET_COUNT} sets)" if full else f"Average (mean of sets){_coverage(len(sets))}",
        f"Average (mean of modality means){_coverage(len(sets), n_columns)}",
    ]
    lines = ["", "## UniMed zero-shot (`--protocol unimed`)", ""]
    lines.append(
        "Per set UniMed-CLIP's metric: AUROC of class 1 (ranked by the difference of the two class "
        "scores) where the set says `auroc`, else top-1 accuracy. A modality column is the mean of its "
        "sets; `–`: no set of that modality was scored."
    )
    lines += [
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for model in models:
        summary = summarise([(column, _score(cells.get((model, name)))) for name, column, _ in sets])
        flag = "*" if summary.missing else ""
        row = [model, *(_fmt(summary.columns[c]) for c in COLUMNS)]
        for value in (summary.set_mean, summary.column_mean):
            row.append(_fmt(value) + (flag if value is not None else ""))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "### Per set", "", "| set | modality | metric | " + " | ".join(models) + " |"]
    lines.append("|---|---|---|" + "---:|" * len(models))
    for name, column, metric in sets:
        scores = [_cell(cells.get((model, name))) for model in models]
        lines.append(
            f"| {name} | {column} | {'AUROC' if metric == 'auroc' else 'top-1'} | "
            + " | ".join(scores)
            + " |"
        )
    return lines


def markdown(entries: Sequence[dict]) -> str:
    tasks = _tasks([e for e in entries if not e.get("protocol")])
    lines = ["# Evaluation results", ""]
    lines.append("Scores in %. `*`: average over fewer datasets (a score is missing); `err`: see Errors.")
    lines += unimed_markdown(entries)
    for task in tasks:
        models, datasets, cells = task_table(entries, task)
        if not datasets:
            continue
        base = base_task(task)
        modalities = _unique(m for _, m in datasets)
        lines += ["", f"## {task}", "", f"Headline: {HEADLINES.get(base, 'summary score')}.", ""]
        header = ["model", *(f"{d} ({m})" for d, m in datasets), *(f"avg {m}" for m in modalities), "average"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for model in models:
            row = [model, *(_cell(cells.get((model, name))) for name, _ in datasets)]
            per, overall = averages(model, datasets, cells)
            for value, partial in [*(per[m] for m in modalities), overall]:
                row.append(_fmt(value) + ("*" if partial and value is not None else ""))
            lines.append("| " + " | ".join(row) + " |")
    lines += binary_probe_markdown(entries)
    errors = [e for e in entries if e["status"] == "error"]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {e['model']} / {e['dataset']} / {e['task']}: {e['error']}" for e in errors]
    return "\n".join(lines) + "\n"


BINARY_PROBE_COLUMNS = (
    ("macro AUROC", "macro_auroc"),
    ("F1", "f1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("precision (positive)", "positive_precision"),
    ("recall (positive)", "positive_recall"),
)


def binary_probe_markdown(entries: Sequence[dict]) -> list[str]:
    """MedSLIP's probe table: a row per model x binary set x probe (full data, then k-shot) with
    macro AUROC, F1, precision, recall and the positive class's precision and recall; empty when no
    probe entry is binary, so reports without one keep their bytes."""
    rows = [
        e
        for e in entries
        if base_task(e["task"]) == "linear_probe" and e["status"] == "ok" and "positive" in e["metrics"]
    ]
    if not rows:
        return []
    rows.sort(key=lambda e: (e["dataset"], _task_key(e["task"])))
    header = ["model", "set", "probe", "positive", *(name for name, _ in BINARY_PROBE_COLUMNS)]
    lines = ["", "## Binary linear probes (MedSLIP's table)", ""]
    lines.append("F1, precision and recall: macro over the test classes; (positive): of the positive class.")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 6) + "|"]
    for e in rows:
        values = [_fmt(e["metrics"].get(key)) for _, key in BINARY_PROBE_COLUMNS]
        lines.append(
            "| " + " | ".join([e["model"], e["dataset"], e["task"], e["metrics"]["positive"], *values]) + " |"
        )
    return lines


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def bar_chart(entries: Sequence[dict], task: str) -> bytes | None:
    """Grouped bars: one group per dataset, one bar per model (headline score)."""
    models, datasets, cells = task_table(entries, task)
    return _bars(models, [d for d, _ in datasets], cells, task) if datasets else None


def unimed_chart(entries: Sequence[dict]) -> bytes | None:
    """The bar chart of the `unimed` protocol: a group per set, in UniMed's column order."""
    models, sets, cells = unimed_table(entries)
    if not sets:
        return None
    return _bars(models, [name for name, _, _ in sets], cells, "UniMed zero-shot (AUROC or top-1 per set)")


def _bars(models: list[str], datasets: list[str], cells: dict, title: str) -> bytes:
    import matplotlib.pyplot as plt

    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(datasets) * max(1, len(models)) ** 0.5 + 2), 3.6))
    for i, model in enumerate(models):
        heights = []
        for name in datasets:
            score = _score(cells.get((model, name)))
            heights.append(100 * score if score is not None else 0.0)
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(datasets))]
        ax.bar(xs, heights, width=width, label=model)
    ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def confusion_image(entry: dict) -> bytes:
    """Row-normalised confusion matrix (rows: true class) with counts written in the cells."""
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(entry["metrics"]["confusion"], dtype=float)
    names = list(entry["metrics"].get("per_class_recall") or range(len(counts)))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(12.0, 2.5 + 0.5 * len(names))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    if len(names) <= 30:
        for i in range(len(names)):
            for j in range(len(names)):
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(names)), [str(n) for n in names], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), [str(n) for n in names], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{entry['model']} on {entry['dataset']}", fontsize=9)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def write_report(entries: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """Write results.json, results.md and plots/ under `out_dir`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    plain = _plain(list(entries))
    written = []

    def put(path: Path, data: bytes) -> None:
        atomic_write(path, data)
        written.append(path)

    put(out / "results.json", (json.dumps(plain, indent=2, ensure_ascii=False) + "\n").encode())
    put(out / "results.md", markdown(plain).encode())
    charts = {task: bar_chart(plain, task) for task in _tasks([e for e in plain if not e.get("protocol")])}
    charts[UNIMED] = unimed_chart(plain)
    for name, data in charts.items():
        if data is not None:
            put(out / "plots" / f"{_safe_name(name)}.png", data)
    for e in plain:
        if e["task"] == "zeroshot" and e["status"] == "ok" and "confusion" in e.get("metrics", {}):
            name = f"{_safe_name(e['model'])}__{_safe_name(e['dataset'])}.png"
            put(out / "plots" / "confusion" / name, confusion_image(e))
    return written
