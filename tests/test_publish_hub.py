"""`unimed-data publish OUT hf://datasets/ORG/NAME`: a build's public files committed to a Hugging Face
dataset repo through huggingface_hub, tested against a loopback stand-in of the Hub's API
(tests/hub_standin.py; regular uploads only, not the LFS/xet transfer of the real Hub)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.hub_standin import REPO, TOKEN
from unimed_data import publish_hub

pytest_plugins = ["tests.hub_standin"]  # the `hub` fixture
DEST = f"hf://datasets/{REPO}"


@pytest.fixture
def build(demo_out: Path, tmp_path: Path) -> Path:
    out = tmp_path / "build"
    shutil.copytree(demo_out, out)
    return out


def sums(text: str) -> dict[str, str]:
    return {name: digest for digest, name in (line.split("  ", 1) for line in text.splitlines())}


def test_every_public_file_arrives_with_its_checksum_and_the_card_is_the_repo_readme(build, hub, monkeypatch):
    monkeypatch.setattr(publish_hub, "BATCH_FILES", 4)  # several commits, SHA256SUMS in the first
    result = run_cli("publish", build, DEST)
    assert result.exit_code == 0, result.output
    files = hub.files()
    listed = sums(files["SHA256SUMS"].decode())
    assert sorted(files) == sorted([*listed, "SHA256SUMS"])
    assert {"README.md", "stats.json", "train/sizes.json", "train/index.parquet"} <= set(listed)
    assert not any(name.startswith("work/") for name in files)
    for name, digest in listed.items():
        assert (
            hashlib.sha256(files[name]).hexdigest()
            == digest
            == hashlib.sha256((build / name).read_bytes()).hexdigest()
        )
    assert files["README.md"] == (build / "README.md").read_bytes()
    assert hub.commits() == -(-(len(listed) + 1) // 4)
    first = hub.repos[REPO].commits[list(hub.repos[REPO].commits)[1]]
    assert "SHA256SUMS" in first
    assert f"{len(listed)} files sent, 0 already there" in result.output
    assert TOKEN not in result.output


def test_a_rerun_sends_nothing_and_a_stopped_publish_sends_only_what_is_missing(build, hub):
    assert run_cli("publish", build, DEST).exit_code == 0
    listed = sums(hub.files()["SHA256SUMS"].decode())
    again = run_cli("publish", build, DEST)
    assert f"0 files sent, {len(listed)} already there" in again.output
    commits = hub.commits()
    assert commits == 1
    # As if stopped midway on another machine: two files never arrived, no local record.
    shutil.rmtree(build / "work" / "publish")
    hub.delete(["train/sizes.json", "stats.json"])
    resumed = run_cli("publish", build, DEST)
    assert resumed.exit_code == 0, resumed.output
    assert f"2 files sent, {len(listed) - 2} already there" in resumed.output
    files = hub.files()
    for name in ("train/sizes.json", "stats.json"):
        assert files[name] == (build / name).read_bytes()


def test_a_changed_file_is_sent_again(build, hub):
    assert run_cli("publish", build, DEST).exit_code == 0
    stats = build / "stats.json"
    stats.write_text(stats.read_text().replace("{", "{ ", 1))
    again = run_cli("publish", build, DEST)
    assert "1 files sent" in again.output
    assert hub.files()["stats.json"] == stats.read_bytes()
    assert (
        sums(hub.files()["SHA256SUMS"].decode())["stats.json"]
        == hashlib.sha256(stats.read_bytes()).hexdigest()
    )


def test_a_missing_repo_says_how_to_create_it(build, hub):
    result = run_cli("publish", build, "hf://datasets/unimed/no-such-repo")
    assert result.exit_code == 2
    assert "dataset repo unimed/no-such-repo not found" in result.output
    assert "hf repo create unimed/no-such-repo --repo-type dataset" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_wrong_token_is_refused_without_showing_it(build, hub, monkeypatch):
    wrong = "hf_wrong_token_that_must_not_show_0123"
    monkeypatch.setenv("HF_TOKEN", wrong)
    result = run_cli("publish", build, DEST)
    assert result.exit_code == 2
    assert "refused the token (HF_TOKEN" in result.output and "401" in result.output
    assert wrong not in result.output and TOKEN not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert hub.files() == {}


def test_no_token_at_all_names_hf_token(build, hub, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr("huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    result = run_cli("publish", build, DEST)
    assert result.exit_code == 2 and "no Hugging Face token: set HF_TOKEN" in result.output
    assert not any(method == "POST" for method, _ in hub.requests)


def test_a_dry_run_lists_the_files_and_sends_nothing(build, hub):
    result = run_cli("publish", build, DEST, "--dry-run")
    assert (
        result.exit_code == 0
        and "train/sizes.json" in result.output
        and f"would go to {DEST}" in result.output
    )
    assert hub.requests == []
    bad = run_cli("publish", build, "hf://unimed/corpus", "--dry-run")
    assert bad.exit_code == 2 and "write hf://datasets/ORG/NAME[/folder]" in bad.output


def test_a_folder_inside_the_repo_holds_the_build(build, hub):
    assert run_cli("publish", build, f"{DEST}/v1").exit_code == 0
    files = hub.files()
    assert "v1/SHA256SUMS" in files and "v1/train/sizes.json" in files
    assert all(name.startswith("v1/") for name in files)


def test_a_file_that_arrives_damaged_is_an_error_naming_it(build, hub):
    hub.mangle = {"stats.json"}
    result = run_cli("publish", build, DEST)
    assert result.exit_code == 2
    size = (build / "stats.json").stat().st_size
    assert (
        f"stats.json: the repo holds {size - 1} bytes" in result.output
        and "after the commit" in result.output
    )


def test_the_trainer_reads_published_shards_and_sizes_through_hf_urls(build, hub):
    import webdataset as wds
    from unimed_train.data.sharding import tar_samples
    from unimed_train.data.spec import dataset_size, parse_spec

    assert run_cli("publish", build, DEST).exit_code == 0
    local_sizes = json.loads((build / "train" / "sizes.json").read_text())
    pattern = f"hf://datasets/{REPO}/train/unimed-{{000000..{len(local_sizes) - 1:06d}}}.tar"
    sources = parse_spec(pattern)
    assert dataset_size(sources) == sum(local_sizes.values())
    samples = list(tar_samples(({"url": url} for url in sources[0].urls[:2]), handler=wds.reraise_exception))
    first_two = sum(local_sizes[url.rsplit("/", 1)[-1]] for url in sources[0].urls[:2])
    assert len(samples) == first_two
    assert all({"jpg", "txt", "json"} <= set(sample) for sample in samples)
    assert json.loads(samples[0]["json"])["split"] == "train"


def test_published_files_read_back_in_byte_ranges_and_through_hf_hub_download(build, hub, tmp_path):
    from huggingface_hub import HfFileSystem, hf_hub_download

    assert run_cli("publish", build, DEST).exit_code == 0
    shard = (build / "train" / "unimed-000000.tar").read_bytes()
    with HfFileSystem(skip_instance_cache=True).open(
        f"datasets/{REPO}/train/unimed-000000.tar", block_size=1024
    ) as f:
        f.seek(1000)
        assert f.read(100) == shard[1000:1100]
    assert any(wanted.startswith("bytes=1000-") for wanted in hub.ranges)  # not the whole file
    path = hf_hub_download(REPO, "train/sizes.json", repo_type="dataset", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == (build / "train" / "sizes.json").read_bytes()
    assert ("HEAD", f"/datasets/{REPO}/resolve/main/train/sizes.json") in hub.requests


def test_a_card_whose_header_the_hub_rejects_is_an_error_naming_readme(build, hub):
    card = build / "README.md"
    card.write_text("---\n- not: a mapping\n---\n" + card.read_text().split("---\n", 2)[2])
    result = run_cli("publish", build, DEST)
    assert result.exit_code == 2 and "Invalid metadata in README.md" in result.output
    assert hub.commits() == 0
