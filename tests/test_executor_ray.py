"""`--executor ray`: a build on a real two-node Ray cluster (loopback) gives the local build's bytes,
survives a worker and the driver killed mid-build, and reports per-node figures in stats.json."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import free_port, run_cli
from tests.ray_cluster import RayCluster
from unimed_data.demo import pydicom_test_files
from unimed_data.executor_figures import Figures, save
from unimed_data.executor_ray import RayExecutor

ray = pytest.importorskip("ray")

DICOMS = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "examples_palette.dcm")
CHOSEN = "MR_small.dcm"  # the conversion whose worker is killed
SALT = "ray-test-salt"
CHUNK_ROWS = 4  # records per convert task on average: about ten tasks, so both nodes convert


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = RayCluster(tmp_path_factory.mktemp("ray"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder-per-class tree of real formats: pydicom's DICOM files, PNGs, JPEGs, one broken file."""
    root = tmp_path_factory.mktemp("corpus") / "scans"
    rng = np.random.default_rng(0)
    by_name = {p.name: p for p in pydicom_test_files()}
    (root / "dicom").mkdir(parents=True)
    for name in DICOMS:
        shutil.copy(by_name[name], root / "dicom" / name)
    for kind, count in (("png", 20), ("jpeg", 14)):
        (root / kind).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 256, (40 + i, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / kind / f"{kind}{i}.{'png' if kind == 'png' else 'jpg'}")
    (root / "png" / "broken.png").write_bytes((root / "png" / "png0.png").read_bytes()[:100])
    return root


def arguments(corpus: Path, out: Path) -> list[str]:
    return [
        "build",
        "--from-folder",
        str(corpus),
        "--modality",
        "xray",
        "--out",
        str(out),
        "--shard-size",
        "3",
        "--chunk-rows",
        str(CHUNK_ROWS),
    ]


@pytest.fixture(scope="module")
def local_out(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("UNIMED_PATIENT_SALT", SALT)
        result = run_cli(*arguments(corpus, out), "--workers", "2")
    assert result.exit_code == 0, result.output
    return out


def ray_build(corpus: Path, out: Path, cluster: RayCluster) -> subprocess.Popen:
    """`unimed-data build --executor ray` on the cluster, as its own process (a driver to kill)."""
    command = [sys.executable, "-m", "unimed_data", *arguments(corpus, out)]
    command += ["--executor", "ray", "--ray-address", cluster.address]
    env = {**cluster.env, "UNIMED_PATIENT_SALT": SALT}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(build: subprocess.Popen) -> None:
    output, _ = build.communicate(timeout=120)
    assert build.returncode == 0, output


def published(out: Path) -> dict[str, bytes]:
    """Every shard, sizes.json and index.parquet, by path."""
    files = [*out.glob("*/*.tar"), *out.glob("*/sizes.json"), *out.glob("*/index.parquet")]
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(files)}


def chunks(out: Path) -> int:
    """Convert's tasks: one per chunk of records."""
    return len(list(out.glob("work/datasets/*/images/chunk-*.parquet")))


def executor_figures(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())["executor"]


def test_a_ray_build_gives_the_local_builds_bytes_and_per_node_figures(corpus, local_out, cluster, tmp_path):
    out = tmp_path / "out"
    finish(ray_build(corpus, out, cluster))
    assert published(out) == published(local_out)
    assert len(list(out.glob("train/*.tar"))) > 5
    figures = executor_figures(out)
    assert figures["kind"] == "ray"
    convert = figures["stages"]["convert"]
    assert len(convert["nodes"]) == 2  # both nodes converted images
    assert sum(n["tasks"] for n in convert["nodes"].values()) == chunks(out)
    assert convert["retries"] == 0 and all(n["seconds"] > 0 for n in convert["nodes"].values())
    shard = figures["stages"]["shard"]
    assert sum(n["tasks"] for n in shard["nodes"].values()) == len(list(out.glob("*/*.tar")))
    # A local build writes no figures: its stats.json is the same on every machine and run.
    assert "executor" not in json.loads((local_out / "stats.json").read_text())


def test_a_worker_killed_mid_conversion_is_retried_and_counted(corpus, local_out, cluster, tmp_path):
    out = tmp_path / "out"
    with cluster.hooked(CHOSEN):
        build = ray_build(corpus, out, cluster)
        worker, worker_node = cluster.wait_for_task()  # the worker converting CHOSEN, waiting
        cluster.release()  # the retry converts it
        os.kill(worker, signal.SIGKILL)
        finish(build)
    assert published(out) == published(local_out)
    convert = executor_figures(out)["stages"]["convert"]
    assert convert["retries"] == 1 and convert["crashed"] == 0
    died = {node: figures["died"] for node, figures in convert["nodes"].items() if figures["died"]}
    assert died == {worker_node: 1}  # counted against the node the worker ran on


def test_a_killed_driver_reruns_to_the_same_bytes_without_redoing_finished_work(
    corpus, local_out, cluster, tmp_path
):
    out = tmp_path / "out"
    with cluster.hooked(f"train{os.sep}unimed-000004.tar"):
        build = ray_build(corpus, out, cluster)
        cluster.wait_for_task()  # shard 4 is being written: convert is done, earlier shards too
        build.kill()
        build.wait()
        cluster.release()
    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("train/*.tar")}
    converted = {p: p.stat().st_mtime_ns for p in out.glob("work/datasets/*/convert.json")}
    assert finished and converted
    time.sleep(0.01)
    finish(ray_build(corpus, out, cluster))
    assert published(out) == published(local_out)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished} == finished
    assert {p: p.stat().st_mtime_ns for p in converted} == converted  # convert was skipped
    # The rerun did no convert task: the figures are those of the killed run, which converted.
    convert = executor_figures(out)["stages"]["convert"]
    assert sum(n["tasks"] for n in convert["nodes"].values()) == chunks(out)


def test_object_storage_as_out_is_refused_with_what_to_do_instead(corpus):
    result = run_cli(*arguments(corpus, Path("s3://bucket/corpus")), "--executor", "ray")
    assert result.exit_code == 2
    assert "error:" in result.output and "--out s3://bucket/corpus" in result.output
    assert "unimed-data publish OUT s3://bucket/corpus" in result.output


def test_an_unknown_executor_is_refused_by_the_command_line(corpus, tmp_path):
    result = run_cli(*arguments(corpus, tmp_path / "out"), "--executor", "dask")
    message = " ".join(result.output.replace("│", " ").split())  # unwrapped from Typer's box
    assert result.exit_code == 2 and "'dask' is not one of 'local', 'ray'" in message
    assert not (tmp_path / "out").exists()


def test_executor_ray_without_ray_installed_names_the_extra(corpus, tmp_path):
    hidden = "import sys; sys.modules['ray'] = None; from unimed_data.cli import main; main()"
    command = [sys.executable, "-c", hidden, *arguments(corpus, tmp_path / "out"), "--executor", "ray"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "uv sync --extra cluster" in lines[0] and "pip install 'unimed-data[cluster]'" in lines[0]


def test_a_ray_address_without_the_ray_executor_is_refused(corpus, tmp_path):
    result = run_cli(*arguments(corpus, tmp_path / "out"), "--ray-address", "10.0.0.1:6379")
    assert result.exit_code == 2
    assert "--ray-address 10.0.0.1:6379 applies to --executor ray only" in result.output


def test_an_address_where_no_cluster_answers_fails_at_once(corpus, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    result = run_cli(*arguments(corpus, tmp_path / "out"), "--executor", "ray", "--ray-address", address)
    assert result.exit_code == 2
    assert f"error: --ray-address {address}: no Ray cluster answers there" in result.output
    assert "ray start --head" in result.output


def test_every_build_and_stage_command_takes_the_executor_options():
    for command in ("build", "ingest", "convert", "caption", "dedupe", "shard"):
        shown = run_cli(command, "--help").output
        assert "--executor" in shown and "--ray-address" in shown, command


def test_a_map_with_no_task_reaches_no_cluster_and_keeps_no_figures(tmp_path):
    save(tmp_path, "protect", Figures("ray"))  # an earlier run's, now stale
    assert list(RayExecutor(None, tmp_path).map(len, [], desc="protect")) == []
    assert not ray.is_initialized() and not list(tmp_path.iterdir())
