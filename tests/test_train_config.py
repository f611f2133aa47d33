"""Trainer options: every flag is described with its default, and mistakes are one `error:` line."""

from pathlib import Path

import pytest
from unimed_train.cli import BUG, Parser, expected_failures
from unimed_train.config import TrainConfig, parse_config, parser


def options(p: Parser) -> list:
    return [a for a in p._actions if a.option_strings != ["-h", "--help"]]


def test_every_trainer_option_has_help_its_default_and_choices():
    p = parser()
    flags = {a.dest: a for a in options(p)}
    assert set(flags) == {"config"} | set(TrainConfig.__dataclass_fields__)
    for action in options(p):
        assert action.help and action.option_strings[0] in p.format_help(), action.dest
        if action.dest not in ("config", "train_data"):
            assert "(default: " in action.help, action.help
    assert flags["warmup"].help.endswith("(default: 100)")
    assert flags["precision"].choices == ("fp32", "amp", "amp_bf16")
    assert set(flags["loss"].choices) == {"clip", "siglip", "slip", "distill"}


def failure(capsys, argv: list[str]) -> str:
    """The stderr of a parse that must fail the expected way: exit status 2, one `error:` line."""
    with pytest.raises(SystemExit) as exit_info, expected_failures("interrupted"):
        parse_config(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_mistakes_are_one_error_line_with_exit_status_2(tmp_path: Path, capsys):
    data = ["--train-data", "x.tar"]
    assert "unrecognized arguments: --bogus" in failure(capsys, [*data, "--bogus", "1"])
    assert "--precision" in failure(capsys, [*data, "--precision", "fp8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1e-3\n")
    assert f"{bad}: cannot read the config" in failure(capsys, [*data, "--config", str(bad)])
    bad.write_text("lr: 1e-3\nlearning_rate: 2\n")
    assert f"{bad}: unknown option(s) learning_rate" in failure(capsys, [*data, "--config", str(bad)])
    bad.write_text("loss: cosine\n")
    assert "--loss must be one of clip, siglip" in failure(capsys, [*data, "--config", str(bad)])
    assert "--train-data is required" in failure(capsys, [])
    assert "needs --teachers" in failure(capsys, [*data, "--loss", "distill"])
    missing = tmp_path / "none.yaml"
    assert f"{missing}: cannot read the config" in failure(capsys, [*data, "--config", str(missing)])


def test_a_good_config_and_flags_over_it(tmp_path: Path):
    good = tmp_path / "train.yaml"
    good.write_text("lr: 1.0e-3\nprecision: amp\nteachers: [a, b]\n")
    config = parse_config(["--config", str(good), "--train-data", "x.tar", "--lr", "2e-3", "--force"])
    assert (config.lr, config.precision, config.teachers, config.force) == (2e-3, "amp", ["a", "b"], True)


def test_yaml_values_go_through_the_flags_casters(tmp_path: Path, capsys):
    """`lr: abc` or `steps: [1]` is one line naming the file and option, not a TypeError in torch."""
    data = ["--train-data", "x.tar"]
    bad = tmp_path / "bad.yaml"
    for text, said in (
        ("lr: abc\n", "lr: expected a number, not 'abc'"),
        ("steps: [1]\n", "steps: expected an integer, not [1]"),
        ("steps: 1.5\n", "steps: expected an integer, not 1.5"),
        ("lr: null\n", "lr: expected a number, not None"),
        ("lock_image: maybe\n", "lock_image: expected true or false, not 'maybe'"),
        ("teachers: [a, 1]\n", "teachers: expected a list of names, not ['a', 1]"),
        ("model: {name: x}\n", "model: expected a single value"),
    ):
        bad.write_text(text)
        assert f"{bad}: {said}" in failure(capsys, [*data, "--config", str(bad)])
    good = tmp_path / "good.yaml"
    good.write_text("lr: 5e-4\nsteps: 10\nteachers: a,b\nlock_image: yes\ngrad_clip: null\n")
    config = parse_config(["--config", str(good), *data])
    assert (config.lr, config.steps, config.teachers, config.lock_image) == (5e-4, 10, ["a", "b"], True)
    assert config.grad_clip is None


def test_missing_model_files_are_named_but_hub_names_pass(tmp_path: Path, capsys):
    data = ["--train-data", "x.tar"]
    gone = tmp_path / "gone.json"
    assert f"--model-cfg {gone}: no such file" in failure(capsys, [*data, "--model-cfg", str(gone)])
    for path in (str(tmp_path / "bert"), "./bert", "models/bio/bert"):
        assert f"--text-encoder {path}: no such folder" in failure(capsys, [*data, "--text-encoder", path])
    hub = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
    assert parse_config([*data, "--text-encoder", hub]).text_encoder == hub
    (tmp_path / "bert").mkdir()
    assert parse_config([*data, "--text-encoder", str(tmp_path / "bert")]).text_encoder


def test_a_bug_keeps_its_traceback_and_ctrl_c_is_one_line(capsys):
    with pytest.raises(SystemExit) as bug, expected_failures("kept"):
        raise KeyError("boom")
    err = capsys.readouterr().err
    assert bug.value.code == 1 and "Traceback" in err and "KeyError: 'boom'" in err
    assert err.splitlines()[-1] == f"error: {BUG}"
    with pytest.raises(SystemExit) as stop, expected_failures("the checkpoints are kept"):
        raise KeyboardInterrupt
    assert stop.value.code == 130 and capsys.readouterr().err == "interrupted: the checkpoints are kept\n"
