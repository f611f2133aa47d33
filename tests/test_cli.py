"""The command line: every command documents itself, and wrong source options fail with exit 2."""

import pytest

from tests.conftest import run_cli

COMMANDS = [
    "build",
    "ingest",
    "convert",
    "caption",
    "shard",
    "evalset",
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
