"""WebDataset tars as the build and `evalset` write and read them, in one place.

Written with the standard library rather than webdataset's TarWriter, whose import pulls in torch
(seconds and ~500 MB per process) for what is plain tar writing. Every member gets fixed metadata,
so the same samples always give the same bytes.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def add_sample(tar: tarfile.TarFile, key: str, members: dict[str, bytes]) -> None:
    """One sample: a `<key>.<ext>` member per extension, in sorted order, with mtime 0, read-only
    mode and a fixed owner."""
    for ext in sorted(members):
        data = members[ext]
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        info.uname = info.gname = "unimed"
        tar.addfile(info, io.BytesIO(data))


def sample_members(tar: tarfile.TarFile) -> dict[str, dict[str, tarfile.TarInfo]]:
    """Each key's members by extension, keys in tar order (WebDataset splits at the first dot)."""
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    for member in tar:
        key, _, ext = member.name.partition(".")
        samples.setdefault(key, {})[ext] = member
    return samples


def read_member(path: Path | str, offset: int, size: int) -> bytes:
    """The `size` bytes of a member at `offset` (its `offset_data`), read without opening the tar;
    shorter when the file is cut. Raises OSError."""
    with open(path, "rb") as shard:
        shard.seek(offset)
        return shard.read(size)
