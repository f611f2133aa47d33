"""Raw tar members -> training samples -> batches: image, one caption per epoch, objective members.

A sample needs an image (``jpg``/``jpeg``/``png``/``webp``) and a caption. Each epoch one caption
is chosen from ``json["captions"]`` by a hash of ``(seed, epoch, __key__)`` (never the global
``random``), so the choice is the same on every rank, worker and rerun. Samples without json or
with an empty caption list use ``txt``. Objectives add members through objects with
``decode(raw, image, caption, n_captions) -> dict`` and ``collate(samples) -> dict``.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import torch
from PIL import Image

from unimed_train.data.sharding import seed_int

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def caption_index(seed: int, epoch: int, key: str, n: int) -> int:
    """Index of the caption used for sample ``key`` in ``epoch`` (of ``n`` candidates)."""
    return seed_int("caption", int(seed), int(epoch), str(key)) % n


def sample_captions(sample: dict) -> list[str]:
    """The captions one is drawn from (the teacher features have one text row for each)."""
    return captions_of(json.loads(sample["json"])) if "json" in sample else []


def captions_of(meta) -> list[str]:
    """The non-empty captions of a sample's decoded `json` member."""
    if not isinstance(meta, dict):
        return []
    return [c for c in (meta.get("captions") or []) if isinstance(c, str) and c.strip()]


class ToSample:
    """Raw tar members -> decoded training sample (None when it has no image or caption)."""

    def __init__(self, *, preprocess, tokenizer, members, seed, epoch):
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.members = tuple(members)
        self.seed = seed
        self.epoch = epoch

    def __call__(self, sample: dict) -> dict | None:
        key = sample["__key__"]
        data = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
        if data is None:
            return None
        captions = sample_captions(sample)
        choice = None
        if captions:
            choice = caption_index(self.seed, self.epoch.get_value(), key, len(captions))
            text = captions[choice]
        elif "txt" in sample:
            text = sample["txt"].decode("utf-8") if isinstance(sample["txt"], bytes) else sample["txt"]
            if not text.strip():
                return None
        else:
            return None
        with Image.open(io.BytesIO(data)) as im:
            image = im.convert("RGB")
        # Augmentations draw from a generator seeded by (seed, epoch, key), not from the process's
        # global one: the batcher reads one sample ahead, so with the global generator a resumed
        # run would crop that sample differently than the unbroken run did.
        with torch.random.fork_rng(devices=[]):
            seed = seed_int("augment", int(self.seed), int(self.epoch.get_value()), str(key))
            torch.default_generator.manual_seed(seed % 2**63)  # the CPU generator only: fork_rng restores it
            out = {"key": key, "image": self.preprocess(image), "text": self.tokenizer(text)[0]}
            for member in self.members:
                out.update(member.decode(sample, image, choice, len(captions)))
        return out


def _stack(items: list) -> Any:
    if isinstance(items[0], torch.Tensor):
        return torch.stack(items)
    if isinstance(items[0], np.ndarray):
        return torch.from_numpy(np.stack(items))
    return list(items)


class Collate:
    """Samples -> a batch dict: ``image`` ``[B, 3, H, W]``, ``text`` ``[B, ctx]`` (a list for a
    tokenizer returning strings), ``key`` (``list[str]``), then each member's own entries."""

    def __init__(self, members):
        self.members = tuple(members)

    def __call__(self, samples: list[dict]) -> dict:
        batch = {
            "image": _stack([s["image"] for s in samples]),
            "text": _stack([s["text"] for s in samples]),
            "key": [s["key"] for s in samples],
        }
        for member in self.members:
            batch.update(member.collate(samples))
        return batch
