"""WebDataset tars as the build and `evalset` write and read them, in one place.

Written with the standard library rather than webdataset's TarWriter, whose import pulls in torch
(seconds and ~500 MB per process) for what is plain tar writing. Every member gets fixed metadata,
so the same samples always give the same bytes.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

NUL = b"\0"


class TarWriter:
    """A ustar tar written member by member, each with mtime 0, read-only mode and a fixed owner.

    The headers are tarfile's own (`TarInfo.tobuf`), and the blocks, padding and end are laid out
    as `tarfile` lays them out, so the bytes are the ones it would write; what is left out is its
    per-member copy of the header object and of the data through a file object, which cost more
    than the writing itself for small images.
    """

    def __init__(self, path: Path | str):
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close(), or on leaving a with block)
        self.offset = 0  # where the next member's header goes

    def add(self, name: str, data: bytes) -> int:
        """Append a member; returns the offset of its data."""
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        info.uname = info.gname = "unimed"
        header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
        start = self.offset + len(header)
        padding = NUL * (-len(data) % tarfile.BLOCKSIZE)
        self._file.write(header + data + padding)
        self.offset = start + len(data) + len(padding)
        return start

    def close(self) -> None:
        """End the archive (two empty blocks, then padding to a whole record) and close the file."""
        end = 2 * tarfile.BLOCKSIZE
        end += -(self.offset + end) % tarfile.RECORDSIZE
        self._file.write(NUL * end)
        self._file.close()

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_sample(tar: TarWriter, key: str, members: dict[str, bytes]) -> None:
    """One sample: a `<key>.<ext>` member per extension, in sorted order."""
    for ext in sorted(members):
        tar.add(f"{key}.{ext}", members[ext])


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
