"""Fingerprints of protected evaluation images: each image as the build fingerprints its own (same
size cap), plus the perceptual hash and thumbnail of a few crops of it, so a pretraining copy
cropped by a few per cent still meets one of them within the near-match radius.

Apart from protect.py (which reads the specs) so that only a build that protects something loads
the decoders.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from unimed_data.convert_chunk import ConvertResult, encode_source
from unimed_data.executor import Executor
from unimed_data.imaging.encode import capped
from unimed_data.imaging.fingerprint import fingerprint
from unimed_data.protect import CROPS, Protected, ProtectTask, Source, file_tail
from unimed_data.wds_tar import read_member


def fingerprint_all(sources: list[Source], executor: Executor) -> Iterator[Protected]:
    tasks = [task for source in sources for task in source.tasks]
    return executor.map(fingerprint_task, tasks, desc="protect", total=len(tasks), on_crash=_unread)


def fingerprint_task(task: ProtectTask) -> Protected:
    """The image's pixel digest, and the hash and thumbnail of it and of its crops."""
    image, pixels = _capped(task)
    if image is None:
        return _unread(task)
    marks = [fingerprint(variant) for variant in crop_variants(image)]
    return Protected(
        task.eval_set,
        task.eval_key,
        task.path,
        file_tail(task),
        pixels or marks[0].pixels,
        tuple((mark.phash, mark.thumb) for mark in marks),
    )


def _unread(task: ProtectTask) -> Protected:
    return Protected(task.eval_set, task.eval_key, task.path, file_tail(task), None, ())


def _capped(task: ProtectTask) -> tuple[Image.Image | None, str | None]:
    """The image as the build would hold it (capped, 8-bit), and its exact digest where the
    build's own converter made it."""
    if task.member is None:
        encoded = encode_source(Path(task.path), task.options)
        if isinstance(encoded, ConvertResult):
            return None, None
        with Image.open(io.BytesIO(encoded.jpeg)) as image:
            return image.convert(
                image.mode if image.mode in ("L", "RGB") else "RGB"
            ), encoded.fingerprint.pixels
    try:
        data = read_member(task.path, *task.member)
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("L" if image.mode in ("L", "I", "I;16") else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, None
    return capped(image, task.options.max_side), None


def crop_variants(image: Image.Image) -> list[Image.Image]:
    """The image and its crops: each amount of each side pair, at nine placements."""
    return [image, *(crop for amount in CROPS for crop in _crops(image, amount))]


def _crops(image: Image.Image, amount: float) -> Iterator[Image.Image]:
    width, height = image.size
    cut_w, cut_h = amount * width, amount * height
    for fx in (0.0, 0.5, 1.0):
        for fy in (0.0, 0.5, 1.0):
            left, top = round(fx * cut_w), round(fy * cut_h)
            right, bottom = width - round(cut_w - fx * cut_w), height - round(cut_h - fy * cut_h)
            if right - left >= 8 and bottom - top >= 8:
                yield image.crop((left, top, right, bottom))
