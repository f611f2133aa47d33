"""The Dockerfile: hadolint-clean, its install steps replayed in a fresh virtual environment (so a broken
step fails here even where no Docker daemon exists), a non-root user, no baked-in secrets, and
`unimed-data` as the entrypoint.

How the replay differs from an image build: tests/docker_replay.py.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker_replay import (
    DOCKERFILE,
    ROOT,
    Recorder,
    Replay,
    StepFailed,
    final_stage,
    ignore_rules,
    ignored,
    parse,
    replay,
)

SECRET_NAME = re.compile(r"^AWS_|^HF_TOKEN$|KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


@pytest.fixture
def fence():
    """The proxy every replayed step is given: it refuses all and records what it was asked."""
    with Recorder(403) as proxy:
        yield proxy


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_build_installs_a_working_cli_and_trainer_and_no_copy_of_the_sources(
    tmp_path: Path, fence: Recorder
):
    state = replay(tmp_path / "image", fence)
    venv = Path(state.env["VIRTUAL_ENV"])
    data = state.image_path(state.workdir)  # the final WORKDIR, the image's working folder
    env = {"PATH": f"{venv / 'bin'}:{state.host['PATH']}", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=data, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    assert "sources" in run("unimed-data", "--help")
    names = {source["name"] for source in json.loads(run("unimed-data", "sources", "--json"))}
    assert names == {path.stem for path in (ROOT / "manifests").glob("*.yaml")}
    where = run("python", "-c", "import unimed_data, unimed_train.main; print(unimed_data.__file__)")
    assert Path(where.strip()).is_relative_to(venv), "imported from outside the image's environment"
    assert (venv / "bin" / "torchrun").is_file()
    run("unimed-data", "build", "--demo", "--out", str(data / "out"))
    assert json.loads((data / "out" / "stats.json").read_text())["totals"]["samples"] > 0
    assert set(state.copied) == {"pyproject.toml", "uv.lock"}, "the final image copies sources"
    assert state.copied["uv.lock"].read_bytes() == (ROOT / "uv.lock").read_bytes()
    outside = [
        path for path in state.root.rglob("*") if path.suffix in {".py", ".whl"} and venv not in path.parents
    ]
    assert outside == [], "sources or the wheel left in the final image"


def test_a_failing_install_step_fails_the_build(tmp_path: Path, fence: Recorder):
    with pytest.raises(StepFailed, match="no-such-extra"):
        replay(tmp_path / "extra", fence, {"EXTRAS": "train no-such-extra"})
    with pytest.raises(StepFailed, match="TORCH=rocm: expected cuda or cpu"):
        replay(tmp_path / "torch", fence, {"TORCH": "rocm"})
    with pytest.raises(StepFailed, match=re.escape("hatchling==0.0.1")):
        replay(tmp_path / "backend", fence, {"BUILD_BACKEND": "hatchling==0.0.1"})


def test_the_wheel_is_built_by_a_pinned_backend():
    declared = re.search(r"requires = \[([^\]]*)\]", (ROOT / "pyproject.toml").read_text())[1]
    backend = {re.split(r"[<>=!~\[; ]", name.strip(' "'))[0] for name in declared.split(",") if name.strip()}
    pins = [
        shlex.split(ins.args.partition("=")[2])[0].split()
        for ins in parse(DOCKERFILE.read_text())
        if ins.keyword == "ARG" and ins.args.startswith("BUILD_BACKEND=")
    ]
    assert len(pins) == 1 and all(re.fullmatch(r"[\w.-]+==[\w.]+", pin) for pin in pins[0]), pins
    assert backend <= {pin.partition("==")[0] for pin in pins[0]}, (backend, pins)


def test_cpu_build_installs_the_lock_without_cuda_then_asks_the_cpu_index_for_locked_torch(
    tmp_path: Path, fence: Recorder
):
    """The locked wheels come from the warm cache, and the CPU index on loopback (which has no torch, so
    the step fails) is asked for torch at the version in uv.lock; the fence sees nothing."""
    with Recorder(404) as index, pytest.raises(StepFailed) as failed:
        replay(
            tmp_path / "image",
            fence,
            {"TORCH": "cpu", "TORCH_CPU_INDEX": f"{index.url}/simple"},
            offline=False,
        )
    locked = re.search(r'name = "torch"\nversion = "([^"]+)"', (ROOT / "uv.lock").read_text())[1]
    assert f"torch=={locked}" in str(failed.value)
    assert "GET /simple/torch/" in index.asked
    venv = Path(failed.value.state.env["VIRTUAL_ENV"])
    installed = {p.name.split("-")[0].lower() for p in venv.glob("lib/python*/site-packages/*.dist-info")}
    assert {"sympy", "networkx", "open_clip_torch", "s3fs", "huggingface_hub"} <= installed
    assert not {name for name in installed if re.match(r"torch$|torchvision$|triton$|nvidia_|cuda_", name)}


def test_a_cold_uv_cache_skips_the_replay_naming_what_uv_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Offline, uv says what its cache lacks; online behind the fence, the proxy says where uv went."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-cache"))
    with Recorder(403) as proxy, pytest.raises(pytest.skip.Exception) as offline:
        replay(tmp_path / "image", proxy)
    assert "uv's cache lacks" in str(offline.value) and "hatchling was not found in the cache" in str(
        offline.value
    )
    (tmp_path / "online").mkdir()
    with (
        Recorder(403) as proxy,
        pytest.raises(pytest.skip.Exception, match=re.escape("CONNECT pypi.org:443")),
    ):
        Replay(tmp_path / "online", proxy, offline=False).run(
            "UV_HTTP_RETRIES=0 uv pip install --target out six"
        )


def test_dockerignore_keeps_the_context_to_what_the_image_copies():
    rules = ignore_rules()
    for kept in ("pyproject.toml", "uv.lock", "unimed_data/cli.py", "train/unimed_train/main.py"):
        assert not ignored(kept, rules), kept
    for dropped in (".venv/bin/python", "demo/out/stats.json", "tests/test_cli.py", ".git/HEAD"):
        assert ignored(dropped, rules), dropped
    assert ignored("unimed_data/__pycache__/cli.cpython-311.pyc", rules)


def test_runs_unprivileged_without_baked_secrets_and_starts_the_cli():
    instructions = parse(DOCKERFILE.read_text())
    users = [ins.args for ins in final_stage(instructions) if ins.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, users
    declared = [
        item.partition("=")[0]
        for ins in instructions
        if ins.keyword in {"ENV", "ARG"}
        for item in shlex.split(ins.args)
    ]
    assert not [name for name in declared if SECRET_NAME.search(name)], declared
    entry = [json.loads(ins.args) for ins in instructions if ins.keyword == "ENTRYPOINT"]
    assert entry == [["unimed-data"]]


def test_every_uv_step_reads_the_lock_without_rewriting_it():
    """Offline, an unfrozen `uv sync` can leave uv.lock unchanged by luck; the flag is what guarantees it."""
    runs = [ins.args for ins in parse(DOCKERFILE.read_text()) if ins.keyword == "RUN"]
    lock_steps = [m[0] for run in runs for m in re.finditer(r"uv (?:sync|export|lock)\b[^;&|]*", run)]
    assert lock_steps, "no uv step reads uv.lock"
    assert all(" --frozen" in step for step in lock_steps), lock_steps
