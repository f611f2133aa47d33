"""`unimed-data publish OUT DEST`: a finished build's public files to any fsspec store.

What goes: the split folders (shards, `sizes.json`, `index.parquet`), `stats.json`,
`errors.parquet`, the dedupe tables and the dataset card as `README.md`; never `work/` (the patient
salt, intermediate tables). `SHA256SUMS` is written first. A file already at DEST with the size and
digest it has here is not sent again, so a publish that was stopped resumes; what this machine
sent and verified is remembered in `OUT/work/publish/`, so a rerun need not read DEST back. Each
upload is checked for its size afterwards. Local destinations get a temporary name first, object
stores only ever show a finished object.

Credentials come from the environment or the store's own configuration (AWS variables and files,
`AWS_ENDPOINT_URL` for S3-compatible stores, `HF_TOKEN`); no message of this module carries one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from unimed_data.schema import SPLITS
from unimed_data.tables import atomic_write_text
from unimed_data.workspace import Workspace

TOP_FILES = ("stats.json", "errors.parquet", "duplicates.parquet", "contamination.parquet", "README.md")
SPLIT_FILES = ("sizes.json", "index.parquet")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "HF_TOKEN")
CHUNK = 1 << 20


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
    return [
        Item(path.relative_to(out).as_posix(), path, path.stat().st_size, sha256(path))
        for path in published_files(out)
    ]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def checksums(items: list[Item]) -> str:
    return "".join(f"{item.digest}  {item.name}\n" for item in items)


def destination(dest: str, out: Path):
    """The store and root folder of DEST; DEST inside OUT is refused (a rerun would publish it)."""
    try:
        fs, root = fsspec.core.url_to_fs(dest, skip_instance_cache=True)  # the environment as it is now
    except (ImportError, ValueError) as exc:
        raise PublishError(f"{dest}: {redact(str(exc))}") from None
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
    if dest.startswith("hf://"):  # a Hugging Face repo: commits through the Hub's API (publish_hub.py)
        from unimed_data.publish_hub import publish_hub

        return publish_hub(out, dest, workers=workers, progress=progress)
    fs, root = destination(dest, out)
    items = published_items(out)
    state = _State(Workspace(out).work / "publish" / f"{hashlib.sha256(dest.encode()).hexdigest()[:16]}.json")
    try:
        _check_container(fs, root, dest)
        sums = checksums(items).encode()
        _whole(fs, f"{root}/SHA256SUMS", lambda target: fs.pipe_file(target, sums))
        waiting = [item for item in items if not _already_there(fs, root, item, state)]
        kept = [item.name for item in items if item not in waiting]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for item in pool.map(lambda item: _send(fs, root, item), waiting):
                state.done(item)
                if progress is not None:
                    progress(item.size)
    except PublishError:
        raise
    except Exception as exc:  # the store's own errors: missing bucket, access denied, no credentials
        raise PublishError(f"{dest}: {_reason(exc)}") from None
    return Report([item.name for item in waiting], kept)


def _check_container(fs, root: str, dest: str) -> None:
    """A local folder is made; an object store's bucket must exist (creating one is not ours to do)."""
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(root, exist_ok=True)
        return
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if not protocols & {"s3", "s3a", "gs", "gcs"}:
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
    digest = hashlib.sha256()
    with fs.open(remote, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest() == item.digest


def _send(fs, root: str, item: Item) -> Item:
    remote = f"{root}/{item.name}"
    _whole(fs, remote, lambda target: fs.put_file(str(item.path), target))
    fs.invalidate_cache(remote)
    size = fs.info(remote)["size"]
    if size != item.size:
        raise PublishError(f"{item.name}: {size} bytes arrived at the destination, {item.size} were sent")
    return item


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
        self.sent: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def done(self, item: Item) -> None:
        self.sent[item.name] = item.digest
        atomic_write_text(self.path, json.dumps(self.sent, indent=1, sort_keys=True))


def _reason(exc: Exception) -> str:
    kind = type(exc).__name__
    text = redact(str(exc)) or kind
    if kind in ("NoCredentialsError", "PartialCredentialsError"):
        return f"no credentials for the store: set them in the environment (e.g. AWS_ACCESS_KEY_ID) ({text})"
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
