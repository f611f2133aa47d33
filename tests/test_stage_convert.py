"""Convert stage: every record becomes a JPEG in a chunk file or an error row; reruns reuse finished
images."""

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pydicom.data
from PIL import Image

from unimed_data.convert_chunk import CRASHED
from unimed_data.image_chunks import read_images
from unimed_data.imaging import ConvertOptions
from unimed_data.schema import RECORD_SCHEMA, make_key
from unimed_data.stages.convert import chunk_size, convert_dataset
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


def images_of(ws: Workspace) -> dict[str, bytes]:
    """Each converted record's JPEG, read from its chunk, by source file name."""
    rows = list(iter_rows(ws.converted("mixed")))
    jpegs = read_images(rows, ws.out)
    return {Path(r["source_path"]).name: jpegs[r["key"]] for r in rows}


def chunk_files(ws: Workspace) -> dict[str, tuple[int, int]]:
    """Every chunk file, with its inode and modification time (a rewrite changes them)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ws.images("mixed").glob("chunk-*")}


def test_each_record_is_converted_or_recorded_as_an_error(tmp_path: Path):
    ws, _ = setup(tmp_path)
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=2)
    assert (summary.inputs, summary.outputs, summary.errors) == (5, 3, 2)
    rows = {Path(r["source_path"]).name: r for r in iter_rows(ws.converted("mixed"))}
    assert (rows["wide.png"]["width"], rows["wide.png"]["height"]) == (64, 21)
    for name, jpeg in images_of(ws).items():
        assert hashlib.sha256(jpeg).hexdigest() == rows[name]["sha256"]
        assert Image.open(io.BytesIO(jpeg)).size == (rows[name]["width"], rows[name]["height"])
    errors = {Path(e["source_path"]).name: e["reason"] for e in iter_rows(ws.errors("mixed", "convert"))}
    assert errors["missing.png"] == "file not found"
    assert errors["MR_truncated.dcm"].startswith("truncated pixel data")


def chunk_tables(ws: Workspace) -> dict[Path, list[dict]]:
    return {p: pq.read_table(p).to_pylist() for p in sorted(ws.images("mixed").glob("chunk-*.parquet"))}


def test_records_are_converted_a_slice_at_a_time_into_one_chunk_file_each(tmp_path: Path):
    ws, sources = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=2, chunk_rows=2)
    tables = chunk_tables(ws)
    assert len(tables) > 1
    keys = [row["key"] for rows in tables.values() for row in rows]
    assert sorted(keys) == sorted(record(s)["key"] for s in sources)
    for table, rows in tables.items():
        assert table.name == f"chunk-{rows[0]['key']}.parquet"  # named by its first record
        for tar in {row["image_path"] for row in rows} - {None}:
            with tarfile.open(table.parent / tar) as members:
                assert [m.name for m in members] == [
                    r["key"] + ".jpg" for r in rows if r["image_path"] == tar
                ]
    # How records are sliced changes no image.
    whole = Workspace(tmp_path / "whole")
    whole.dataset_dir("mixed").mkdir(parents=True)
    shutil.copy(ws.records("mixed"), whole.records("mixed"))
    convert_dataset(whole, "mixed", ConvertOptions(max_side=64), workers=1)
    assert images_of(whole) == images_of(ws)


def test_a_record_inserted_mid_dataset_changes_only_its_own_chunk(tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(40):
        Image.new("L", (40, 40), color=i * 6).save(raw / f"img{i:02d}.png")
    ws = Workspace(tmp_path / "out")
    sources = sorted(raw.iterdir())
    write_rows(ws.records("mixed"), RECORD_SCHEMA, [record(s) for s in sources])
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=4)
    before = chunk_files(ws)
    Image.new("L", (40, 40), color=255).save(raw / "img19b.png")
    write_rows(ws.records("mixed"), RECORD_SCHEMA, [record(s) for s in sorted(raw.iterdir())])
    assert convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=4).outputs == 41
    after = chunk_files(ws)
    changed = {name for name in before if after.get(name) != before[name]}
    assert 0 < len(changed) <= 4  # the table and tar of the chunk it joined (or of the two it split)
    assert len(before) >= 12


def test_rerun_reuses_finished_images_and_retries_only_what_failed(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    table_time = ws.converted("mixed").stat().st_mtime_ns
    chunks = chunk_files(ws)
    # Failed items are retried, finished ones reused; an unchanged result leaves every file untouched.
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert (summary.outputs, summary.errors) == (3, 2)
    assert ws.converted("mixed").stat().st_mtime_ns == table_time
    assert chunk_files(ws) == chunks
    # Finished images are not even read again: their sizes and digests come from the chunk's table.
    tar = next(ws.images("mixed").glob("*.tar"))
    with open(tar, "r+b") as handle:
        handle.seek(1024)
        handle.write(b"\0\0\0\0")
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert ws.converted("mixed").stat().st_mtime_ns == table_time
    # The missing image arrives: the next run converts it and copies the others' bytes as they are.
    before = images_of(ws)
    Image.new("L", (40, 40)).save(tmp_path / "raw" / "missing.png")
    assert convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1).outputs == 4
    after = images_of(ws)
    assert set(after) == {*before, "missing.png"} and all(after[n] == before[n] for n in before)
    assert not tar.exists() and len(list(ws.images("mixed").glob("*.tar"))) == 1  # the old tar is gone


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
    assert Image.open(io.BytesIO(images_of(ws)["wide.png"])).size == (21, 64)


def test_new_options_reconvert_everything(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=32), workers=1)
    assert summary.outputs == 3
    assert max(Image.open(io.BytesIO(images_of(ws)["wide.png"])).size) == 32


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
    assert "thin.png" not in images_of(ws)
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


def test_a_run_killed_before_its_table_reuses_finished_chunks_with_their_fingerprints(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=2)
    rows = {r["key"]: r for r in iter_rows(ws.converted("mixed"))}
    chunks = chunk_files(ws)
    ws.converted("mixed").unlink()  # as if killed after the chunks, before the table
    ws.stamp("mixed", "convert").unlink()
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=2)
    again = {r["key"]: r for r in iter_rows(ws.converted("mixed"))}
    assert again == rows and chunk_files(ws) == chunks


def test_a_run_killed_between_a_chunks_tar_and_its_table_leaves_nothing_behind(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=2)
    clean, tables = images_of(ws), chunk_tables(ws)
    with_images = [table for table, rows in tables.items() if any(r["image_path"] for r in rows)]
    orphan = with_images[0].with_name(f"{with_images[0].stem}.0123456789abcdef.tar")
    orphan.write_bytes(b"half a chunk")  # renamed in; its table never was
    with_images[-1].unlink()  # and a chunk whose table was never written
    ws.stamp("mixed", "convert").unlink()
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=2)
    assert not orphan.exists() and images_of(ws) == clean
    assert len(list(ws.images("mixed").glob("*.tar"))) == len(with_images)


def test_an_image_that_crashes_its_worker_costs_only_that_image(tmp_path: Path, monkeypatch):
    """A segfault in a native decoder kills the process converting a whole slice: the slice is
    converted again with each image in a process of its own, so the others are kept."""
    ws, _ = setup(tmp_path)
    import unimed_data.convert_chunk as unit

    real = unit.encode_source

    def crash_on_wide(source, options):
        if source.name == "wide.png":
            os._exit(1)  # what a segfault or an OOM kill looks like to the pool
        return real(source, options)

    monkeypatch.setattr(unit, "encode_source", crash_on_wide)
    summary = convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=2)
    assert (summary.outputs, summary.errors) == (2, 3)
    errors = {Path(e["source_path"]).name: e["reason"] for e in iter_rows(ws.errors("mixed", "convert"))}
    assert errors["wide.png"] == CRASHED
    assert set(images_of(ws)) == {"CT_small.dcm", "MR_small_RLE.dcm"}


def test_a_small_dataset_is_cut_into_many_chunks_so_every_worker_gets_some():
    assert chunk_size(600, 1024) == 16  # at least 16 records a chunk
    assert chunk_size(5000, 1024) == 32  # about 256 chunks or fewer, a power of two
    assert chunk_size(5100, 1024) == 32  # so a few more records move no chunk boundary
    assert chunk_size(5_300_000, 1024) == 1024  # a large one: chunk_rows
    assert chunk_size(5000, 8) == 8  # chunk_rows is the most


def test_a_copied_build_converts_in_its_own_folder_and_leaves_the_original_alone(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    original = chunk_files(ws)
    copy = Workspace(tmp_path / "copy")
    shutil.copytree(ws.out, copy.out)
    wide = tmp_path / "raw" / "wide.png"
    Image.new("RGB", (100, 300), "blue").save(wide)
    os.utime(wide, ns=(1, 10**18))
    convert_dataset(copy, "mixed", ConvertOptions(max_side=64), workers=1)
    assert Image.open(io.BytesIO(images_of(copy)["wide.png"])).size == (21, 64)
    assert chunk_files(ws) == original  # the copy's rewrite deleted nothing here
    assert all(not r["image_path"].startswith("/") for r in iter_rows(copy.converted("mixed")))


def test_images_of_a_tar_deleted_by_hand_are_converted_again(tmp_path: Path):
    ws, _ = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    before = images_of(ws)
    next(ws.images("mixed").glob("*.tar")).unlink()
    ws.stamp("mixed", "convert").unlink()
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1)
    assert images_of(ws) == before


def test_chunks_of_records_that_left_the_dataset_are_removed(tmp_path: Path):
    ws, sources = setup(tmp_path)
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=2)
    write_rows(ws.records("mixed"), RECORD_SCHEMA, [record(s) for s in sources[:2]])
    convert_dataset(ws, "mixed", ConvertOptions(max_side=64), workers=1, chunk_rows=2)
    tables = chunk_tables(ws)
    assert sorted(r["key"] for rows in tables.values() for r in rows) == sorted(
        record(s)["key"] for s in sources[:2]
    )
    named = {r["image_path"] for rows in tables.values() for r in rows} - {None}
    assert {p.name for p in ws.images("mixed").glob("*.tar")} == named
