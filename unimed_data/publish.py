"""`unimed-data publish OUT DEST`: a finished build's public files to any fsspec store.

What goes: the split folders (shards, `sizes.json`, `index.parquet`), `stats.json`,
`errors.parquet`, the dedupe tables and the dataset card as `README.md`; never `work/` (the patient
salt, intermediate tables). `SHA256SUMS` is written first. A file already at DEST with the size and
digest it has here is not sent again, so a publish that was stopped resumes; what this machine
sent and verified is remembered in `OUT/work/publish/`, so a rerun need not read DEST back. Each
upload is checked for its size afterwards, and for its digest where the store keeps one (S3 keeps
the sha256 sent with a one-part upload, and checks it on receipt). Local destinations get a
temporary name first, object stores only ever show a finished object. The first failed upload
stops the rest.

Credentials come from the environment or the store's own configuration (AWS variables and files,
`AWS_ENDPOINT_URL` for S3-compatible stores, `HF_TOKEN`); messages show DEST without its
`user:password@` and replace the values of the credential variables by their names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from unimed_data.download.http import file_digest, redact_url
from unimed_data.schema import SPLITS
from unimed_data.tables import atomic_write_text
from unimed_data.workspace import Workspace

TOP_FILES = ("stats.json", "errors.parquet", "duplicates.parquet", "contamination.parquet", "README.md")
SPLIT_FILES = ("sizes.json", "index.parquet")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "HF_TOKEN")
# s3fs sends a file below this size in one PUT, whose sha256 S3 checks on receipt and keeps; a
# multipart upload keeps only a digest of digests, so larger files are checked by size.
S3_ONE_PART = 50 << 20


class PublishError(RuntimeError):
    """A publish that cannot go on; the message names the file or destination and the reason."""


@dataclass(frozen=True)
class Item:
    name: str  # path under OUT and under DEST, with `/`
    path: Path
    size: int
    digest: str


@dataclass
class Report:
    sent: list[str]
    kept: list[str]  # already at DEST as they are here


def published_files(out: Path) -> list[Path]:
    """The files a build publishes, in a fixed order."""
    ws = Workspace(out)
    if not ws.stats.exists():
        raise PublishError(f"{out}: no stats.json: not a finished build (run `unimed-data build` first)")
    paths = [ws.out / name for name in TOP_FILES]
    for split in SPLITS:
        folder = ws.split_dir(split)
        if folder.is_dir():
            paths += sorted(folder.glob("*.tar")) + [folder / name for name in SPLIT_FILES]
    return [path for path in paths if path.exists()]


def published_items(out: Path) -> list[Item]:
    """`published_files` with their names under DEST, sizes and digests."""
    items = []
    for path in published_files(out):
        try:
            items.append(Item(path.relative_to(out).as_posix(), path, path.stat().st_size, file_digest(path)))
        except OSError as exc:
            raise PublishError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return items


def checksums(items: list[Item]) -> str:
    return "".join(f"{item.digest}  {item.name}\n" for item in items)


def destination(dest: str, out: Path):
    """The store and root folder of DEST; DEST inside OUT is refused (a rerun would publish it)."""
    try:
        fs, root = fsspec.core.url_to_fs(dest, skip_instance_cache=True)  # the environment as it is now
    except Exception as exc:  # an unknown scheme, a missing package, a server refusing to connect
        raise PublishError(f"{redact_url(dest)}: {_reason(exc)}") from None
    if isinstance(fs, LocalFileSystem):
        target = Path(root).resolve()
        if target == out or out in target.parents:
            raise PublishError(f"{dest}: lies inside the build {out}; publish to a folder outside it")
    return fs, root.rstrip("/")


def publish(
    out: Path,
    dest: str,
    *,
    workers: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Send OUT's public files to DEST (see the module docstring); returns what was sent and kept."""
    out = out.resolve()
    from unimed_data.publish_hub import is_hub, publish_hub  # publish_hub builds on this module

    if is_hub(dest):  # a Hugging Face repo: commits through the Hub's API
        return publish_hub(out, dest, workers=workers, progress=progress)
    fs, root = destination(dest, out)
    items = published_items(out)
    state = _State(Workspace(out).work / "publish" / f"{hashlib.sha256(dest.encode()).hexdigest()[:16]}.json")
    progress = progress or (lambda size: None)
    try:
        _check_container(fs, root, redact_url(dest))
        sums = checksums(items).encode()
        _whole(fs, f"{root}/SHA256SUMS", lambda target: fs.pipe_file(target, sums))
        waiting = [item for item in items if not _already_there(fs, root, item, state)]
        kept = [item for item in items if item not in waiting]
        progress(sum(item.size for item in kept))
        _send_all(fs, root, waiting, workers, state, progress)
    except PublishError:
        raise
    except Exception as exc:  # the store's own errors: missing bucket, access denied, no credentials
        raise PublishError(f"{redact_url(dest)}: {_reason(exc, fs)}") from None
    return Report([item.name for item in waiting], [item.name for item in kept])


def _send_all(fs, root: str, items: list[Item], workers: int, state: _State, progress) -> None:
    """Upload in parallel; the first failure cancels the uploads not yet started and is raised."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_send, fs, root, item) for item in items]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for waiting in pending:
                        waiting.cancel()
                    raise future.exception()
                state.done(future.result())
                progress(future.result().size)


def _check_container(fs, root: str, dest: str) -> None:
    """A local folder is made; an object store's bucket must exist (creating one is not ours to do)."""
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(root, exist_ok=True)
        return
    if not _protocols(fs) & {"s3", "s3a", "gs", "gcs"}:
        return
    bucket = root.split("/")[0]
    try:  # not `exists`, which answers False for a bucket the credentials may not see
        fs.info(bucket)
    except FileNotFoundError:
        raise PublishError(f"{dest}: bucket {bucket} not found (create it first)") from None
    except PermissionError as exc:
        raise PublishError(f"{dest}: bucket {bucket}: {_reason(exc)}") from None


def _already_there(fs, root: str, item: Item, state: _State) -> bool:
    """Whether DEST holds the file as it is here: its size, and its digest (remembered from this
    machine's verified upload, else read back)."""
    remote = f"{root}/{item.name}"
    fs.invalidate_cache(remote)
    try:
        size = fs.info(remote)["size"]
    except FileNotFoundError:
        return False
    if size != item.size:
        return False
    if state.sent.get(item.name) == item.digest:
        return True
    with fs.open(remote, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest() == item.digest


def _send(fs, root: str, item: Item) -> Item:
    remote = f"{root}/{item.name}"
    one_part_s3 = _is_s3(fs) and item.size < S3_ONE_PART
    options = {"ChecksumAlgorithm": "SHA256"} if one_part_s3 else {}
    _whole(fs, remote, lambda target: fs.put_file(str(item.path), target, **options))
    fs.invalidate_cache(remote)
    size = fs.info(remote)["size"]
    if size != item.size:
        raise PublishError(f"{item.name}: {size} bytes arrived at the destination, {item.size} were sent")
    kept = _s3_sha256(fs, remote) if one_part_s3 else None
    if kept is not None and kept != item.digest:
        raise PublishError(f"{item.name}: the destination holds sha256 {kept}, {item.digest} was sent")
    return item


def _is_s3(fs) -> bool:
    return bool(_protocols(fs) & {"s3", "s3a"})


def _protocols(fs) -> set[str]:
    """An fsspec filesystem's protocol names (one string, or a tuple of aliases)."""
    return {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)


def _s3_sha256(fs, remote: str) -> str | None:
    """The sha256 S3 keeps for an object sent in one part with that checksum (None if it has none)."""
    bucket, key, _ = fs.split_path(remote)
    head = fs.call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    value = head.get("ChecksumSHA256")
    return base64.b64decode(value).hex() if value and "-" not in value else None


def _whole(fs, remote: str, write: Callable[[str], None]) -> None:
    """`write(target)` so that `remote` is only ever seen whole: on a local disk under a temporary
    name, then renamed; an object store shows an object only once its upload is complete."""
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(fs._parent(remote), exist_ok=True)
        write(f"{remote}.partial")
        fs.mv(f"{remote}.partial", remote)
    else:
        write(remote)


class _State:
    """What this machine sent to one DEST and saw arrive whole: name -> digest."""

    def __init__(self, path: Path):
        self.path = path
        try:  # only a shortcut: without it, DEST's copies are read back and hashed
            self.sent: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.sent = {}

    def done(self, item: Item) -> None:
        self.sent[item.name] = item.digest
        try:
            atomic_write_text(self.path, json.dumps(self.sent, indent=1, sort_keys=True))
        except OSError as exc:
            raise PublishError(f"{self.path}: cannot record what was sent ({exc.strerror or exc})") from None


def _reason(exc: Exception, fs=None) -> str:
    kind = type(exc).__name__
    text = redact(str(exc)) or kind
    if kind in ("NoCredentialsError", "PartialCredentialsError"):
        return f"no credentials for the store: set them in the environment (e.g. AWS_ACCESS_KEY_ID) ({text})"
    if isinstance(exc, PermissionError) and isinstance(fs, LocalFileSystem):
        return f"this user may not write there ({text})"
    if isinstance(exc, PermissionError):
        return f"access refused ({text}): check the credentials in the environment or the store's config and what they may write"
    return text if kind in text else f"{text} ({kind})"


def redact(text: str) -> str:
    """`text` with the value of every credential variable replaced."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, f"<{name}>")
    return text
