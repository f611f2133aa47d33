"""The command line: every command documents itself, and wrong source options fail with exit 2."""

import pytest

from tests.conftest import run_cli

COMMANDS = ["build", "ingest", "convert", "caption", "shard", "validate", "stats"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_top_level_help_lists_every_command():
    output = run_cli("--help").output
    assert all(command in output for command in COMMANDS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--out", "x"], "exactly one of"),
        (["build", "--demo", "--from-folder", ".", "--out", "x"], "exactly one of"),
        (["build", "--from-folder", ".", "--out", "x"], "--modality"),
    ],
)
def test_source_options_are_checked(args, message):
    result = run_cli(*args)
    assert result.exit_code == 2 and message in result.output


def test_stats_of_a_folder_that_is_not_a_build(tmp_path):
    result = run_cli("stats", tmp_path)
    assert result.exit_code == 2 and "stats.json" in result.output
