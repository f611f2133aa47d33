"""Trainer options: every flag is described with its default, and mistakes are one `error:` line."""

from pathlib import Path

import pytest
from unimed_train.cli import Parser, expected_failures
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
    with pytest.raises(SystemExit) as exit_info, expected_failures():
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
