"""The shards need no adapter: webdataset and open_clip's own training loader read them as they are."""

import json
from argparse import Namespace
from pathlib import Path

import pytest
import webdataset as wds

open_clip = pytest.importorskip("open_clip", reason="needs the `train` extra (torch, open_clip_torch)")
open_clip_data = pytest.importorskip("open_clip_train.data")


def brace_pattern(folder: Path) -> str:
    sizes = json.loads((folder / "sizes.json").read_text())
    return str(folder / f"unimed-{{000000..{len(sizes) - 1:06d}}}.tar"), sum(sizes.values())


def test_plain_webdataset_decodes_every_sample(demo_out: Path):
    pattern, total = brace_pattern(demo_out / "train")
    samples = list(
        wds.WebDataset(pattern, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt", "json")
    )
    assert len(samples) == total
    for key, image, text, meta in samples:
        assert (
            "." not in key and image.size == (meta["width"], meta["height"]) and text == meta["captions"][0]
        )


def loader_args(pattern: str, **extra) -> Namespace:
    values = dict(
        train_data=pattern,
        val_data=pattern,
        train_num_samples=None,
        val_num_samples=None,
        dataset_resampled=False,
        train_data_upsampling_factors=None,
        seed=0,
        workers=0,
        world_size=1,
        batch_size=4,
    )
    return Namespace(**{**values, **extra})


def test_open_clip_training_loader_counts_from_sizes_json_and_yields_batches(demo_out: Path):
    pattern, total = brace_pattern(demo_out / "train")
    preprocess = open_clip.image_transform(64, is_train=True)
    tokenizer = open_clip.get_tokenizer("RN50")
    data = open_clip_data.get_wds_dataset(
        loader_args(pattern), preprocess, is_train=True, tokenizer=tokenizer
    )
    loader = data.dataloader
    assert loader.num_samples == -(-total // 4) * 4  # open_clip rounds up to full batches
    batches = list(loader)
    assert len(batches) == loader.num_batches
    images, texts = batches[0]
    assert tuple(images.shape) == (4, 3, 64, 64) and tuple(texts.shape) == (4, 77)


def test_open_clip_eval_loader_sees_every_sample_once(demo_out: Path):
    pattern, total = brace_pattern(demo_out / "val")
    preprocess = open_clip.image_transform(32, is_train=False)
    tokenizer = open_clip.get_tokenizer("RN50")
    args = loader_args(pattern, val_num_samples=total)
    data = open_clip_data.get_wds_dataset(args, preprocess, is_train=False, tokenizer=tokenizer)
    assert sum(len(images) for images, _ in data.dataloader) == total
