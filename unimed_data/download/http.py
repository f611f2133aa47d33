"""Streaming HTTP(S) downloads: resume, bounded retries, checksum verification, atomic placement.

`download_file(url, dest, sha256=..., size=...)` streams into `<dest name>.part` beside `dest`.
A rerun after an interruption asks for the rest with `Range: bytes=<have>-`: a 206 answer is
appended, a 200 answer restarts from byte 0. Connection errors, truncated bodies and 5xx answers
are retried with exponential backoff (`RETRIES` consecutive failures without progress at most).
Size, sha256 and md5 (whichever are known) are checked before `.part` is renamed onto `dest`; a
mismatch deletes the partial file and raises `ChecksumError`. A `dest` that already exists and
verifies is kept without contacting the server; a stamp file `.<name>.verified` (size, mtime,
sha256) spares rehashing it on later runs.

Credentials (basic auth, or `user:pass@` in the URL) go only into the request's
`Authorization` header, which is not forwarded to another host on redirects; every URL that
appears in a message or log is passed through `redact_url` first.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tqdm import tqdm

log = logging.getLogger(__name__)

RETRIES = 5  # consecutive failed attempts without new bytes before giving up
BACKOFF_S = 1.0  # first retry waits this long, then doubles
BACKOFF_MAX_S = 30.0
TIMEOUT_S = 60.0
CHUNK = 1 << 20
USER_AGENT = "unimed-data"


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message names the (redacted) URL and why."""


class NotFoundError(DownloadError):
    """The server answered 404."""


class AuthError(DownloadError):
    """The server answered 401/403."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected size or digest."""


def redact_url(url: str) -> str:
    """`url` with any `user:pass@` removed (kept as `***@`), for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(url without userinfo, (user, password) or None)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    from urllib.parse import unquote

    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username), unquote(parts.password or ""))


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.verified")


def verify_file(
    path: Path, *, sha256: str | None = None, md5: str | None = None, size: int | None = None
) -> list[str]:
    """Problems with `path` against what is expected (empty list: it verifies)."""
    if not path.is_file():
        return [f"{path}: missing"]
    st = path.stat()
    if size is not None and st.st_size != size:
        return [f"{path}: size {st.st_size} bytes, expected {size}"]
    stamp = _stamp_path(path)
    if sha256 and stamp.is_file():
        try:
            s_size, s_mtime, s_sha = stamp.read_text().split()
            if int(s_size) == st.st_size and int(s_mtime) == st.st_mtime_ns and s_sha == sha256.lower():
                return []
        except (OSError, ValueError):
            pass
    problems = []
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual != expected.lower():
                problems.append(f"{path}: {algorithm} {actual}, expected {expected.lower()}")
            elif algorithm == "sha256":
                _write_stamp(path, actual)
    return problems


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    with contextlib.suppress(OSError):
        _stamp_path(path).write_text(f"{st.st_size} {st.st_mtime_ns} {sha256}\n")


class _SameHostAuthRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects, re-sending Authorization only to the same scheme and host."""

    def __init__(self, auth_header: str | None):
        super().__init__()
        self._auth = auth_header

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self._auth:
            old, nxt = urlsplit(req.full_url), urlsplit(new.full_url)
            if (old.scheme, old.netloc) == (nxt.scheme, nxt.netloc):
                new.add_unredirected_header("Authorization", self._auth)
        return new


def _auth_header(auth: tuple[str, str] | None) -> str | None:
    if auth:
        raw = f"{auth[0]}:{auth[1]}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")
    return None


class _Retry(Exception):
    """A transfer that broke off in a way worth retrying; the message is the reason."""


def open_url(url: str, *, auth: tuple[str, str] | None = None, headers: dict[str, str] | None = None):
    """`urlopen` with credentials in a non-forwarded Authorization header; raises urllib errors."""
    clean, url_auth = split_credentials(url)
    header = _auth_header(auth or url_auth)
    opener = urllib.request.build_opener(_SameHostAuthRedirect(header))
    req = urllib.request.Request(clean, headers={"User-Agent": USER_AGENT, **(headers or {})})
    if header:
        req.add_unredirected_header("Authorization", header)
    return opener.open(req, timeout=TIMEOUT_S)


def _http_error(err: urllib.error.HTTPError, shown: str, auth_hint: str | None) -> DownloadError:
    if err.code == 404:
        return NotFoundError(f"{shown}: not found (HTTP 404)")
    if err.code in (401, 403):
        hint = auth_hint or "check that you have access and that the credentials are set"
        return AuthError(f"{shown}: access denied (HTTP {err.code}): {hint}")
    return DownloadError(f"{shown}: HTTP {err.code} {err.reason}")


def fetch_bytes(url: str, *, auth: tuple[str, str] | None = None, auth_hint: str | None = None) -> bytes:
    """A small document (API JSON, a checksum list) with the same retry and error rules."""
    shown = redact_url(url)
    for attempt in range(RETRIES + 1):
        try:
            with open_url(url, auth=auth, headers={"Accept": "application/json"}) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            if err.code < 500 or attempt == RETRIES:
                raise _http_error(err, shown, auth_hint) from None
            reason = f"HTTP {err.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            if attempt == RETRIES:
                raise DownloadError(f"{shown}: {_reason(err)}") from None
            reason = _reason(err)
        _sleep(attempt, shown, reason)
    raise AssertionError("unreachable")


def _reason(err: BaseException) -> str:
    if isinstance(err, _Retry):
        return str(err)
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return f"connection failed: {err.reason}"
    return f"{type(err).__name__}: {err}"


def _sleep(attempt: int, shown: str, reason: str) -> None:
    delay = min(BACKOFF_S * (2**attempt), BACKOFF_MAX_S)
    log.warning("%s: %s; retrying in %.1fs", shown, reason, delay)
    time.sleep(delay)


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _fetch_part(
    url: str,
    part: Path,
    shown: str,
    *,
    size: int | None,
    auth: tuple[str, str] | None,
    auth_hint: str | None,
    retries: int | None,
) -> None:
    """Bring `part` to the full remote body, resuming and retrying, so download_file only verifies it."""
    retries = RETRIES if retries is None else retries
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        if size is not None and have == size and have > 0:
            break  # complete from an earlier run: verify below
        try:
            _transfer(url, part, have, auth, size)
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:
                part.unlink()  # our partial file does not fit the remote one: start over
                reason = "range not satisfiable; restarting"
            elif err.code >= 500:
                reason = f"HTTP {err.code}"
            else:
                raise _http_error(err, shown, auth_hint) from None
        except (_Retry, urllib.error.URLError, http.client.HTTPException, OSError) as err:
            reason = _reason(err)
        gained = part.stat().st_size - have if part.exists() else 0
        failures = 0 if gained > 0 else failures + 1
        if failures > retries:
            raise DownloadError(
                f"{shown}: giving up after {retries} retries: {reason} "
                f"(partial file kept at {part}; rerun to resume)"
            )
        _sleep(max(failures - 1, 0), shown, reason)


def download_file(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    auth: tuple[str, str] | None = None,
    auth_hint: str | None = None,
    retries: int | None = None,
) -> bool:
    """Fetch `url` onto `dest`, verified. Returns True if bytes were transferred, False if `dest`
    was already complete (the server is then not contacted). A tqdm bar shows progress on a TTY."""
    shown = redact_url(url)
    if dest.exists() and not verify_file(dest, sha256=sha256, md5=md5, size=size):
        log.info("%s: already present and verified", dest)
        return False
    if dest.exists():
        log.warning("%s: present but does not verify; downloading it again", dest)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    _fetch_part(url, part, shown, size=size, auth=auth, auth_hint=auth_hint, retries=retries)
    problems = verify_file(part, sha256=sha256, md5=md5, size=size)
    if problems:
        part.unlink(missing_ok=True)
        _stamp_path(part).unlink(missing_ok=True)
        detail = "; ".join(p.split(": ", 1)[1] for p in problems)
        raise ChecksumError(f"{shown}: downloaded file does not verify: {detail} (partial file deleted)")
    os.replace(part, dest)
    _stamp_path(part).unlink(missing_ok=True)
    if sha256:
        _write_stamp(dest, sha256.lower())
    return True


def _transfer(url: str, part: Path, have: int, auth: tuple[str, str] | None, size: int | None) -> None:
    """Stream the rest of `url` into `part` (appending to its `have` bytes where the server resumes);
    raises `_Retry` for a transfer that broke off."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    with open_url(url, auth=auth, headers=headers) as resp:
        if have and resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != have:
                raise _Retry(f"server resumed at byte {start}, expected {have}; restarting")
            mode, offset = "ab", have
        else:
            mode, offset = "wb", 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = offset + expected if expected is not None else size
        got = 0
        with (
            part.open(mode) as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name[: -len(".part")],
                disable=None,  # a bar on a TTY only
                leave=False,
            ) as bar,
        ):
            try:
                while block := resp.read(CHUNK):
                    f.write(block)
                    got += len(block)
                    bar.update(len(block))
            except (http.client.HTTPException, OSError) as err:
                raise _Retry(f"connection lost after {offset + got} bytes: {type(err).__name__}") from None
        if expected is not None and got < expected:
            raise _Retry(f"connection closed after {offset + got} of {offset + expected} bytes")


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None
