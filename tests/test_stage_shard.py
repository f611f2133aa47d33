"""Shard stage: seeded shuffle across datasets, fixed-size tars, resumable to identical bytes."""

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.test_unimed_txt import trainer_candidates
from unimed_data.image_chunks import results_file, write_chunk
from unimed_data.schema import RECORD_SCHEMA, SAMPLE_JSON_FIELDS, make_key
from unimed_data.stages.order import STAGE_NAMES
from unimed_data.stages.shard import shard_datasets
from unimed_data.stages.shard_options import ShardOptions
from unimed_data.stats import compute_stats, write_stats
from unimed_data.tables import write_rows
from unimed_data.validate import validate_output
from unimed_data.workspace import Workspace


def make_captioned(
    ws: Workspace, dataset: str, n: int, splits=("train", "train", "train", "val"), reports: bool = False
) -> list[str]:
    """A captioned table of `n` records with small real JPEGs, as the caption stage leaves it, and the
    same rows as the deduped table the shard stage reads; with `reports`, every other record has a
    report."""
    rows, images = [], {}
    for i in range(n):
        key = make_key(dataset, f"img{i}.png")
        jpeg = io.BytesIO()
        Image.new("L", (8 + i % 5, 8), color=i % 256).save(jpeg, format="JPEG")
        images[key] = jpeg.getvalue()
        rows.append(
            {
                "key": key,
                "dataset": dataset,
                "modality": "xray",
                "source_path": f"/raw/{dataset}/img{i}.png",
                "labels": [f"class{i % 3}"],
                "uncertain_labels": [],
                "report": f"Report of image {i}." if reports and i % 2 else None,
                "captions": [f"caption {i} a", f"caption {i} b."],
                "caption_source": "template",
                "patient_id": None,
                "split": splits[i % len(splits)],
                "license": "CC-BY-4.0",
                "width": 8 + i % 5,
                "height": 8,
                "sha256": hashlib.sha256(images[key]).hexdigest(),
            }
        )
    ws.images(dataset).mkdir(parents=True, exist_ok=True)
    placed = write_chunk(
        results_file(ws.images(dataset), rows[0]["key"]), [chunk_row(r) for r in rows], images
    )
    folder = ws.images(dataset).relative_to(ws.out)
    rows = [
        {**row, **{f: chunk[f] for f in PLACE}, "image_path": str(folder / chunk["image_path"])}
        for row, chunk in zip(rows, placed, strict=True)
    ]
    write_rows(ws.captioned(dataset), RECORD_SCHEMA, rows)
    write_rows(ws.deduped(dataset), RECORD_SCHEMA, rows)
    return [r["key"] for r in rows]


PLACE = ("image_path", "image_offset", "image_size")


def chunk_row(row: dict) -> dict:
    """A converted image's row of a chunk's results table."""
    return {"key": row["key"], "source_path": row["source_path"], "sha256": row["sha256"]}


def tar_keys(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return list(dict.fromkeys(m.name.split(".")[0] for m in tar))


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.tar"))}


@pytest.fixture
def two_datasets(tmp_path: Path) -> tuple[Workspace, list[str]]:
    ws = Workspace(tmp_path / "out")
    keys = make_captioned(ws, "alpha", 37) + make_captioned(ws, "beta", 23)
    return ws, keys


def test_every_record_lands_once_in_fixed_size_shards_of_its_split(two_datasets):
    ws, keys = two_datasets
    counts = shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=7), workers=1)
    assert counts == {"train": 46, "val": 14, "test": 0}
    sizes = json.loads((ws.split_dir("train") / "sizes.json").read_text())
    assert list(sizes.values()) == [7, 7, 7, 7, 7, 7, 4]
    assert sorted(sizes) == [f"unimed-{i:06d}.tar" for i in range(7)]
    found = [
        k
        for split in ("train", "val")
        for p in sorted(ws.split_dir(split).glob("*.tar"))
        for k in tar_keys(p)
    ]
    assert sorted(found) == sorted(keys)
    assert not ws.split_dir("test").exists()


def test_samples_carry_jpg_primary_txt_and_json_metadata(two_datasets):
    ws, _ = two_datasets
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=100), workers=1)
    with tarfile.open(ws.split_dir("val") / "unimed-000000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
        assert {m.mtime for m in tar.getmembers()} == {0}
    key = next(iter(members)).split(".")[0]
    meta = json.loads(members[f"{key}.json"])
    assert members[f"{key}.txt"].decode() == meta["captions"][0]
    assert Image.open(io.BytesIO(members[f"{key}.jpg"])).size == (meta["width"], meta["height"])
    assert meta["split"] == "val" and meta["license"] == "CC-BY-4.0" and meta["caption_source"] == "template"
    assert tuple(sorted(meta)) == tuple(sorted(SAMPLE_JSON_FIELDS))


def test_shuffle_mixes_datasets_and_depends_only_on_seed(tmp_path: Path, two_datasets):
    ws, _ = two_datasets
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=10, seed=3), workers=1)
    first = tar_keys(ws.split_dir("train") / "unimed-000000.tar")
    assert {k.split("_")[0] for k in first} == {"alpha", "beta"}

    # Same seed, datasets given in the other order and two workers: identical bytes.
    other = Workspace(tmp_path / "other")
    make_captioned(other, "beta", 23)
    make_captioned(other, "alpha", 37)
    shard_datasets(other, ["beta", "alpha"], ShardOptions(shard_size=10, seed=3), workers=2)
    assert shard_bytes(ws.out) == shard_bytes(other.out)

    reseeded = Workspace(tmp_path / "reseeded")
    make_captioned(reseeded, "alpha", 37)
    make_captioned(reseeded, "beta", 23)
    shard_datasets(reseeded, ["alpha", "beta"], ShardOptions(shard_size=10, seed=4), workers=1)
    assert tar_keys(reseeded.split_dir("train") / "unimed-000000.tar") != first


def test_resume_keeps_finished_shards_and_ends_byte_identical(two_datasets):
    ws, _ = two_datasets
    options = ShardOptions(shard_size=5)
    shard_datasets(ws, ["alpha", "beta"], options, workers=1)
    complete = shard_bytes(ws.out)
    train = ws.split_dir("train")
    kept = train / "unimed-000001.tar"
    kept_mtime = kept.stat().st_mtime_ns
    # What a kill leaves: some shards missing, a half-written temp file, no sizes.json or stamp.
    (train / "unimed-000004.tar").unlink()
    (train / "unimed-000007.tar").unlink()
    (train / ".unimed-000004.tar.999.tmp").write_bytes(b"partial")
    (train / "sizes.json").unlink()
    (ws.shuffle / "shard.json").unlink()

    shard_datasets(ws, ["alpha", "beta"], options, workers=2)
    assert shard_bytes(ws.out) == complete
    assert kept.stat().st_mtime_ns == kept_mtime


def test_rerun_with_nothing_changed_does_no_work(two_datasets):
    ws, _ = two_datasets
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=5), workers=1)
    sizes = ws.split_dir("train") / "sizes.json"
    before = sizes.stat().st_mtime_ns
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=5), workers=1)
    assert sizes.stat().st_mtime_ns == before


def test_a_new_shard_size_replaces_the_old_shards(two_datasets):
    ws, _ = two_datasets
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=5), workers=1)
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=20), workers=1)
    assert sorted(p.name for p in ws.split_dir("train").glob("*.tar")) == [
        "unimed-000000.tar",
        "unimed-000001.tar",
        "unimed-000002.tar",
    ]


def test_index_points_at_each_sample_in_its_shard(two_datasets):
    ws, _ = two_datasets
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=6), workers=1)
    index = pq.read_table(ws.split_dir("train") / "index.parquet").to_pylist()
    assert len(index) == 46
    for row in index[:12]:
        with open(ws.split_dir("train") / row["shard"], "rb") as handle:
            handle.seek(row["offset"])
            header = tarfile.TarInfo.frombuf(handle.read(512), "utf-8", "surrogateescape")
        assert header.name.split(".")[0] == row["key"]


def test_bad_prefix_and_unknown_split_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="prefix"):
        ShardOptions(prefix="my.shards")
    ws = Workspace(tmp_path)
    make_captioned(ws, "gamma", 3, splits=("holdout",))
    with pytest.raises(ValueError, match="unknown split"):
        shard_datasets(ws, ["gamma"], ShardOptions(), workers=1)


def samples_of(out: Path) -> list[tuple[str, dict]]:
    """(txt, parsed json) of every sample in every shard under `out`."""
    found = []
    for shard in sorted(out.glob("*/*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        for name in members:
            if name.endswith(".txt"):
                key = name.removesuffix(".txt")
                found.append((members[name].decode(), json.loads(members[f"{key}.json"])))
    return found


def test_unimed_txt_gives_unimeds_trainer_our_captions_and_reports_and_validates(tmp_path: Path):
    ws = Workspace(tmp_path / "out")
    slugs = ["unimed-chexpert", "unimed-mimic-cxr"]
    make_captioned(ws, slugs[0], 9)
    make_captioned(ws, slugs[1], 7, reports=True)
    tags = (("unimed-chexpert", "_chexpert_"), ("unimed-mimic-cxr", "_mimiccxr_"))
    shard_datasets(ws, slugs, ShardOptions(shard_size=4, txt_format="unimed", txt_tags=tags), workers=2)
    samples = samples_of(ws.out)
    assert len(samples) == 16
    for txt, meta in samples:
        if meta["dataset"] == "unimed-chexpert":
            assert trainer_candidates(txt) == meta["captions"]
        elif meta["report"]:
            assert trainer_candidates(txt) == [meta["report"]]
        else:
            assert trainer_candidates(txt) == meta["captions"][-1:]

    for slug in slugs:  # what ingest would have left, for the counts in stats.json
        shutil.copy(ws.captioned(slug), ws.records(slug))
    config = {"seed": 0, "txt_format": "unimed", "txt_tags": dict(tags)}
    stats = compute_stats(ws, slugs, stages=STAGE_NAMES, filtered={}, config=config)
    write_stats(ws, stats)
    assert validate_output(ws.out) == []

    write_stats(ws, {**stats, "config": {"seed": 0, "txt_format": "plain"}})
    problems = validate_output(ws.out)
    assert len(problems) == 16 and all("txt is not the first of json.captions" in p for p in problems)


def test_in_unimed_txt_datasets_without_a_tag_keep_their_primary_caption(two_datasets):
    ws, _ = two_datasets
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=100), workers=1)
    plain = shard_bytes(ws.out)
    shard_datasets(ws, ["alpha", "beta"], ShardOptions(shard_size=100, txt_format="unimed"), workers=1)
    # alpha and beta are no UniMed parts: the shards are rewritten, to the same bytes.
    assert shard_bytes(ws.out) == plain
    assert all(txt == meta["captions"][0] for txt, meta in samples_of(ws.out))


def test_an_unknown_txt_format_is_refused():
    with pytest.raises(ValueError, match="txt_format 'tagged' must be one of plain, unimed"):
        ShardOptions(txt_format="tagged")
