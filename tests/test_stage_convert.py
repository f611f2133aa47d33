"""Convert stage: every record becomes a JPEG or an error row; reruns reuse finished images."""

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


def test_rerun_reuses_finished_images_and_new_options_reconvert(tmp_path: Path):
    ws, sources = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1).skipped
    # A lost table (as after a kill) is rebuilt from the finished images, without decoding again.
    ws.converted("mixed").unlink()
    image = ws.image_file("mixed", make_key("mixed", "CT_small.dcm"))
    before = image.stat().st_mtime_ns
    sources[0].unlink()  # the source is not needed any more: its JPEG is done
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert summary.outputs == 3 and image.stat().st_mtime_ns == before
    # Another size cap must not reuse images made for the old one.
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=32), workers=1)
    assert summary.outputs == 2  # CT_small.dcm's source was deleted above
    assert max(Image.open(ws.image_file("mixed", make_key("mixed", "wide.png"))).size) == 32
