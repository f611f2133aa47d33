"""Shared fixtures: the real data beside the checkout, and one demo build reused read-only."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from unimed_data.cli import app

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_cli(*args: str):
    """Invoke the CLI in-process; returns the click Result."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory) -> Path:
    """`unimed-data build --demo` output; tests that change it must copy it first. A fixed patient
    salt fixes the patient-level splits, so tests that train and evaluate see the same held-out set."""
    out = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("UNIMED_PATIENT_SALT", "demo-fixture-salt")
        result = run_cli("build", "--demo", "--out", out, "--shard-size", "8", "--workers", "2")
    assert result.exit_code == 0, result.output
    return out
