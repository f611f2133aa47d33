"""The dataset card's Hub header: the YAML front matter the Hugging Face Hub and `datasets` read
(licence, tasks, tags, size bucket, the splits' shard files)."""

from __future__ import annotations

import json

import pytest
import yaml

from unimed_data.card import SourceInfo, card_in_folder, hub_header, hub_license, size_category


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_the_demo_card_starts_with_the_hub_header(demo_out):
    card = (demo_out / "README.md").read_text()
    header = front_matter(card)
    stats = json.loads((demo_out / "stats.json").read_text())
    # the demo's sources are "MIT (pydicom test files; ...)": more than plain MIT, so no Hub id is claimed
    assert header["license"] == "other" and header["license_name"] and header["license_link"] == "README.md"
    assert header["task_categories"] == [
        "zero-shot-image-classification",
        "image-to-text",
        "feature-extraction",
    ]
    assert (
        header["tags"][0] == "medical"
        and {"ct", "xray"} <= set(header["tags"])
        and "other" not in header["tags"]
    )
    assert header["size_categories"] == ["n<1K"]
    (config,) = header["configs"]
    assert config["config_name"] == "default"
    assert config["data_files"] == [
        {"split": split, "path": f"{split}/unimed-*.tar"}
        for split in ("train", "val", "test")
        if split in stats["splits"]
    ]
    assert "\n# Medical image-text shards built with unimed-data\n" in card


def test_huggingface_hub_reads_the_header_as_the_same_card_data(demo_out):
    from huggingface_hub import DatasetCard

    card = (demo_out / "README.md").read_text()
    assert DatasetCard(card).data.to_dict() == front_matter(card)


def test_one_shared_hub_licence_is_named_and_anything_more_is_other():
    assert [hub_license(text) for text in ("CC BY 4.0", "cc-by-nc-sa-4.0", "CC0", "MIT", "Apache 2.0")] == [
        "cc-by-4.0",
        "cc-by-nc-sa-4.0",
        "cc0-1.0",
        "mit",
        "apache-2.0",
    ]
    assert hub_license("CC BY 4.0 as stated for the Zenodo record (not re-verified)") is None
    assert hub_license("research use only") is None
    stats = {"totals": {"samples": 5}, "splits": {"train": {}}}

    def licence(*texts: str) -> dict:
        sources = [SourceInfo(f"s{i}", f"S{i}", "xray", text) for i, text in enumerate(texts)]
        return front_matter("\n".join(hub_header(stats, sources, "unimed")))

    assert licence("CC BY 4.0", "cc-by-4.0")["license"] == "cc-by-4.0"
    assert "license_name" not in licence("CC BY 4.0")
    assert licence("CC BY 4.0", "MIT")["license"] == "other"


@pytest.mark.parametrize(
    ("samples", "bucket"),
    [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (5_300_000, "1M<n<10M"), (10**12, "n>1T")],
)
def test_the_size_bucket_is_the_hubs(samples, bucket):
    assert size_category(samples) == bucket


def test_datasets_loads_the_train_split_the_header_names(demo_out, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    # Offline for this test only: both libraries read the switch once, at import, so the environment
    # variable would outlive the test (and turn later tests offline).
    for module, name in [(huggingface_hub.constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE")]:
        monkeypatch.setattr(module, name, True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    header = front_matter((demo_out / "README.md").read_text())
    train = next(f["path"] for f in header["configs"][0]["data_files"] if f["split"] == "train")
    loaded = datasets.load_dataset(
        "webdataset",
        data_files={"train": str(demo_out / train)},
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    stats = json.loads((demo_out / "stats.json").read_text())
    assert len(loaded) == stats["splits"]["train"]["samples"]
    assert {"jpg", "txt", "json"} <= set(loaded.column_names)
    first = loaded[0]
    assert first["txt"] and first["json"]["split"] == "train" and first["jpg"].size[0] > 0


def test_a_card_for_a_folder_of_a_repo_names_the_shards_from_the_repo_root(demo_out):
    card = (demo_out / "README.md").read_text()
    moved = card_in_folder(card, "v1")
    paths = [entry["path"] for entry in front_matter(card)["configs"][0]["data_files"]]
    assert [entry["path"] for entry in front_matter(moved)["configs"][0]["data_files"]] == [
        f"v1/{path}" for path in paths
    ]
    assert {key: value for key, value in front_matter(moved).items() if key != "configs"} == {
        key: value for key, value in front_matter(card).items() if key != "configs"
    }
    assert moved.split("---\n", 2)[2] == card.split("---\n", 2)[2]
    edited = "---\nconfigs:\n- config_name: default\n  data_files: data/*.tar\n---\nbody\n"
    assert front_matter(card_in_folder(edited, "v1"))["configs"][0]["data_files"] == "v1/data/*.tar"
    for plain in ("no front matter\n", "---\n- a list\n---\nbody\n", "---\n: : bad\n---\nbody\n"):
        assert card_in_folder(plain, "v1") == plain
