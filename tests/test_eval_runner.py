"""`python -m unimed_train.eval` end to end: two tiny models x eval sets -> results.json, md, plots."""

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.eval.__main__ import main, parser, specs_from_args

from tests.tiny_models import tiny_checkpoint, tiny_local_dir
from tests.wds_samples import write_evalset


def test_two_models_on_two_sets_and_a_broken_one(tmp_path: Path):
    single = write_evalset(tmp_path / "shapes", n_classes=5, splits={"train": 4, "val": 2, "test": 3})
    multi = write_evalset(
        tmp_path / "findings", kind="multilabel", n_classes=4, splits={"train": 4, "test": 4}, modality="ct"
    )
    broken = write_evalset(tmp_path / "broken", n_classes=2)
    (broken / "classnames.txt").unlink()
    local = tiny_local_dir(tmp_path / "oc_model")
    ckpt = tiny_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    out = tmp_path / "report"
    argv = ["--pretrained", local, "--pretrained", ckpt, "--label", "local", "--label", "ours"]
    argv += ["--data", str(single), "--data", str(multi), "--data", str(broken), "--out", str(out)]
    status = main([*argv, "--k-shot", "2", "--batch-size", "8", "--workers", "0"])
    assert status == 1  # the broken set is an error

    entries = json.loads((out / "results.json").read_text())
    table = {(e["model"], e["dataset"], e["task"]): e for e in entries}
    assert len(entries) == len(table) == 2 * (2 * 4 + 1)
    for model in ("local", "ours"):
        err = table[(model, "broken", "all")]
        assert (
            err["status"] == "error"
            and "missing classnames.txt" in err["error"]
            and str(broken) in err["error"]
        )
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
    assert "## zeroshot" in md and "| local |" in md and "avg xray" in md and "## Errors" in md
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
    with pytest.raises(SystemExit):  # one --model is shared, but not with a count that fits neither
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
