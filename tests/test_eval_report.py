"""results.md averages (per modality, overall), results.json and plots from hand-made entries."""

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from unimed_train.eval.report import markdown, write_report


def entry(model, dataset, modality, score, task="zeroshot", status="ok", **extra):
    metrics = {"top1": score, "confusion": [[2, 1], [0, 3]], "per_class_recall": {"a": 2 / 3, "b": 1.0}}
    e = {"model": model, "pretrained": "p", "dataset": dataset, "modality": modality, "task": task}
    if status == "ok":
        return {**e, "status": "ok", "metrics": metrics, "score": score, "n": 6, **extra}
    return {**e, "status": status, **extra}


ENTRIES = [
    entry("A", "cxr1", "xray", 0.50),
    entry("A", "cxr2", "xray", 0.70),
    entry("A", "brain", "mri", 0.90),
    entry("B", "cxr1", "xray", 0.20),
    entry("B", "cxr2", "xray", float("nan")),  # undefined score: not counted, average marked partial
    entry("B", "brain", "mri", 0.30),
    entry("A", "brain", "mri", 0.40, task="linear_probe"),
    entry("B", "brain", "mri", None, task="linear_probe", status="error", error="boom"),
    entry("A", "cxr1", "xray", None, task="retrieval", status="skipped", reason="not a retrieval set"),
]


def _row(md: str, section: str, model: str) -> list[str]:
    block = md.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    line = next(ln for ln in block.splitlines() if ln.startswith(f"| {model} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_averages_per_modality_and_overall():
    md = markdown(json.loads(json.dumps(ENTRIES).replace("NaN", "null")))
    header = next(ln for ln in md.split("## zeroshot\n")[1].splitlines() if ln.startswith("| model"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols == ["model", "brain (mri)", "cxr1 (xray)", "cxr2 (xray)", "avg mri", "avg xray", "average"]
    assert _row(md, "zeroshot", "A") == ["A", "90.00", "50.00", "70.00", "90.00", "60.00", "70.00"]
    # B: cxr2 has no score -> xray average over cxr1 only, overall over two sets, both flagged
    assert _row(md, "zeroshot", "B") == ["B", "30.00", "20.00", "–", "30.00", "20.00*", "25.00*"]
    assert _row(md, "linear_probe", "B")[1] == "err" and "- B / brain / linear_probe: boom" in md
    assert "## retrieval" not in md  # only skipped entries: no table


def test_files_are_written_deterministically(tmp_path: Path):
    files = write_report(ENTRIES, tmp_path / "r1")
    names = sorted(str(p.relative_to(tmp_path / "r1")) for p in files)
    assert names == [
        "plots/confusion/A__brain.png",
        "plots/confusion/A__cxr1.png",
        "plots/confusion/A__cxr2.png",
        "plots/confusion/B__brain.png",
        "plots/confusion/B__cxr1.png",
        "plots/confusion/B__cxr2.png",
        "plots/linear_probe.png",
        "plots/zeroshot.png",
        "results.json",
        "results.md",
    ]
    for path in files:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "r1" / "results.json").read_text())  # strict JSON: NaN became null
    assert saved[4]["score"] is None and saved[0]["metrics"]["top1"] == 0.5
    write_report(ENTRIES, tmp_path / "r2")
    for path in files:
        assert path.read_bytes() == (tmp_path / "r2" / path.relative_to(tmp_path / "r1")).read_bytes(), path
    assert not list((tmp_path / "r1").rglob("*.tmp"))
