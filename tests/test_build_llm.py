"""`unimed-data build/caption --captioner openai`: LLM captions end to end through the CLI."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.llm_server import FakeOpenAI, Fault, FaultPlan
from unimed_data.tables import iter_rows
from unimed_data.workspace import Workspace

KEY = "sk-build-test-key-0123456789"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", KEY)


def llm_args(server: FakeOpenAI, *extra) -> list:
    return [
        "--captioner",
        "openai",
        "--llm-base-url",
        server.base_url,
        "--llm-model",
        "med-llm",
        "--llm-api-key-env",
        "MY_LLM_KEY",
        "--llm-concurrency",
        "4",
        *extra,
    ]


def test_demo_build_with_an_llm_and_a_rerun_that_sends_nothing(tmp_path: Path):
    out = tmp_path / "out"
    with FakeOpenAI(faults=FaultPlan(every=[Fault.rate_limit(retry_after=0.01)]), api_key=KEY) as server:
        result = run_cli("build", "--demo", "--out", out, *llm_args(server))
        assert result.exit_code == 0, result.output
        stats = json.loads((out / "stats.json").read_text())
        units = server.completions_ok()
        assert stats["caption_sources"] == {"llm:med-llm": stats["totals"]["samples"]}
        assert stats["llm"]["calls"] == units and stats["llm"]["retries"] == 1
        assert stats["llm"]["prompt_tokens"] > 0
        sent = len(server.requests)
        # Units are label sets: far fewer calls than images.
        assert units < stats["totals"]["samples"] / 4

        again = run_cli("build", "--demo", "--out", out, *llm_args(server))
        assert again.exit_code == 0 and len(server.requests) == sent
        assert run_cli("validate", out).exit_code == 0
    for path in out.rglob("*"):
        if path.is_file() and "demo-raw" not in path.parts:
            assert KEY.encode() not in path.read_bytes(), path


def test_dry_run_prints_calls_and_prompts_without_network(tmp_path: Path):
    result = run_cli(
        "build",
        "--demo",
        "--out",
        tmp_path / "out",
        "--dry-run",
        "--captioner",
        "openai",
        "--llm-base-url",
        "http://127.0.0.1:9/v1",
        "--llm-model",
        "m",
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout[: result.stdout.index("\n}") + 2])
    assert plan["calls"] == plan["units"] > 0 and plan["cached"] == 0
    assert "--- user ---" in result.stdout and "COUNT:" in result.stdout
    assert not (tmp_path / "out" / "stats.json").exists()


def test_caption_stage_alone_with_limit_records_the_rest_as_errors(tmp_path: Path):
    out = tmp_path / "out"
    for stage in ("ingest", "convert"):
        assert run_cli(stage, "--demo", "--out", out).exit_code == 0
    with FakeOpenAI(api_key=KEY) as server:
        result = run_cli("caption", "--demo", "--out", out, *llm_args(server, "--limit", "2"))
        assert result.exit_code == 0, result.output
        assert server.completions_ok() == 2, [(r.status, r.prompt[:80]) for r in server.chat_requests()]
    ws = Workspace(out)
    reasons = {e["reason"] for d in ws.datasets.iterdir() for e in iter_rows(ws.errors(d.name, "caption"))}
    assert reasons == {"not captioned: pilot run limited to 2 units (--limit)"}


def test_missing_key_fails_clearly(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MY_LLM_KEY")
    with FakeOpenAI() as server:
        result = run_cli("build", "--demo", "--out", tmp_path / "out", *llm_args(server))
    assert result.exit_code == 2 and "MY_LLM_KEY" in result.output


def test_a_run_stopped_by_a_refused_key_captions_everything_once_the_key_is_fixed(
    tmp_path: Path, monkeypatch
):
    out = tmp_path / "out"
    with FakeOpenAI(api_key="the-right-key") as server:
        refused = run_cli("build", "--demo", "--out", out, *llm_args(server))
        assert refused.exit_code == 2 and "HTTP 401" in refused.output and KEY not in refused.output
        monkeypatch.setenv("MY_LLM_KEY", "the-right-key")
        fixed = run_cli("build", "--demo", "--out", out, *llm_args(server))
        assert fixed.exit_code == 0, fixed.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["errors"] == 6 and set(stats["caption_sources"]) == {"llm:med-llm"}


def test_the_pilot_limit_holds_over_datasets_and_resumed_runs(tmp_path: Path):
    out = tmp_path / "out"
    with FakeOpenAI(api_key=KEY) as server:
        assert run_cli("build", "--demo", "--out", out, *llm_args(server, "--limit", "3")).exit_code == 0
        assert server.completions_ok() == 3
        ws = Workspace(out)
        for stamp in ws.datasets.glob("*/caption.json"):
            stamp.unlink()  # as if killed before any dataset's caption stamp was written
        assert run_cli("build", "--demo", "--out", out, *llm_args(server, "--limit", "3")).exit_code == 0
        assert server.completions_ok() == 3
    stats = json.loads((out / "stats.json").read_text())
    assert stats["errors_by_stage"]["caption"] > 0 and stats["totals"]["balanced"]
