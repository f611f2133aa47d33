"""`unimed-data build --demo`: a real corpus from pydicom's DICOM files, end to end, offline."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import pydicom
from rich.console import Console

from tests.conftest import run_cli
from unimed_data.demo import pydicom_test_files
from unimed_data.stats import load_stats, render_stats
from unimed_data.tables import iter_rows
from unimed_data.workspace import Workspace

BROKEN = {"MR_truncated.dcm", "badVR.dcm"}


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.tar"))}


def image_bearing_pydicom_files() -> list[Path]:
    found = []
    for path in pydicom_test_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if "PixelData" in pydicom.dcmread(path, force=True, defer_size=256):
                    found.append(path)
            except Exception:
                pass
    return found


def test_every_image_bearing_pydicom_file_is_a_sample_or_an_error(demo_out: Path):
    stats = json.loads((demo_out / "stats.json").read_text())
    totals = stats["totals"]
    assert totals["inputs"] == len(image_bearing_pydicom_files())
    assert totals["balanced"]
    parts = ("samples", "errors", "filtered", "duplicates", "contaminated")
    assert totals["inputs"] == sum(totals[part] for part in parts)
    # pydicom ships one image in many transfer syntaxes: dedupe keeps one sample of each.
    assert (totals["samples"], totals["duplicates"], totals["contaminated"]) == (49, 29, 0)
    assert set(stats["modalities"]) >= {"ct", "mri", "ultrasound", "xray", "other"}
    assert stats["caption_sources"] == {"template": totals["samples"]}


def test_broken_files_are_recorded_with_path_and_reason(demo_out: Path):
    errors = list(iter_rows(demo_out / "errors.parquet"))
    by_name = {Path(e["source_path"]).name.split("-", 1)[-1]: e for e in errors}
    assert set(by_name) >= BROKEN
    for error in errors:
        assert error["reason"] and error["source_path"] and error["stage"] == "convert"


def test_output_folder_holds_shards_and_their_metadata(demo_out: Path):
    for name in ("stats.json", "errors.parquet", "README.md", "train/sizes.json", "train/index.parquet"):
        assert (demo_out / name).is_file(), name
    sizes = json.loads((demo_out / "train" / "sizes.json").read_text())
    assert all(n == 8 for n in list(sizes.values())[:-1])
    card = (demo_out / "README.md").read_text()
    assert "pydicom-ct" in card and "MIT" in card


def test_validate_accepts_the_build_and_stats_prints_tables(demo_out: Path):
    result = run_cli("validate", demo_out)
    assert result.exit_code == 0, result.output
    result = run_cli("stats", demo_out)
    assert result.exit_code == 0 and "pydicom-mri" in result.output and "adds up" in result.output
    as_json = json.loads(run_cli("stats", demo_out, "--json").stdout)
    assert as_json["totals"]["balanced"]


def test_no_patient_identifier_from_a_dicom_header_reaches_any_output(demo_out: Path):
    identifiers = set()
    for path in image_bearing_pydicom_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        for tag in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "InstitutionName"):
            value = str(header.get(tag, "") or "").strip()
            if len(value) >= 5:
                identifiers.add(value.encode())
    assert identifiers, "pydicom's test files carry patient names; the check needs some"
    outputs = [p for p in demo_out.rglob("*") if p.is_file() and "demo-raw" not in p.parts]
    assert outputs
    for path in outputs:
        data = path.read_bytes()
        for identifier in identifiers:
            assert identifier not in data, f"{identifier!r} found in {path}"
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                for member in tar:
                    payload = tar.extractfile(member).read()
                    assert not any(i in payload for i in identifiers)


def test_images_below_the_minimum_side_are_counted_as_filtered_with_their_reason(demo_out: Path):
    stats = json.loads((demo_out / "stats.json").read_text())
    assert stats["totals"]["filtered"] == sum(d["filtered"] for d in stats["datasets"].values()) > 0
    reasons = [
        row["reason"]
        for path in demo_out.glob("work/datasets/*/filtered-convert.parquet")
        for row in iter_rows(path)
    ]
    assert len(reasons) == stats["totals"]["filtered"]
    assert all(r.endswith("is smaller than the minimum side 16 px") for r in reasons)
    assert "filtered" in (demo_out / "README.md").read_text()


def test_same_seed_gives_byte_identical_shards_and_another_seed_does_not(demo_out: Path, tmp_path: Path):
    again = tmp_path / "again"
    assert run_cli("build", "--demo", "--out", again, "--shard-size", "8", "--workers", "1").exit_code == 0
    assert shard_bytes(again) == shard_bytes(demo_out)
    # A rerun with nothing to do says so and rewrites nothing (no new modification times).
    published = {p: p.stat().st_mtime_ns for p in again.glob("**/*") if p.is_file() and "work" not in p.parts}
    rerun = run_cli("build", "--demo", "--out", again, "--shard-size", "8", "--workers", "1")
    assert rerun.exit_code == 0 and "nothing to do" in rerun.output
    assert {p: p.stat().st_mtime_ns for p in published} == published
    reseeded = tmp_path / "reseeded"
    assert run_cli("build", "--demo", "--out", reseeded, "--shard-size", "8", "--seed", "7").exit_code == 0
    assert shard_bytes(reseeded) != shard_bytes(demo_out)


def test_stages_run_alone_in_order_give_the_same_shards(demo_out: Path, tmp_path: Path):
    out = tmp_path / "staged"
    early = run_cli("convert", "--demo", "--out", out)
    assert early.exit_code == 2 and "run `ingest` first" in early.output
    for stage in ("ingest", "convert", "caption", "dedupe", "shard"):
        result = run_cli(stage, "--demo", "--out", out, *(["--shard-size", "8"] if stage == "shard" else []))
        assert result.exit_code == 0, result.output
    assert shard_bytes(out) == shard_bytes(demo_out)


def test_a_killed_build_resumes_to_the_same_bytes(tmp_path: Path):
    """SIGKILL a real build mid-way (several times), then finish it: nothing differs from a clean run."""
    command = [sys.executable, "-m", "unimed_data", "build", "--demo", "--shard-size", "2", "--workers", "1"]
    clean = tmp_path / "clean"
    subprocess.run([*command, "--out", str(clean)], check=True, capture_output=True)

    out = tmp_path / "killed"
    env = {**os.environ, "TQDM_DISABLE": "1"}

    def start():
        return subprocess.Popen(
            [*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )

    def kill_when(process, condition, limit=60.0):
        deadline = time.monotonic() + limit
        while process.poll() is None and not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        return process.wait()

    images = Workspace(out).images("pydicom-mri")
    # First during conversion (a dataset's chunk written), then during sharding (some shards written).
    assert kill_when(start(), lambda: any(images.glob("chunk-*.tar"))) == -signal.SIGKILL
    assert kill_when(start(), lambda: len(list((out / "train").glob("*.tar"))) >= 2) == -signal.SIGKILL
    assert not (out / "stats.json").exists(), "the build finished before it could be killed"
    finished = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert shard_bytes(out) == shard_bytes(clean)
    assert not list(out.rglob("*.tmp"))
    assert run_cli("validate", out).exit_code == 0


def test_a_copied_build_with_a_missing_shard_is_reported_by_validate(demo_out: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(demo_out, copy)
    (copy / "train" / "unimed-000000.tar").unlink()
    result = run_cli("validate", copy)
    assert result.exit_code == 1 and "unimed-000000.tar: listed in sizes.json but missing" in result.output


def test_stats_tables_on_a_narrow_terminal_keep_every_name_and_count(demo_out: Path):
    console = Console(width=40, force_terminal=True, record=True, file=io.StringIO())
    stats = load_stats(demo_out)
    render_stats(stats, console)
    text = console.export_text()
    for name, info in stats["datasets"].items():
        row = next(line for line in text.splitlines() if f" {name} " in line)
        assert f" {info['inputs']} " in row and f" {info['samples']} " in row
