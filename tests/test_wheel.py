"""The wheel is the product users install: built here, installed in a fresh virtual environment away
from the checkout, it carries the manifests, prompts and recipes (top-level folders in the checkout)
and runs `unimed-data sources` and the demo build on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    env = {**(env if env is not None else os.environ), "UV_OFFLINE": "1"}  # the warm cache, no network
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("needs uv, which builds the wheel as .ci/run does")
    dist = tmp_path_factory.mktemp("dist")
    _run(uv, "build", "--wheel", "--out-dir", dist, REPO, cwd=REPO)
    (built,) = dist.glob("unimed_data-*.whl")
    return built


def test_the_wheel_carries_every_bundled_folder(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("manifests", "prompts", "recipes"):
        here = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()}
        assert here and {f"unimed_data/{name}" for name in here} <= names, folder
    assert "unimed_train/main.py" in names


def test_an_installed_wheel_lists_sources_and_builds_the_demo_without_a_checkout(wheel, tmp_path):
    uv = shutil.which("uv")
    venv, away = tmp_path / "venv", tmp_path / "elsewhere"
    away.mkdir()
    # The locked versions, so the fresh environment is what a user of this release gets (and comes
    # from uv's cache rather than a fresh resolution).
    pins = tmp_path / "pins.txt"
    _run(uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "-o", pins, cwd=REPO)
    _run(uv, "venv", "--quiet", venv, cwd=away)
    _run(uv, "pip", "install", "--quiet", "--python", venv / "bin" / "python", "-c", pins, wheel, cwd=away)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PYTHONPATH"))}
    script = venv / "bin" / "unimed-data"
    listed = {source["name"] for source in json.loads(_run(script, "sources", "--json", cwd=away, env=env))}
    assert listed == {path.stem for path in (REPO / "manifests").glob("*.yaml")}
    built = _run(script, "build", "--demo", "--out", away / "out", cwd=away, env=env)
    assert "(adds up)" in built
    assert sorted((away / "out" / "train").glob("*.tar"))
