"""Input shards in, output shards out: samples read in tar order, decoded once for every teacher,
and written back with their original members (byte for byte but the json) plus the features.

The output is a function of the input and the teachers alone: members in sorted order with fixed
metadata (`unimed_data.wds_tar`), written to a temporary name and renamed, so a shard that exists is
finished and the same inputs give the same bytes."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unimed_data.tables import atomic_write_text
from unimed_data.wds_tar import TarWriter, add_sample
from unimed_train.data.remote import reason
from unimed_train.data.samples import IMAGE_EXTS, captions_of

MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset's key.ext split


@dataclass
class Sample:
    """One input sample: its raw members, and what a teacher reads of it (or why it cannot)."""

    key: str
    members: dict[str, bytes]
    meta: object = None  # the parsed json member (None without one, or when it is not JSON)
    image: Image.Image | None = None
    texts: list[str] = field(default_factory=list)
    modality: str | None = None
    problem: str | None = None
    added: dict[str, bytes] = field(default_factory=dict)
    teachers: list[str] = field(default_factory=list)

    def add(self, teacher: str, image: np.ndarray, text: np.ndarray) -> None:
        self.added[f"{teacher}.img.npy"] = _npy(image)
        self.added[f"{teacher}.txt.npy"] = _npy(text)
        self.teachers.append(teacher)

    def output(self) -> dict[str, bytes]:
        """The members to write: the originals, the features, and `available_teachers` in the json."""
        members = {**self.members, **self.added}
        meta = {} if "json" not in self.members else self.meta
        if isinstance(meta, dict):  # other json (a list, not JSON at all) is kept as it was
            meta = {**meta, "available_teachers": list(self.teachers)}
            members["json"] = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        return members


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def read_samples(path: Path) -> Iterator[Sample]:
    """The samples of a tar in order: consecutive members sharing a key, as WebDataset groups them."""
    current: Sample | None = None
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            match = MEMBER.match(member.name)
            if not member.isfile() or match is None:
                continue
            key, ext = match.groups()
            if current is None or current.key != key:
                if current is not None:
                    yield current
                current = Sample(key, {})
            current.members[ext] = tar.extractfile(member).read()
    if current is not None:
        yield current


def prepare(sample: Sample) -> Sample:
    """Decode the image and read the captions (the trainer's rules: `json.captions`, else `txt`)
    and modality; `problem` says why no teacher can read the sample."""
    data = next((sample.members[e] for e in IMAGE_EXTS if e in sample.members), None)
    try:
        sample.meta = json.loads(sample.members["json"]) if "json" in sample.members else None
    except ValueError as exc:
        sample.problem = f"json: {reason(exc)}"
        return sample
    sample.modality = sample.meta.get("modality") if isinstance(sample.meta, dict) else None
    sample.texts = captions_of(sample.meta)
    if not sample.texts and "txt" in sample.members:
        sample.texts = [t for t in [sample.members["txt"].decode("utf-8", "replace")] if t.strip()]
    if data is None or not sample.texts:
        sample.problem = "no image" if data is None else "no caption (json captions or txt)"
        return sample
    try:
        with Image.open(io.BytesIO(data)) as image:
            sample.image = image.convert("RGB")
    except Exception as exc:  # PIL raises many types for a corrupt or truncated image
        sample.problem = f"image: {reason(exc)}"
    return sample


class ShardWriter:
    """An output shard under its temporary name, renamed into place by `finish` with its errors."""

    def __init__(self, dest: Path, errors: Path):
        self.dest, self.errors = dest, errors
        self.tmp = dest.with_name(f".{dest.name}.tmp")
        self.tar = TarWriter(self.tmp)
        self.rows: list[dict] = []
        self.samples = 0

    def write(self, sample: Sample) -> None:
        add_sample(self.tar, sample.key, sample.output())
        self.samples += 1

    def error(self, key: str, teacher: str, why: str) -> None:
        self.rows.append({"shard": self.dest.name, "key": key, "teacher": teacher, "reason": why})

    def finish(self) -> None:
        """Errors first, then the shard: a shard in place always has its errors file beside it."""
        self.tar.close()
        target = self.errors / f"{self.dest.name.removesuffix('.tar')}.jsonl"
        if self.rows:
            atomic_write_text(
                target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows)
            )
        else:
            target.unlink(missing_ok=True)
        os.replace(self.tmp, self.dest)
