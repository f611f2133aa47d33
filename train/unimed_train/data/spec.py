"""Shard specs: `pattern[@weight]::...` into sources, their local files checked, their sizes read."""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import braceexpand

from unimed_train.cli import UsageError
from unimed_train.data.remote import http_failure, is_fsspec_url, open_url, reason, url_to_fs


@dataclass(frozen=True)
class Source:
    """One ``::``-separated part of a spec: its pattern, weight and expanded shard urls."""

    pattern: str
    weight: float
    urls: tuple[str, ...]


def parse_spec(spec: str) -> list[Source]:
    """Split ``pat1[@w1]::pat2[@w2]...`` into sources with brace-expanded shard lists."""
    if not spec or not spec.strip():
        raise UsageError("empty shard spec")
    sources = []
    for part in spec.split("::"):
        part = part.strip()
        if not part:
            raise UsageError(f"empty source in shard spec {spec!r}")
        pattern, weight = part, 1.0
        if "@" in part:
            head, _, tail = part.rpartition("@")
            try:
                weight = float(tail)
            except ValueError:
                weight = None  # an '@' that belongs to the path (e.g. user@host)
            if weight is not None:
                pattern = head
            else:
                weight = 1.0
        if not weight > 0 or math.isinf(weight):
            raise UsageError(f"source weight must be a positive number: {part!r}")
        urls = tuple(braceexpand.braceexpand(pattern))
        if not urls:
            raise UsageError(f"pattern names no shards: {pattern!r}")
        sources.append(Source(pattern=pattern, weight=weight, urls=urls))
    return sources


def check_shards(spec: str) -> list[Source]:
    """`parse_spec`, then a UsageError listing the local shards that do not exist (before webdataset
    fails on the first one deep in a worker); of a remote source, the first shard is looked up.
    Pipes (`pipe:...`) are left to webdataset."""
    sources = parse_spec(spec)
    for source in sources:
        if is_fsspec_url(source.urls[0]):
            _check_remote(source)
    local = [u for s in sources for u in s.urls if not _is_remote(u)]
    if problem := missing_shards(local, sum(len(s.urls) for s in sources), spec):
        raise UsageError(problem)
    return sources


def missing_shards(paths: list[str], total: int, spec: str) -> str | None:
    """What is wrong when some of the local shards a spec names are not files."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if not missing:
        return None
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return f"{len(missing)} of the {total} shards of {spec} do not exist: {shown}"


def _is_remote(url: str) -> bool:
    """`s3://...`, `https://...`, `pipe:...`: a scheme of 2+ letters (one letter is a Windows drive)."""
    scheme, sep, _ = url.partition(":")
    return bool(sep) and len(scheme) > 1 and "/" not in scheme


def dataset_size(sources: Sequence[Source]) -> int | None:
    """Total samples from each source's ``sizes.json``; None if any source has none."""
    total = 0
    for src in sources:
        path = _beside(src, "sizes.json")
        sizes = _read_json(path)
        if sizes is None:
            return None
        for url in src.urls:
            name = url.rsplit("/", 1)[-1]
            if name not in sizes:
                raise UsageError(f"{path}: no entry for shard {name!r}")
            total += int(sizes[name])
    return total


def teacher_widths(spec: str) -> dict[str, int]:
    """Teacher name -> feature width, from the `teachers.json` beside each source's shards (as
    `python -m unimed_train.teachers` writes it), in the order listed; {} where there is none."""
    widths: dict[str, int] = {}
    for src in parse_spec(spec):
        path = _beside(src, "teachers.json")
        listed = _read_json(path)
        try:
            found = {str(t["name"]): int(t["width"]) for t in (listed or {}).get("teachers", [])}
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UsageError(f"{path}: not a teachers.json of python -m unimed_train.teachers") from None
        for name, width in found.items():
            if widths.setdefault(name, width) != width:
                raise UsageError(f"{path}: teacher {name} is {width} wide here, {widths[name]} elsewhere")
    return widths


def _beside(src: Source, name: str) -> str:
    """The file `name` in the folder of a source's shards (a local folder, `.`, or a URL's)."""
    return posixpath.join(posixpath.dirname(src.urls[0]), name)


def _read_json(path: str) -> dict | None:
    """A `sizes.json` or `teachers.json`, local or remote (fsspec: `s3://`, `https://`, `hf://`...);
    None if absent."""
    if not _is_remote(path):
        return json.loads(Path(path).read_text()) if os.path.isfile(path) else None
    if path.startswith("pipe:"):
        return None
    try:
        with open_url(path, "rt") as handle:
            return json.load(handle)
    except FileNotFoundError as e:
        failure = http_failure(path, e)
        if failure is None:
            return None
        raise UsageError(f"{path}: cannot read ({reason(failure)})") from None
    except Exception as e:  # unreachable store, refused credentials, not JSON: one line naming the URL
        raise UsageError(f"{path}: cannot read ({reason(e)})") from None


def _check_remote(source: Source) -> None:
    """The first shard of a remote source is there: a mistyped prefix or bucket is one error now,
    not a `sizes.json` said to be absent and every shard skipped later."""
    url = source.urls[0]
    try:
        fs, path = url_to_fs(url)
        fs.info(path)
    except FileNotFoundError as e:
        failure = http_failure(url, e)
        if failure is None:
            raise UsageError(f"{url}: not found (the first shard of {source.pattern})") from None
        raise UsageError(f"{url}: cannot read ({reason(failure)})") from None
    except Exception as e:
        raise UsageError(f"{url}: cannot read ({reason(e)})") from None
