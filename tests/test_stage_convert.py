"""Convert stage: every record becomes a JPEG or an error row; reruns reuse finished images."""

import os
import shutil
from pathlib import Path

import pydicom.data
from PIL import Image

from unimed_data.imaging import ConvertOptions
from unimed_data.schema import RECORD_SCHEMA, make_key
from unimed_data.stages.convert import convert_dataset
from unimed_data.tables import iter_rows, write_rows
from unimed_data.workspace import Workspace

DICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def record(source: Path) -> dict:
    return {
        "key": make_key("mixed", source.name),
        "dataset": "mixed",
        "modality": "ct",
        "source_path": str(source),
        "image_path": None,
        "labels": ["x"],
        "uncertain_labels": [],
        "report": None,
        "captions": [],
        "caption_source": None,
        "patient_id": None,
        "split": "train",
        "license": "x",
        "width": None,
        "height": None,
        "sha256": None,
    }


def setup(tmp_path: Path) -> tuple[Workspace, list[Path]]:
    raw = tmp_path / "raw"
    raw.mkdir()
    sources = [
        shutil.copy(DICOM_FILES / n, raw / n)
        for n in ("CT_small.dcm", "MR_small_RLE.dcm", "MR_truncated.dcm")
    ]
    Image.new("RGB", (300, 100), "red").save(raw / "wide.png")
    sources = [Path(p) for p in sources] + [raw / "wide.png", raw / "missing.png"]
    ws = Workspace(tmp_path / "out")
    write_rows(ws.records("mixed"), RECORD_SCHEMA, [record(s) for s in sources])
    return ws, sources


def test_each_record_is_converted_or_recorded_as_an_error(tmp_path: Path):
    ws, _ = setup(tmp_path)
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=2)
    assert (summary.inputs, summary.outputs, summary.errors) == (5, 3, 2)
    rows = {Path(r["source_path"]).name: r for r in iter_rows(ws.converted("mixed"))}
    assert (rows["wide.png"]["width"], rows["wide.png"]["height"]) == (64, 21)
    assert all(Path(r["image_path"]).is_file() and len(r["sha256"]) == 64 for r in rows.values())
    errors = {Path(e["source_path"]).name: e["reason"] for e in iter_rows(ws.errors("mixed", "convert"))}
    assert errors["missing.png"] == "file not found"
    assert errors["MR_truncated.dcm"].startswith("truncated pixel data")


def test_rerun_reuses_finished_images_and_retries_only_what_failed(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    table_time = ws.converted("mixed").stat().st_mtime_ns
    image = ws.image_file("mixed", make_key("mixed", "CT_small.dcm"))
    image_time = image.stat().st_mtime_ns
    # Failed items are retried, finished ones reused; an unchanged result leaves the table untouched.
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert (summary.outputs, summary.errors) == (3, 2)
    assert ws.converted("mixed").stat().st_mtime_ns == table_time
    assert image.stat().st_mtime_ns == image_time
    # Finished images are not even read again: their sizes and digests come from the last table.
    with open(image, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\0\0\0\0")
    os.utime(image, ns=(image_time, image_time))
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert ws.converted("mixed").stat().st_mtime_ns == table_time
    # The missing image arrives: the next run picks it up.
    Image.new("L", (40, 40)).save(tmp_path / "raw" / "missing.png")
    assert convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1).outputs == 4


def test_without_errors_a_rerun_is_skipped(tmp_path: Path):
    ws, sources = setup(tmp_path)
    (tmp_path / "raw" / "MR_truncated.dcm").unlink()
    write_rows(ws.records("mixed"), RECORD_SCHEMA, [record(s) for s in sources if s.exists()])
    assert convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1).errors == 0
    assert convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1).skipped


def test_a_replaced_source_is_converted_again(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    wide = tmp_path / "raw" / "wide.png"
    Image.new("RGB", (100, 300), "blue").save(wide)
    os.utime(wide, ns=(1, 10**18))  # a different modification time, as a copy or download gives
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert Image.open(ws.image_file("mixed", make_key("mixed", "wide.png"))).size == (21, 64)


def test_new_options_reconvert_everything(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=32), workers=1)
    assert summary.outputs == 3
    assert max(Image.open(ws.image_file("mixed", make_key("mixed", "wide.png"))).size) == 32


def test_a_source_that_disappeared_is_an_error_not_a_stale_image(tmp_path: Path):
    ws, sources = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    sources[0].unlink()
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert (summary.outputs, summary.errors) == (2, 3)


def test_images_below_the_minimum_side_are_filtered_with_a_reason_not_failed(tmp_path: Path):
    ws, sources = setup(tmp_path)
    Image.new("L", (1, 1)).save(sources[-1])  # the missing file arrives as a 1×1 placeholder
    Image.new("L", (31, 400)).save(tmp_path / "raw" / "thin.png")
    write_rows(
        ws.records("mixed"), RECORD_SCHEMA, [record(s) for s in [*sources, tmp_path / "raw" / "thin.png"]]
    )
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64, min_side=32), workers=1)
    assert (summary.inputs, summary.outputs, summary.errors, summary.filtered) == (6, 3, 1, 2)
    dropped = {Path(r["source_path"]).name: r["reason"] for r in iter_rows(ws.filtered("mixed", "convert"))}
    assert dropped == {
        "missing.png": "image 1×1 px is smaller than the minimum side 32 px",
        "thin.png": "image 31×400 px is smaller than the minimum side 32 px",
    }
    assert not ws.image_file("mixed", make_key("mixed", "thin.png")).exists()
    # A lower minimum keeps them; raising it again filters them as a fresh run would.
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64, min_side=1), workers=1)
    assert (summary.outputs, summary.filtered) == (5, 0)
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64, min_side=32), workers=1)
    assert (summary.outputs, summary.filtered) == (3, 2)


def test_a_zero_byte_file_is_an_empty_file_error(tmp_path: Path):
    ws, sources = setup(tmp_path)
    sources[-1].write_bytes(b"")
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    errors = {Path(e["source_path"]).name: e["reason"] for e in iter_rows(ws.errors("mixed", "convert"))}
    assert errors["missing.png"] == "empty file"


def test_a_run_killed_before_its_table_reuses_finished_images_with_their_fingerprints(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    rows = {r["key"]: r for r in iter_rows(ws.converted("mixed"))}
    images = {key: Path(row["image_path"]).stat().st_ino for key, row in rows.items()}
    ws.converted("mixed").unlink()  # as if killed after the images, before the table
    ws.stamp("mixed", "convert").unlink()
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    again = {r["key"]: r for r in iter_rows(ws.converted("mixed"))}
    assert {key: Path(row["image_path"]).stat().st_ino for key, row in again.items()} == images
    fingerprint = ("sha256", "pixels_sha256", "phash", "thumb", "width", "height")
    assert all(again[k][f] == rows[k][f] for k in rows for f in fingerprint)
