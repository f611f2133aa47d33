"""`python -m unimed_train.eval` end to end: two tiny models x eval sets -> results.json, md, plots."""

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.cli import UsageError
from unimed_train.eval.__main__ import main, parser, specs_from_args

from tests.tiny_models import tiny_checkpoint, tiny_local_dir
from tests.wds_samples import write_evalset


def test_two_models_on_two_sets(tmp_path: Path, capsys, caplog):
    single = write_evalset(tmp_path / "shapes", n_classes=5, splits={"train": 4, "val": 2, "test": 3})
    multi = write_evalset(
        tmp_path / "findings", kind="multilabel", n_classes=4, splits={"train": 4, "test": 4}, modality="ct"
    )
    local = tiny_local_dir(tmp_path / "oc_model")
    ckpt = tiny_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a foreign file: --force writes beside it
    argv = ["--pretrained", local, "--pretrained", ckpt, "--label", "local", "--label", "ours"]
    argv += ["--data", str(single), "--data", str(multi), "--out", str(out), "--force"]
    status = main([*argv, "--k-shot", "2", "--batch-size", "8", "--workers", "0"])
    assert status == 0 and (out / "notes.txt").read_text() == "mine"
    err = capsys.readouterr().err
    assert f"loaded {ckpt}: " in err and "tensors (model tiny)" in err
    assert "initialized randomly" not in caplog.text + err  # open_clip's notice, before our load

    entries = json.loads((out / "results.json").read_text())
    table = {(e["model"], e["dataset"], e["task"]): e for e in entries}
    assert len(entries) == len(table) == 2 * 2 * 4
    for model in ("local", "ours"):
        zs = table[(model, "shapes", "zeroshot")]
        assert zs["status"] == "ok" and zs["n"] == 15 and zs["modality"] == "xray"
        assert {"top1", "top5", "balanced_accuracy", "per_class_recall", "confusion"} <= set(zs["metrics"])
        assert zs["score"] == zs["metrics"]["top1"]
        mz = table[(model, "findings", "zeroshot")]
        assert {"macro_auroc", "mean_average_precision", "per_class_auroc"} <= set(mz["metrics"])
        for dataset in ("shapes", "findings"):
            lp = table[(model, dataset, "linear_probe")]
            assert lp["status"] == "ok" and {"macro_auroc", "n_train", "n_test"} <= set(lp["metrics"])
            assert table[(model, dataset, "linear_probe_2shot")]["metrics"]["k_shot"] == 2
            skipped = table[(model, dataset, "retrieval")]
            assert skipped["status"] == "skipped" and "not a retrieval set" in skipped["reason"]
        assert "accuracy" in table[(model, "shapes", "linear_probe")]["metrics"]
    assert table[("ours", "shapes", "zeroshot")]["pretrained"] == ckpt
    # different weights, different features: the two models do not give identical scores
    assert (
        table[("local", "shapes", "zeroshot")]["metrics"] != table[("ours", "shapes", "zeroshot")]["metrics"]
    )

    md = (out / "results.md").read_text()
    assert "## zeroshot" in md and "| local |" in md and "avg xray" in md and "## Errors" not in md
    assert (out / "plots" / "zeroshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "plots" / "confusion" / "ours__shapes.png").is_file()
    assert not (out / "plots" / "confusion" / "ours__findings.png").exists()  # multilabel: no matrix


def test_models_yaml_and_label_rules(tmp_path: Path):
    yaml_file = tmp_path / "models.yaml"
    yaml_file.write_text(
        "- {name: base, model: ViT-B-16, pretrained: openai}\n"
        "- {model: tiny, model-cfg: t.json, context-length: 64}\n"
        "- {model: tiny, model-cfg: t.json}\n"
    )
    specs = specs_from_args(parser().parse_args(["--models", str(yaml_file), "--data", "x", "--out", "o"]))
    assert [s.label for s in specs] == ["base", "tiny", "tiny#2"]
    assert (specs[1].model_cfg, specs[1].context_length) == ("t.json", 64)
    flags = ["--model", "ViT-B-16", "--pretrained", "openai", "--pretrained", "runs/a/checkpoints/latest.pt"]
    with pytest.raises(UsageError):  # one --model is shared, but not with a count that fits neither
        specs_from_args(
            parser().parse_args(
                [*flags, "--label", "a", "--label", "b", "--label", "c", "--data", "x", "--out", "o"]
            )
        )
    shared = specs_from_args(parser().parse_args([*flags, "--data", "x", "--out", "o"]))
    assert [s.model for s in shared] == ["ViT-B-16", "ViT-B-16"]


def test_a_missing_checkpoint_file_is_named(tmp_path: Path):
    from unimed_train.eval.encode import ModelSpec, load_model

    missing = tmp_path / "runs" / "checkpoints" / "latest.pt"
    with pytest.raises(ValueError, match=f"{missing}: no such checkpoint file"):
        load_model(ModelSpec("gone", pretrained=str(missing)))


def test_sets_sharing_a_name_get_distinct_columns(tmp_path: Path):
    from unimed_train.eval.runner import set_names

    first = write_evalset(tmp_path / "x" / "chexpert", n_classes=2)
    second = write_evalset(tmp_path / "y" / "chexpert", n_classes=2)
    assert set_names([first, second, tmp_path / "gone"]) == ["chexpert", "chexpert#2", "gone"]


def test_the_runner_records_an_unreadable_set_and_runs_the_rest(tmp_path: Path):
    from unimed_train.eval.encode import ModelSpec
    from unimed_train.eval.runner import run

    good = write_evalset(tmp_path / "shapes", n_classes=2, splits={"test": 2})
    broken = write_evalset(tmp_path / "broken", n_classes=2)
    (broken / "classnames.txt").unlink()
    spec = ModelSpec("tiny", pretrained=tiny_local_dir(tmp_path / "oc_model"))
    entries = run([spec], [good, broken], tasks=["zeroshot"])
    assert [(e["dataset"], e["status"]) for e in entries] == [("shapes", "ok"), ("broken", "error")]
    assert "missing classnames.txt" in entries[1]["error"] and str(broken) in entries[1]["error"]


def test_unusable_inputs_stop_the_evaluator_with_one_error_line(tmp_path: Path, capsys):
    """Found before any model is built or anything is written: exit status 2, no traceback."""
    good = write_evalset(tmp_path / "shapes", n_classes=2, splits={"test": 2})
    broken = write_evalset(tmp_path / "broken", n_classes=2)
    (broken / "classnames.txt").unlink()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.md").write_text("theirs")
    models = tmp_path / "models.yaml"
    models.write_text("- {label: a, pretrained: [x\n")
    ckpt = tiny_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    out = ["--out", str(tmp_path / "report")]
    cases = [
        (
            ["--pretrained", str(tmp_path / "gone.pt"), "--data", str(good), *out],
            "gone.pt: no such checkpoint",
        ),
        (["--pretrained", ckpt, "--data", str(good), "--data", str(broken), *out], "missing classnames.txt"),
        (["--models", str(models), "--data", str(good), *out], f"{models}: cannot read the models"),
        (
            ["--model", "tiny", "--model-cfg", str(tmp_path / "gone.json"), "--data", str(good), *out],
            "gone.json: no such file",
        ),
        (["--pretrained", ckpt, "--data", str(good), "--task", "x", *out], "tasks must be among"),
        (["--pretrained", ckpt, "--data", str(good), "--out", str(foreign)], f"{foreign}: not empty"),
        (
            ["--pretrained", ckpt, "--data", str(good), "--out", str(foreign), "--force"],
            "would replace results.md",
        ),
    ]
    for argv, said in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert said in err, (said, err)
    assert not (tmp_path / "report").exists() and (foreign / "results.md").read_text() == "theirs"


def test_a_finished_report_owns_only_what_it_wrote(tmp_path: Path):
    """Every task skipped: no plots/, so the marker must not keep `plots` as ours (a folder the
    user puts there later is theirs, never replaced)."""
    good = write_evalset(tmp_path / "shapes", n_classes=2, splits={"test": 2})
    out = tmp_path / "report"
    argv = ["--pretrained", tiny_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")]
    assert main([*argv, "--data", str(good), "--task", "retrieval", "--out", str(out), "--workers", "0"]) == 0
    assert json.loads((out / ".unimed-data.json").read_text())["owned"] == ["results.json", "results.md"]


@pytest.mark.parametrize("module", ["unimed_train.eval.__main__", "unimed_train.export"])
def test_help_describes_every_option_and_needs_no_torch(module: str):
    """Each option says what it is and its default (or that it is required); building the parser
    imports no torch, open_clip, sklearn or matplotlib, so `--help` answers at once."""
    import subprocess
    import sys

    check = (
        f"import sys; from {module} import parser; p = parser()\n"
        "for a in p._actions:\n"
        "    assert a.help and ('(default: ' in a.help or '(required)' in a.help or a.dest == 'help'), a.dest\n"
        "heavy = [m for m in ('torch', 'open_clip', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "p.parse_args(['--help'])\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout and "(default: " in done.stdout
