"""Files at URLs (`s3://`, `gs://`, `hf://`, `http(s)://`) read through fsspec, for shards, their
`sizes.json` and eval sets alike: which schemes, with which options, and what really failed.

http(s) goes through fsspec too, not webdataset's `curl` pipe: no curl binary is needed, the URL is
never quoted into a shell, and a failed request raises an error naming the URL."""

from __future__ import annotations

import fsspec

FSSPEC_SCHEMES = ("s3", "gs", "gcs", "hf", "az", "abfs", "http", "https")


def is_fsspec_url(url: str) -> bool:
    return url.partition("://")[0] in FSSPEC_SCHEMES


def fsspec_options(url: str) -> dict:
    """Filesystem options for a URL: http(s) is streamed (block size 0: no Range requests, so any
    web server will do) and, as curl would, goes through the proxies the environment names."""
    if url.partition("://")[0] not in ("http", "https"):
        return {}
    return {"block_size": 0, "client_kwargs": {"trust_env": True}}


def url_to_fs(url: str):
    """A fresh filesystem (reading the credentials and endpoint the environment has now) and path."""
    return fsspec.core.url_to_fs(url, skip_instance_cache=True, **fsspec_options(url))


def open_url(url: str, mode: str = "rb"):
    return fsspec.open(url, mode, skip_instance_cache=True, **fsspec_options(url))


def http_failure(url: str, missing: FileNotFoundError) -> BaseException | None:
    """What really failed behind fsspec's FileNotFoundError for an http(s) URL, which it also raises
    for a refused certificate or connection, a 401 or 403; None where the file is just not there."""
    cause = missing.__cause__
    if url.partition("://")[0] not in ("http", "https") or cause is None:
        return None
    return None if getattr(cause, "status", None) in (404, 410) else cause


def reason(exc: BaseException) -> str:
    """One line: the exception's type and its message with the line breaks folded."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
