"""The command line: every command documents itself, and wrong source options fail with exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import csv_label_config, run_cli

COMMANDS = [
    "build",
    "ingest",
    "convert",
    "caption",
    "shard",
    "evalset",
    "prompts",
    "validate",
    "stats",
    "download",
    "sources",
]


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


def test_sources_lists_the_registry(tmp_path):
    import json

    rows = json.loads(run_cli("sources", "--json").stdout)
    assert sum(r["role"] == "eval" for r in rows) >= 21
    assert {r["modality"] for r in rows if r["role"] == "pretrain"} >= {
        "xray",
        "ct",
        "mri",
        "ultrasound",
        "pathology",
        "fundus",
    }
    assert "mimic-cxr-jpg" in run_cli("sources").output


def test_download_fetches_verifies_and_unpacks_over_http_then_skips(tmp_path, server):
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("images/a.txt")
        info.size = len(b"hello")
        tar.addfile(info, io.BytesIO(b"hello"))
    server.files["/set.tar.gz"] = buf.getvalue()
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(
        "name: tiny\nmodality: ct\nlicense: CC0\nlayout: {type: folder}\ndownload:\n"
        f"  - {{fetcher: http, url: '{server.url}/set.tar.gz', sha256: {digest}}}\n"
    )
    result = run_cli("download", manifest, "--root", tmp_path / "raw")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw" / "tiny" / "images" / "a.txt").read_text() == "hello"
    again = run_cli("download", manifest, "--root", tmp_path / "raw")
    assert again.exit_code == 0 and "already complete" in again.output


def test_download_of_a_request_only_set_explains_what_to_do(tmp_path):
    manifest = tmp_path / "asked.yaml"
    manifest.write_text(
        "name: asked\nmodality: mri\nlicense: research\naccess: request\nlayout: {type: folder}\n"
        "download:\n  - {fetcher: manual, instructions: 'Request access from the authors.', "
        "expect: [{name: labels.csv}]}\n"
    )
    result = run_cli("download", manifest, "--root", tmp_path / "raw")
    assert result.exit_code == 1 and "Request access from the authors." in result.output
    (tmp_path / "raw" / "asked").mkdir(parents=True, exist_ok=True)
    (tmp_path / "raw" / "asked" / "labels.csv").write_text("x")
    assert run_cli("download", manifest, "--root", tmp_path / "raw").exit_code == 0


def _options(command: str) -> dict:
    from typer.main import get_command

    from unimed_data.cli import app

    click_command = get_command(app).commands[command]
    return {p.name: p for p in click_command.params if p.param_type_name == "option"}


LLM_OPTIONS = {"captioner", "llm_base_url", "llm_model", "llm_concurrency", "llm_api_key_env", "cache"}


@pytest.mark.parametrize(
    ("stage", "has", "lacks"),
    [
        ("ingest", {"seed"}, {"shard_size", "max_side", "jpeg_quality", "workers", *LLM_OPTIONS}),
        (
            "convert",
            {"max_side", "min_side", "jpeg_quality", "workers"},
            {"shard_size", "max_error_rate", *LLM_OPTIONS},
        ),
        ("caption", {*LLM_OPTIONS, "limit", "dry_run"}, {"shard_size", "max_side", "workers"}),
        ("shard", {"shard_size", "txt_format", "max_error_rate"}, {"max_side", "jpeg_quality", *LLM_OPTIONS}),
        ("build", {"shard_size", "max_side", "max_error_rate", *LLM_OPTIONS}, set()),
    ],
)
def test_each_stage_offers_only_its_own_options(stage, has, lacks):
    from typer.main import get_command

    from unimed_data.cli import app

    names = set(_options(stage))
    assert has <= names and not lacks & names
    assert {"out", "recipe", "root", "strict", "demo", "from_folder", "force"} <= names
    assert "exactly one of CONFIG, --recipe" in get_command(app).commands[stage].help


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_shows_its_default(command):
    for name, option in _options(command).items():
        if name == "help" or option.required:
            continue
        shown = isinstance(option.show_default, str) or (
            option.show_default and option.default is not None and not option.is_flag
        )
        assert shown, f"{command} --{name}: its help shows no default"


def test_messages_are_never_wrapped_or_read_as_markup(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    root = tmp_path / ("a-rather-long-folder-name-" * 3) / "raw"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "labels.csv").write_text("path,[bold]comment\nx.png,y\n")
    config = csv_label_config(tmp_path, "notes", root)
    result = run_cli("build", config, "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("error: dataset notes in ") and str(root / "notes") in line
    assert "labels.csv: header lacks column(s) ['finding']" in line and "'[bold]comment'" in line


def test_a_missing_dataset_folder_fails_before_the_output_is_made(tmp_path):
    config = csv_label_config(tmp_path, "gone", tmp_path / "nowhere")
    result = run_cli("ingest", config, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: dataset gone: folder {tmp_path / 'nowhere' / 'gone'} not found")
    assert len(result.output.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_ctrl_c_says_what_is_kept_and_exits_130(monkeypatch):
    import unimed_data.sources

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(unimed_data.sources, "source_rows", interrupted)
    result = run_cli("sources")
    assert result.exit_code == 130
    [line] = result.output.splitlines()
    assert line.startswith("interrupted:") and "kept" in line and "rerun" in line


def test_an_unexpected_exception_is_reported_as_a_bug(monkeypatch, capsys):
    import unimed_data.sources
    from unimed_data import cli

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(unimed_data.sources, "source_rows", broken)
    monkeypatch.setattr("sys.argv", ["unimed-data", "sources"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err
    assert err.rstrip().endswith(cli.BUG) and "a bug in unimed-data" in cli.BUG


def test_the_console_script_is_the_guarded_entry():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["unimed-data"] == "unimed_data.cli:main"


def test_download_of_a_source_without_fetcher_says_where_and_how(tmp_path):
    result = run_cli("download", "pcam", "--root", tmp_path)
    assert result.exit_code == 1
    for text in ("https://github.com/basveeling/pcam", "CC0 1.0", "open download", "<class>/<image>"):
        assert text in result.output
    assert str(tmp_path / "pcam") in result.output
    (tmp_path / "pcam" / "tumor").mkdir(parents=True)
    (tmp_path / "pcam" / "tumor" / "a.png").write_bytes(b"png")
    again = run_cli("download", "pcam", "--root", tmp_path)
    assert again.exit_code == 0 and "already complete" in again.output


def test_stats_errors_lists_first_rows_and_counts_per_reason(demo_out):
    import pyarrow.parquet as pq

    total = pq.ParquetFile(demo_out / "errors.parquet").metadata.num_rows
    assert total >= 2, "the demo build is expected to record errors"
    result = run_cli("stats", demo_out, "--errors", "--rows", "2")
    assert result.exit_code == 0, result.output
    assert f"First 2 of {total} errors" in result.output and "Errors per reason" in result.output


def test_reasons_are_grouped_without_their_locations():
    from unimed_data.error_report import reason_kind

    assert reason_kind("a/b.png: file not found", "/raw/set/a/b.png") == "file not found"
    assert reason_kind("labels.csv:12: empty label in column 'x'", None) == "empty label in column 'x'"
    one = reason_kind("cannot read image (cannot identify image file '/raw/a.png')", "/raw/a.png")
    assert one == reason_kind("cannot read image (cannot identify image file '/raw/b.png')", "/raw/b.png")


def _tree_with_failures(tmp_path, good: int, bad: int):
    from PIL import Image

    folder = tmp_path / "tree"
    (folder / "cls").mkdir(parents=True)
    for i in range(good):
        Image.new("L", (64, 64), color=i * 40).save(folder / "cls" / f"good{i}.png")
    for i in range(bad):
        (folder / "cls" / f"bad{i}.png").write_bytes(b"not an image")
    return folder


def test_a_build_over_the_error_rate_writes_everything_then_exits_1(tmp_path):
    folder = _tree_with_failures(tmp_path, good=1, bad=2)
    args = ["build", "--from-folder", folder, "--modality", "ct", "--workers", "1"]
    result = run_cli(*args, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert (tmp_path / "out" / "stats.json").exists() and (tmp_path / "out" / "errors.parquet").exists()
    assert "error: 2 of 3 inputs failed (67%), more than the allowed 50%" in result.output
    assert run_cli(*args, "--out", tmp_path / "out", "--max-error-rate", "0.7").exit_code == 0
    assert run_cli("shard", *args[1:], "--out", tmp_path / "out").exit_code == 1


def test_validate_and_stats_on_a_folder_that_is_not_a_build_are_one_error_line(tmp_path: Path):
    result = run_cli("validate", tmp_path / "nowhere")
    assert result.exit_code == 2 and "error:" in result.output and "no stats.json" in result.output
    (tmp_path / "stats.json").write_text("{not json")
    result = run_cli("stats", tmp_path)
    assert result.exit_code == 2 and f"{tmp_path / 'stats.json'}: not a stats file" in result.output


def test_download_of_an_unknown_name_names_it_once(tmp_path: Path):
    result = run_cli("download", "no-such-source", "--root", tmp_path)
    assert result.exit_code == 1
    assert "error: no-such-source: no such manifest" in result.output
    assert "no-such-source: no-such-source" not in result.output


def test_starting_the_cli_loads_no_decoder_and_no_llm_client():
    """Every command imports the CLI, and every build or stage command its planner and runner; the
    imaging stack and the openai SDK load only when used."""
    modules = "unimed_data.cli, unimed_data.plan, unimed_data.runner"
    code = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("pydicom", "PIL", "tifffile", "imagehash", "openai", "httpx", "torch"):
        assert f"'{heavy}'" not in loaded, heavy
