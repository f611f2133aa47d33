"""A candidate's JPEG bytes: converted as the build's convert stage converts a source (same
reasons for a bad file), or copied from a shard.

Runs in worker processes (`parallel.ordered_map`), so a failure comes back as a reason instead of
an exception, and a decoder that kills its process costs only its own file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unimed_data.convert_chunk import CRASHED, ConvertResult, encode_source
from unimed_data.imaging import ConvertOptions
from unimed_data.wds_tar import read_member


@dataclass(frozen=True)
class ImageTask:
    path: str
    member: tuple[int, int] | None  # (offset, size) of a ready JPEG inside the tar at `path`
    options: ConvertOptions


def load_image(task: ImageTask) -> tuple[bytes | None, str | None]:
    """(JPEG bytes, None), or (None, reason)."""
    if task.member is not None:
        offset, size = task.member
        try:
            data = read_member(task.path, offset, size)
        except OSError as exc:
            return None, f"cannot read the jpg member ({exc.strerror or exc})"
        return (data, None) if len(data) == size else (None, "jpg member cut short")
    encoded = encode_source(Path(task.path), task.options)
    if isinstance(encoded, ConvertResult):  # an evaluation set keeps every input: a dropped one is an error
        return None, encoded.error or encoded.filtered
    return encoded.jpeg, None


def crashed(task: ImageTask) -> tuple[None, str]:
    return None, CRASHED
