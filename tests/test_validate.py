"""`unimed-data validate` names every inconsistency between shards, sizes.json, index and stats."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from unimed_data.validate import validate_output


@pytest.fixture
def copy(demo_out: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(demo_out, target, ignore=shutil.ignore_patterns("demo-raw", "images"))
    return target


def rewrite_shard(path: Path, change) -> None:
    """Rewrite a tar, letting `change(name, data)` return new bytes or None to drop the member."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            data = change(member.name, data)
            if data is not None:
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))


def first_shard(out: Path) -> Path:
    return out / "train" / "unimed-000000.tar"


def test_a_good_build_has_no_problems(demo_out: Path):
    assert validate_output(demo_out, workers=2) == []


def test_truncated_shard(copy: Path):
    shard = first_shard(copy)
    shard.write_bytes(shard.read_bytes()[:3000])
    problems = validate_output(copy)
    assert any("train/unimed-000000.tar" in p and ("unreadable" in p or "samples" in p) for p in problems), (
        problems
    )


def test_dropped_sample_breaks_the_counts(copy: Path):
    shard = first_shard(copy)
    with tarfile.open(shard) as tar:
        victim = tar.getnames()[0].split(".")[0]
    rewrite_shard(shard, lambda name, data: None if name.startswith(victim) else data)
    problems = validate_output(copy)
    assert "train/unimed-000000.tar: 7 samples, sizes.json says 8" in problems
    assert any("stats.json says" in p for p in problems)


def test_undecodable_image_and_wrong_caption(copy: Path):
    def damage(name, data):
        if name.endswith(".jpg"):
            return b"\\xff\\xd8 not a jpeg"
        if name.endswith(".txt"):
            return b"some other caption"
        return data

    rewrite_shard(first_shard(copy), damage)
    problems = validate_output(copy)
    assert any("jpg does not decode" in p for p in problems)
    assert any("txt is not the first of json.captions" in p for p in problems)


def test_json_in_the_wrong_split_and_missing_fields(copy: Path):
    def damage(name, data):
        if name.endswith(".json"):
            meta = json.loads(data)
            meta["split"] = "test"
            return json.dumps(meta).encode()
        return data

    rewrite_shard(first_shard(copy), damage)
    assert any("json.split is 'test' but the shard is in 'train'" in p for p in validate_output(copy))


def test_unlisted_shard_and_missing_stats(copy: Path):
    shutil.copy(first_shard(copy), copy / "train" / "stray.tar")
    problems = validate_output(copy)
    assert "train/stray.tar: shard not listed in sizes.json" in problems
    (copy / "stats.json").unlink()
    assert "not found" in validate_output(copy)[0]


def test_cli_exit_codes(copy: Path):
    assert run_cli("validate", copy).exit_code == 0
    (copy / "train" / "sizes.json").write_text(json.dumps({"unimed-000000.tar": 3}))
    result = run_cli("validate", copy)
    assert result.exit_code == 1 and "problem" in result.output
