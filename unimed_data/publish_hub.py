"""`unimed-data publish OUT hf://datasets/ORG/NAME[/folder]`: a build's public files to a Hugging Face
dataset repo through the Hub's commit API (the same files as `publish.py` sends to a store).

The repo must exist, as a bucket must. `SHA256SUMS` goes in the first commit; the other files follow in
commits of at most `BATCH_FILES` files and `BATCH_BYTES` bytes, so a publish that stops loses at most
one batch. A file the repo already holds with the same size and digest is not sent: the Hub reports
the sha256 of an LFS/xet file and the git blob id of a regular one, both computed here too, so no
local state is needed to resume. After each commit the Hub's size and digest of every file in it are
checked. The endpoint is huggingface_hub's `HF_ENDPOINT`, the token `HF_TOKEN` or the saved login;
the token's value never appears in a message.

The Hub reads a repo's card, and the `configs` that tell `load_dataset("ORG/NAME")` where the splits
are, only from the root `README.md`, with paths from the repo root. So into a folder
(`hf://datasets/ORG/NAME/v1`) goes a copy of the card whose configs name `v1/train/...`: not read
there, but right once copied to the root. The build's own README.md is never changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from unimed_data.card import card_in_folder
from unimed_data.download.http import file_digest
from unimed_data.publish import Item, PublishError, Report, checksums, published_items, redact
from unimed_data.tables import atomic_write_text
from unimed_data.workspace import Workspace

# The Hub asks for commits of under 100 files and allows about 128 commits an hour; a batch's bytes
# bound what a stopped publish must send again (xet's deduplication makes even that cheap).
BATCH_FILES = 99
BATCH_BYTES = 10 << 30
PATHS_PER_CALL = 200  # paths asked about in one paths-info request


@dataclass(frozen=True)
class HubRepo:
    repo_id: str  # ORG/NAME
    folder: str  # path inside the repo, "" for its root

    def path(self, name: str) -> str:
        return f"{self.folder}/{name}" if self.folder else name


def is_hub(dest: str) -> bool:
    return dest.startswith("hf://")


def hub_repo(dest: str) -> HubRepo:
    """ORG/NAME and the folder of `hf://datasets/ORG/NAME[/folder]`."""
    parts = dest.removeprefix("hf://").strip("/").split("/")
    if {".", ".."} & set(parts):
        raise PublishError(f"{dest}: `.` and `..` are not allowed in a repo path")
    if len(parts) < 3 or parts[0] != "datasets" or not all(parts[1:3]):
        raise PublishError(f"{dest}: not a dataset repo: write hf://datasets/ORG/NAME[/folder]")
    if "@" in parts[2]:
        raise PublishError(
            f"{dest}: publishing goes to the main branch: leave out @{parts[2].split('@', 1)[1]}"
        )
    return HubRepo(f"{parts[1]}/{parts[2]}", "/".join(part for part in parts[3:] if part))


def publish_hub(
    out: Path, dest: str, *, workers: int = 8, progress: Callable[[int], None] | None = None
) -> Report:
    """Send OUT's public files to the dataset repo of DEST (see the module docstring)."""
    repo = hub_repo(dest)
    api, token = _api(dest)
    local = published_items(out)
    items = [_folder_card(out, repo, item) if item.name == "README.md" else item for item in local]
    sums = _sums_item(out, items)
    size = {item.name: item.size for item in local}  # progress counts the build's bytes
    try:
        _check_repo(api, repo, dest)
        remote = _remote_files(api, repo, [sums, *items])
        waiting = [item for item in [sums, *items] if not _matches(remote.get(repo.path(item.name)), item)]
        if progress is not None:  # what is already there counts as done
            progress(sum(size[item.name] for item in items if item not in waiting))
        for batch in _batches(waiting):
            _commit(api, repo, batch, workers)
            if progress is not None:
                progress(sum(size[item.name] for item in batch if item is not sums))
    except PublishError:
        raise
    except Exception as exc:  # the Hub's answers and the connection's failures
        raise PublishError(f"{dest}: {_hub_reason(exc, repo, token)}") from None
    sent = [item.name for item in waiting if item is not sums]
    return Report(sent, [item.name for item in items if item.name not in sent])


def _api(dest: str):
    try:
        from huggingface_hub import HfApi, get_token
    except ImportError:
        raise PublishError(f"{dest}: needs huggingface_hub: install unimed-data[download]") from None
    token = get_token()
    if token is None:
        raise PublishError(
            f"{dest}: no Hugging Face token: set HF_TOKEN to a write token or run `hf auth login`"
        )
    # HF_ENDPOINT as it is now (huggingface_hub itself reads it once, at import)
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token), token


def _folder_card(out: Path, repo: HubRepo, card: Item) -> Item:
    """The card as it goes to DEST: the build's own at the repo root; in a folder, a copy (under
    OUT/work/publish/) whose configs name the folder's files from the root, as the Hub reads them."""
    if not repo.folder:
        return card
    return _work_item(out, card.name, card_in_folder(card.path.read_text(encoding="utf-8"), repo.folder))


def _sums_item(out: Path, items: list[Item]) -> Item:
    """SHA256SUMS, written whole under OUT/work/publish/ so that it is sent like any other file."""
    return _work_item(out, "SHA256SUMS", checksums(items))


def _work_item(out: Path, name: str, text: str) -> Item:
    """A file made for DEST (not one of the build's), written under OUT/work/publish/ to be sent."""
    path = Workspace(out).work / "publish" / name
    atomic_write_text(path, text)
    return Item(name, path, path.stat().st_size, file_digest(path))


def _check_repo(api, repo: HubRepo, dest: str) -> None:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        api.repo_info(repo.repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        raise PublishError(
            f"{dest}: dataset repo {repo.repo_id} not found at {api.endpoint} (or not visible to this token): "
            f"create it first with `hf repo create {repo.repo_id} --repo-type dataset`"
        ) from None


def _remote_files(api, repo: HubRepo, items: list[Item]) -> dict:
    """The Hub's file records (size, blob id, LFS sha256) of those `items` the repo holds, by path."""
    paths = [repo.path(item.name) for item in items]
    found = {}
    for start in range(0, len(paths), PATHS_PER_CALL):
        chunk = paths[start : start + PATHS_PER_CALL]
        for info in api.get_paths_info(repo.repo_id, chunk, repo_type="dataset"):
            if hasattr(info, "blob_id"):  # a file, not a folder
                found[info.path] = info
    return found


def _matches(remote, item: Item) -> bool:
    """Whether the Hub's record of a file is `item`: same size, and the digest the Hub keeps."""
    if remote is None or remote.size != item.size:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == item.digest
    return remote.blob_id == git_blob_id(item.path)


def git_blob_id(path: Path) -> str:
    """The id git (and so the Hub) gives a regular file: sha1 of `blob <size>\\0` and the bytes."""
    header = f"blob {path.stat().st_size}\0".encode()
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.sha1(header)).hexdigest()


def _batches(items: list[Item]) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        if batch and (len(batch) >= BATCH_FILES or sum(i.size for i in batch) + item.size > BATCH_BYTES):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _commit(api, repo: HubRepo, batch: list[Item], workers: int) -> None:
    """One commit of `batch`, then the Hub's record of each of its files checked against it."""
    from huggingface_hub import CommitOperationAdd

    api.create_commit(
        repo.repo_id,
        [CommitOperationAdd(repo.path(item.name), str(item.path)) for item in batch],
        commit_message=f"unimed-data publish: {len(batch)} file(s)",
        repo_type="dataset",
        num_threads=max(1, workers),
    )
    remote = _remote_files(api, repo, batch)
    for item in batch:
        found = remote.get(repo.path(item.name))
        if not _matches(found, item):
            arrived = "is missing" if found is None else f"holds {found.size} bytes with another digest"
            raise PublishError(
                f"{item.name}: the repo {arrived} after the commit ({item.size} bytes were sent)"
            )


def _hub_reason(exc: Exception, repo: HubRepo, token: str) -> str:
    """One line for the Hub's refusals (their own messages span lines and pages of advice), without
    the token, wherever it came from (HF_TOKEN or the saved login)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return "the Hub refused the token (HF_TOKEN or the saved login): 401 Unauthorized"
    if status == 403:
        return f"the token may not write to {repo.repo_id} (403 Forbidden): use a token with write access"
    text = redact(str(exc)).replace(token, "<HF token>") if token else redact(str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{' '.join(lines[:2]) or 'no message'} ({type(exc).__name__})"
