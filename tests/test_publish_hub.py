"""`unimed-data publish OUT hf://datasets/ORG/NAME`: a build's public files committed to a Hugging Face
dataset repo through huggingface_hub, tested against a loopback stand-in of the Hub's API
(tests/hub_standin.py; regular uploads only, not the LFS/xet transfer of the real Hub)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli, sha256sums
from tests.hub_standin import REPO, TOKEN
from unimed_data import publish_hub
from unimed_data.publish import PublishError, published_files
from unimed_data.schema import SPLITS

DEST = f"hf://datasets/{REPO}"


def sent_and_kept(output: str) -> tuple[int, int]:
    """The counts of the CLI's last line, `N files sent, M already there; ...`."""
    found = re.search(r"\b(\d+) files sent, (\d+) already there\b", output)
    assert found, output
    return int(found[1]), int(found[2])


@pytest.fixture
def load_from_hub(hub, monkeypatch, tmp_path):
    """`datasets.load_dataset` of a repo on the stand-in, as a user loads one from the Hub by its name."""
    import datasets
    import huggingface_hub.constants

    for module, name in [(huggingface_hub.constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE")]:
        monkeypatch.setattr(module, name, False)  # the stand-in is on loopback, whatever the environment says
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    # datasets, like huggingface_hub, read HF_ENDPOINT when it was first imported
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(
        datasets.config, "HUB_DATASETS_URL", hub.url + "/datasets/{repo_id}/resolve/{revision}/{path}"
    )
    return lambda repo_id, **kwargs: datasets.load_dataset(
        repo_id, cache_dir=str(tmp_path / "datasets-cache"), **kwargs
    )


def test_every_public_file_arrives_with_its_checksum_and_the_card_is_the_repo_readme(build, hub, monkeypatch):
    monkeypatch.setattr(publish_hub, "BATCH_FILES", 4)  # several commits, SHA256SUMS in the first
    result = run_cli("publish", build, DEST)
    assert result.exit_code == 0, result.output
    files = hub.files()
    listed = sha256sums(files["SHA256SUMS"].decode())
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
    assert sent_and_kept(result.output) == (len(listed), 0)
    assert TOKEN not in result.output


def test_a_rerun_sends_nothing_and_a_stopped_publish_sends_only_what_is_missing(build, hub):
    assert run_cli("publish", build, DEST).exit_code == 0
    listed = sha256sums(hub.files()["SHA256SUMS"].decode())
    again = run_cli("publish", build, DEST)
    assert sent_and_kept(again.output) == (0, len(listed))
    commits = hub.commits()
    assert commits == 1
    # As if stopped midway on another machine: two files never arrived, no local record.
    shutil.rmtree(build / "work" / "publish")
    hub.delete(["train/sizes.json", "stats.json"])
    resumed = run_cli("publish", build, DEST)
    assert resumed.exit_code == 0, resumed.output
    assert sent_and_kept(resumed.output) == (2, len(listed) - 2)
    files = hub.files()
    for name in ("train/sizes.json", "stats.json"):
        assert files[name] == (build / name).read_bytes()


def test_a_changed_file_is_sent_again(build, hub):
    assert run_cli("publish", build, DEST).exit_code == 0
    stats = build / "stats.json"
    stats.write_text(stats.read_text().replace("{", "{ ", 1))
    again = run_cli("publish", build, DEST)
    assert sent_and_kept(again.output)[0] == 1
    assert hub.files()["stats.json"] == stats.read_bytes()
    assert (
        sha256sums(hub.files()["SHA256SUMS"].decode())["stats.json"]
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
        and f"to publish to {DEST}" in result.output
    )
    assert hub.requests == []
    bad = run_cli("publish", build, "hf://unimed/corpus", "--dry-run")
    assert bad.exit_code == 2 and "write hf://datasets/ORG/NAME[/folder]" in bad.output


def test_the_published_card_lets_datasets_load_the_repo_by_its_name(build, hub, load_from_hub):
    assert run_cli("publish", build, DEST).exit_code == 0
    stats = json.loads((build / "stats.json").read_text())
    loaded = load_from_hub(REPO)
    assert {split: len(rows) for split, rows in loaded.items()} == {
        split: info["samples"] for split, info in stats["splits"].items()
    }
    assert {"jpg", "txt", "json"} <= set(loaded["train"].column_names)


def test_into_a_folder_goes_a_card_that_names_the_folders_shards_from_the_repo_root(
    build, hub, load_from_hub
):
    from huggingface_hub import HfApi

    card = (build / "README.md").read_text()
    result = run_cli("publish", build, f"{DEST}/v1")
    assert result.exit_code == 0, result.output
    files = hub.files()
    assert all(name.startswith("v1/") for name in files) and "v1/train/sizes.json" in files
    assert (build / "README.md").read_text() == card  # the build's own card is not changed
    published = files["v1/README.md"].decode()
    header = yaml.safe_load(published.split("---\n", 2)[1])
    stats = json.loads((build / "stats.json").read_text())
    assert [entry["path"] for entry in header["configs"][0]["data_files"]] == [
        f"v1/{split}/unimed-*.tar" for split in SPLITS if split in stats["splits"]
    ]
    assert published.split("---\n", 2)[2] == card.split("---\n", 2)[2]  # only the header differs
    listed = sha256sums(files["v1/SHA256SUMS"].decode())
    assert listed["README.md"] == hashlib.sha256(files["v1/README.md"]).hexdigest()
    assert sent_and_kept(run_cli("publish", build, f"{DEST}/v1").output) == (0, len(listed))
    # The Hub reads the card only at the repo root: copied there, it loads the folder by the repo's name.
    HfApi().upload_file(
        path_or_fileobj=files["v1/README.md"], path_in_repo="README.md", repo_id=REPO, repo_type="dataset"
    )
    loaded = load_from_hub(REPO)
    assert {split: len(rows) for split, rows in loaded.items()} == {
        split: info["samples"] for split, info in stats["splits"].items()
    }


@pytest.mark.parametrize(
    "dest", ["hf://datasets/a/b/../..", "hf://datasets/a/b/./v1", "hf://datasets/../b/c"]
)
def test_dot_and_dot_dot_in_a_repo_path_are_refused(dest, tmp_path):
    with pytest.raises(PublishError, match=r"`\.` and `\.\.` are not allowed in a repo path"):
        publish_hub.hub_repo(dest)
    result = run_cli("publish", tmp_path, dest, "--dry-run")
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"error: {dest}: `.` and `..` are not allowed in a repo path"
    ]


@pytest.mark.parametrize("folder", ["", "v1"])
def test_progress_counts_every_byte_of_the_build_once_even_when_a_publish_resumes(build, hub, folder):
    dest = f"{DEST}/{folder}" if folder else DEST
    total = sum(path.stat().st_size for path in published_files(build))
    first: list[int] = []
    publish_hub.publish_hub(build, dest, progress=first.append)
    hub.delete([f"{folder}/stats.json" if folder else "stats.json"])
    resumed: list[int] = []
    publish_hub.publish_hub(build, dest, progress=resumed.append)
    assert sum(first) == sum(resumed) == total
    # what was already there is counted at once, before anything is sent
    assert resumed[0] == total - (build / "stats.json").stat().st_size


def test_the_token_from_the_saved_login_never_shows_even_when_the_hub_repeats_it(
    build, hub, monkeypatch, tmp_path
):
    monkeypatch.delenv("HF_TOKEN")
    login = tmp_path / "hf-token"
    login.write_text(TOKEN)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(login))
    hub.echo_token = True  # the commit is refused with a message that repeats the Authorization header
    result = run_cli("publish", build, DEST)
    assert result.exit_code == 2 and "Bearer <HF token>" in result.output, result.output
    assert TOKEN not in result.output and len(result.output.strip().splitlines()) == 1


def test_an_error_text_holding_the_token_is_shown_without_it(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # not redacted as a variable: only as the token in use
    error = ConnectionError(f"proxy refused:\n  Authorization: Bearer {TOKEN}\n\nretry later")
    reason = publish_hub._hub_reason(error, publish_hub.HubRepo(REPO, ""), TOKEN)
    assert reason == "proxy refused: Authorization: Bearer <HF token> (ConnectionError)"


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
