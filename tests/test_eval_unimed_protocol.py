"""`--protocol unimed`: UniMed-CLIP's zero-shot table from sets that declare their metric and column.

A stand-in model makes the answers computable by hand: an image's feature is its mean colour, a
prompt's feature counts the colour words in it (red, green, blue), so solid-colour images against
colour-word prompts give known scores."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

import torch
from PIL import Image
from unimed_train.eval.__main__ import main
from unimed_train.eval.evalsets import expand_folders
from unimed_train.eval.protocols import ProtocolError, margin_auroc, summarise
from unimed_train.eval.report import markdown
from unimed_train.eval.runner import prepare_evalset
from unimed_train.model import Built

from tests.tiny_models import tiny_local_dir
from tests.wds_samples import write_tar

R, G, B = (255, 0, 0), (0, 255, 0), (0, 0, 255)
WORDS = ("red", "green", "blue")

PROMPTS = """
chest_prompts = {"no": ["a red film", "red, again"], "yes": ["a green film"]}
colour3 = {"r": ["red"], "g": ["green"], "b": ["blue"]}
organ_prompts = {"left": ["red organ"], "right": ["green organ"]}
"""

# name -> (modality, column, metric, prompt dict, classes, [(colour, class id)])
SETS = {
    # AUROC of class 1 by the green-minus-red margin: 3 of 4 pairs ranked right = 75 (top-1 would be 50)
    "xr_auc": ("xray", "X-ray", "auroc", "chest_prompts", ["no", "yes"], [(G, 1), ((200, 100, 0), 1), (R, 0), ((100, 200, 0), 0)]),
    "xr_top": ("xray", "X-ray", "top1", "colour3", ["r", "g", "b"], [(R, 0), (G, 1), (B, 2), (R, 1), (G, 2)]),  # 60
    # a binary top-1 set: 75 (its margin AUROC would be 83.33)
    "ct_top": ("ct", "CT", "top1", "organ_prompts", ["left", "right"], [(R, 0), (G, 1), (G, 0), (R, 0)]),
}  # fmt: skip


class _ColourModel(torch.nn.Module):
    def __init__(self, flat: bool):
        super().__init__()
        self.flat = flat

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(tokens) if self.flat else tokens


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)


def _tokenize(texts: list[str]) -> torch.Tensor:
    return torch.tensor([[float(t.count(w)) for w in WORDS] for t in texts])


def colour_model(spec, device="cpu", precision="fp32") -> Built:
    """Stands in for `load_model`; the model labelled `flat` gives every prompt the same feature."""
    model = _ColourModel(flat=spec.label == "flat")
    return Built(model, _to_tensor, _to_tensor, _tokenize, embed_dim=3, context_length=1)


def _png(colour: tuple[int, int, int]) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_set(
    root: Path, name: str, modality, column, metric, prompt_dict, classes, samples, **extra
) -> Path:
    """A one-shard single-label eval set with the info.json fields `unimed-data evalset --recipe
    unimed` writes; its own templates name no colour, so only the prompt file gives a usable score."""
    (root / "test").mkdir(parents=True)
    tar = [
        {"__key__": f"s{i:03d}", "png": _png(c), "cls": str(k).encode()} for i, (c, k) in enumerate(samples)
    ]
    write_tar(root / "test" / "0.tar", tar)
    (root / "test" / "nshards.txt").write_text("1\n")
    (root / "classnames.txt").write_text("\n".join(classes) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("a picture of {c}.\n")
    protocol = {"unimed": {"metric": metric, "column": column, **extra}}
    info = {
        "name": name,
        "modality": modality,
        "classes": classes,
        "prompt_dict": prompt_dict,
        "protocol": protocol,
    }
    (root / "info.json").write_text(json.dumps(info))
    return root


@pytest.fixture
def evals(tmp_path: Path) -> Path:
    """EVALS/ as the recipe writes it: a set per folder, plus the output marker and a stray folder."""
    root = tmp_path / "EVALS"
    for name, spec in SETS.items():
        write_set(root / name, name, *spec)
    (root / ".unimed-data.json").write_text("{}")
    (root / "notes").mkdir()
    (tmp_path / "prompts.py").write_text(PROMPTS)
    return root


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setattr("unimed_train.eval.runner.load_model", colour_model)


def _table_row(md: str, model: str, section: str) -> list[str]:
    block = md.split(section, 1)[1]
    line = next(ln for ln in block.splitlines() if ln.startswith(f"| {model} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_a_folder_of_sets_expands_to_its_sets_in_order(evals: Path, tmp_path: Path):
    single = tmp_path / "single"
    write_set(single, "single", *SETS["ct_top"])
    assert expand_folders([evals, single, tmp_path / "gone"]) == [
        evals / "ct_top",
        evals / "xr_auc",
        evals / "xr_top",
        single,
        tmp_path / "gone",  # left for load_evalset to explain
    ]


def test_the_unimed_table_from_known_answers(evals: Path, tmp_path: Path, standin):
    out = tmp_path / "report"
    argv = ["--model", "colour", "--model", "colour", "--label", "colours", "--label", "flat"]
    argv += ["--data", str(evals), "--prompts", str(tmp_path / "prompts.py"), "--protocol", "unimed"]
    assert main([*argv, "--out", str(out), "--workers", "0"]) == 0

    entries = json.loads((out / "results.json").read_text())
    assert [(e["model"], e["dataset"], e["task"]) for e in entries] == [
        (m, s, "zeroshot") for m in ("colours", "flat") for s in ("ct_top", "xr_auc", "xr_top")
    ]  # zero-shot only, sets in sorted order
    got = {(e["model"], e["dataset"]): e for e in entries}
    auc = got[("colours", "xr_auc")]
    assert (auc["protocol"], auc["metric"], auc["column"]) == ("unimed", "auroc", "X-ray")
    assert auc["score"] == pytest.approx(0.75) and auc["metrics"]["top1"] == pytest.approx(0.5)
    ct = got[("colours", "ct_top")]
    assert (ct["metric"], ct["score"]) == ("top1", pytest.approx(0.75))
    assert got[("colours", "xr_top")]["score"] == pytest.approx(0.6)
    flat = [got[("flat", s)]["score"] for s in ("xr_auc", "xr_top", "ct_top")]
    assert flat == pytest.approx([0.5, 0.2, 0.75])  # ties: AUROC 0.5, argmax class 0

    md = (out / "results.md").read_text()
    header = _table_row(md, "model", "## UniMed zero-shot")
    assert header == [
        "model", "X-ray", "Retinal fundus", "CT", "MRI", "US", "Histopathology",
        "Average (mean of sets) (3 of 21 sets)",
        "Average (mean of modality means) (3 of 21 sets, 2 of 6 modalities)",
    ]  # fmt: skip
    # X-ray = (75 + 60) / 2; over sets (75 + 60 + 75) / 3; over modalities (67.5 + 75) / 2
    assert _table_row(md, "colours", "## UniMed") == [
        "colours",
        "67.50",
        "–",
        "75.00",
        "–",
        "–",
        "–",
        "70.00",
        "71.25",
    ]
    assert _table_row(md, "flat", "## UniMed") == [
        "flat",
        "35.00",
        "–",
        "75.00",
        "–",
        "–",
        "–",
        "48.33",
        "55.00",
    ]
    per_set = md.split("### Per set", 1)[1]
    assert "| set | modality | metric | colours | flat |" in per_set
    assert per_set.index("| xr_auc | X-ray | AUROC | 75.00 | 50.00 |") < per_set.index(
        "| ct_top | CT | top-1 |"
    )
    assert "## zeroshot" not in md  # UniMed's table replaces the generic one
    assert (out / "plots" / "unimed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "plots" / "zeroshot.png").exists()


def test_a_prompt_cap_keeps_the_first_prompts(evals: Path, tmp_path: Path):
    from unimed_train.eval.prompt_files import read_prompt_file

    capped = write_set(tmp_path / "rsna", "rsna", *SETS["xr_auc"], max_prompts=1)
    prompts = read_prompt_file(tmp_path / "prompts.py")
    evalset = prepare_evalset(capped, prompts, "unimed")
    assert evalset.prompt_ensembles() == [["a red film"], ["a green film"]]
    assert prepare_evalset(capped, prompts).prompt_ensembles()[0] == ["a red film", "red, again"]


def test_averages_count_only_scored_sets():
    whole = summarise([("X-ray", 0.5), ("X-ray", None), ("MRI", 0.9), ("US", 0.1)])
    assert whole.columns["X-ray"] == 0.5 and whole.columns["CT"] is None
    assert whole.set_mean == pytest.approx(0.5) and whole.column_mean == pytest.approx(0.5)
    assert (whole.scored, whole.missing) == (3, 1)
    assert margin_auroc(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1, 1])) is None  # one class only


def test_a_model_without_a_score_is_flagged_and_errors_show(evals: Path):
    def entry(model, dataset, column, score, status="ok"):
        e = {"model": model, "pretrained": None, "dataset": dataset, "modality": "m", "task": "zeroshot"}
        e.update(protocol="unimed", metric="top1", column=column, status=status)
        return {**e, "score": score, "metrics": {}} if status == "ok" else {**e, "error": "boom"}

    entries = [
        entry("A", "a", "MRI", 0.8),
        entry("A", "b", "US", 0.4),
        entry("B", "a", "MRI", 0.6),
        entry("B", "b", "US", None, status="error"),
        {"model": "C", "pretrained": None, "dataset": "a", "modality": "unknown", "task": "all",
         "status": "error", "error": "could not build"},
    ]  # fmt: skip
    md = markdown(entries)
    assert _table_row(md, "A", "## UniMed") == ["A", "–", "–", "–", "80.00", "40.00", "–", "60.00", "60.00"]
    assert _table_row(md, "B", "## UniMed") == ["B", "–", "–", "–", "60.00", "–", "–", "60.00*", "60.00*"]
    assert _table_row(md, "C", "## UniMed")[-2:] == ["–", "–"]
    assert "| b | US | top-1 | 40.00 | err | – |" in md and "| a | MRI | top-1 | 80.00 | 60.00 | err |" in md
    assert "- B / b / zeroshot: boom" in md


def _error_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_sets_or_prompts_the_protocol_cannot_use_stop_before_any_model(
    evals: Path, tmp_path: Path, capsys, monkeypatch
):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr("unimed_train.eval.runner.load_model", no_model)
    prompts = tmp_path / "prompts.py"
    base = [
        "--model",
        "colour",
        "--out",
        str(tmp_path / "report"),
        "--protocol",
        "unimed",
        "--prompts",
        str(prompts),
    ]

    info = json.loads((evals / "xr_top" / "info.json").read_text())
    bare = write_set(tmp_path / "bare", "bare", *SETS["ct_top"])
    (bare / "info.json").write_text(
        json.dumps({"name": "bare", "modality": "ct", "prompt_dict": "organ_prompts"})
    )
    err = _error_line([*base, "--data", str(evals), "--data", str(bare)], capsys)
    assert f"{bare}: set bare: info.json has no" in err and '"protocol"' in err

    (evals / "xr_top" / "info.json").write_text(json.dumps({**info, "prompt_dict": "colours4"}))
    err = _error_line([*base, "--data", str(evals)], capsys)
    assert f"{prompts}: set xr_top" in err and "no prompt dictionary 'colours4'" in err

    (evals / "xr_top" / "info.json").write_text(json.dumps(info))
    prompts.write_text(PROMPTS.replace('"b": ["blue"]', '"b": []'))
    err = _error_line([*base, "--data", str(evals)], capsys)
    assert f"{prompts}: set xr_top: class 'b' has an empty prompt list" in err

    prompts.write_text(PROMPTS.replace(', "b": ["blue"]', ""))
    err = _error_line([*base, "--data", str(evals)], capsys)
    assert f"{prompts}: set xr_top: class 'b' has no prompts" in err

    err = _error_line([*base, "--data", str(evals), "--task", "zeroshot,linear_probe"], capsys)
    assert "--protocol unimed scores zero-shot only" in err
    assert not (tmp_path / "report").exists()


def test_a_real_open_clip_model_under_the_protocol(evals: Path, tmp_path: Path):
    """The same run with a tiny open_clip model: every set scored, the table written."""
    out = tmp_path / "report"
    argv = ["--pretrained", tiny_local_dir(tmp_path / "oc"), "--data", str(evals), "--out", str(out)]
    argv += ["--prompts", str(tmp_path / "prompts.py"), "--protocol", "unimed", "--workers", "0"]
    assert main(argv) == 0
    entries = json.loads((out / "results.json").read_text())
    assert [e["status"] for e in entries] == ["ok"] * 3
    assert all(0 <= e["score"] <= 1 for e in entries)
    assert "Average (mean of modality means)" in (out / "results.md").read_text()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"metric": "f1"}, "protocol.unimed.metric is 'f1'"),
        ({"column": "Fundus"}, "protocol.unimed.column is 'Fundus'"),
        ({"max_prompts": 0}, "protocol.unimed.max_prompts is 0"),
        ({"metric": "auroc"}, "AUROC needs two classes; the set has 3"),
    ],
)
def test_a_declaration_the_protocol_cannot_use_names_the_set(tmp_path: Path, change, said):
    modality, column, metric, prompt_dict, classes, samples = SETS["xr_top"]
    declared = {"column": column, "metric": metric, **change}
    root = write_set(
        tmp_path / "x",
        "x",
        modality,
        declared.pop("column"),
        declared.pop("metric"),
        prompt_dict,
        classes,
        samples,
        **declared,
    )
    with pytest.raises(ProtocolError, match=said) as caught:
        prepare_evalset(root, protocol="unimed")
    assert str(caught.value).startswith(f"{root}: set x: ")


def test_multilabel_sets_are_not_in_the_protocol(tmp_path: Path):
    root = write_set(tmp_path / "m", "m", *SETS["ct_top"])
    (root / "dataset_type.txt").write_text("multilabel\n")
    with pytest.raises(ProtocolError, match="a multilabel set; the protocol scores single-label sets only"):
        prepare_evalset(root, protocol="unimed")


def test_all_21_sets_give_the_plain_headers():
    from unimed_train.eval.protocols import COLUMNS

    entries = [
        {"model": "A", "pretrained": None, "dataset": f"s{i:02d}", "modality": "m", "task": "zeroshot",
         "protocol": "unimed", "metric": "top1", "column": COLUMNS[i % 6], "status": "ok", "score": 0.5, "metrics": {}}
        for i in range(21)
    ]  # fmt: skip
    header = _table_row(markdown(entries), "model", "## UniMed")
    assert header[-2:] == ["Average (mean of 21 sets)", "Average (mean of modality means)"]
    assert _table_row(markdown(entries), "A", "## UniMed")[1:] == ["50.00"] * 8


def test_the_protocol_checks_sets_against_the_recipes_own_table():
    """One definition of the columns, metrics and set count: the ones `evalset --recipe unimed` writes."""
    from unimed_train.eval import protocols

    from unimed_data.evalset import unimed_sets

    assert protocols.COLUMNS is unimed_sets.COLUMNS and protocols.METRICS is unimed_sets.METRICS
    assert protocols.SET_COUNT == len(unimed_sets.SETS) == 21
    assert {spec.column for spec in unimed_sets.SETS} == set(protocols.COLUMNS)
