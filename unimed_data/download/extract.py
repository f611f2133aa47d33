"""Safe, resumable unpacking of zip and tar (plain, gz, bz2, xz) archives.

`extract_archive(archive, target)` first checks every member and refuses the whole archive,
writing nothing, if any member has an absolute path, a `..` component, a backslash or NUL in its
name, or is a link (tar symlink/hardlink, zip entry with symlink mode), a device, a fifo or any
other special file; or if the declared sizes add up to more than `max_total_bytes`, or declare more
than `max_ratio` bytes out per archive byte (per zip member too; only past `ratio_floor_bytes`).
It then streams members into `<target>/.<archive name>.extracting/`, counting the bytes actually
written against the same limits (and never more than a member declared), moves the result into
`target`, and writes the marker `<target>/.<archive name>.extracted` (JSON). A rerun that finds the
marker does nothing; an interrupted run leaves only the staging folder, which the next run clears.
Errors raise `ExtractError` naming the archive and the offending member.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from unimed_data.download.http import DownloadError
from unimed_data.tables import atomic_write_text

MAX_TOTAL_BYTES = 200 * 1024**3
MAX_RATIO = 200.0
RATIO_FLOOR_BYTES = 64 * 1024**2
_CHUNK = 1 << 20

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ExtractError(DownloadError):
    """An archive that is refused or cannot be unpacked; the message names archive and member."""


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def marker_path(archive: Path, target: Path) -> Path:
    return target / f".{archive.name}.extracted"


def safe_relpath(name: str) -> PurePosixPath | None:
    """The member name as a relative path, or None if it could escape the target."""
    if not name or "\x00" in name or "\\" in name:
        return None
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


class _Member:
    __slots__ = ("handle", "is_dir", "packed", "path", "size")

    def __init__(self, path: PurePosixPath, is_dir: bool, size: int, packed: int | None, handle):
        self.path, self.is_dir, self.size, self.packed, self.handle = path, is_dir, size, packed, handle


def extract_archive(
    archive: Path,
    target: Path,
    *,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
    ratio_floor_bytes: int = RATIO_FLOOR_BYTES,
) -> list[Path]:
    """Unpack `archive` into `target`; returns the top-level paths it placed ([] if already done)."""
    archive, target = Path(archive), Path(target)
    marker = marker_path(archive, target)
    if marker.is_file():
        return []
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".{archive.name}.extracting"
    if staging.exists():
        shutil.rmtree(staging)
    limits = (max_total_bytes, max_ratio, ratio_floor_bytes)
    name = archive.name
    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = _check(archive, _zip_members(archive, zf), *limits)
                _write_all(archive, staging, members, lambda m: zf.open(m.handle), *limits)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = _check(archive, _tar_members(archive, tf), *limits)
                _write_all(archive, staging, members, lambda m: tf.extractfile(m.handle), *limits)
    except ExtractError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExtractError(f"{archive}: cannot unpack: {type(err).__name__}: {err}") from None
    placed = _move_into(archive, staging, target)
    atomic_write_text(
        marker, json.dumps({"archive": archive.name, "members": len(members), "top": sorted(placed)})
    )
    return [target / p for p in sorted(placed)]


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    out = []
    for info in zf.infolist():
        rel = safe_relpath(info.filename)
        if rel is None:
            raise ExtractError(f"{archive}: member {info.filename!r}: unsafe path (absolute or '..')")
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise ExtractError(f"{archive}: member {info.filename!r}: symbolic links are refused")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ExtractError(f"{archive}: member {info.filename!r}: special file refused")
        if info.flag_bits & 0x1:
            raise ExtractError(f"{archive}: member {info.filename!r}: encrypted members are not supported")
        out.append(_Member(rel, info.is_dir(), info.file_size, info.compress_size, info))
    return out


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[_Member]:
    out = []
    for info in tf.getmembers():
        rel = safe_relpath(info.name)
        if rel is None:
            raise ExtractError(f"{archive}: member {info.name!r}: unsafe path (absolute or '..')")
        if info.issym() or info.islnk():
            raise ExtractError(f"{archive}: member {info.name!r}: links are refused (-> {info.linkname!r})")
        if not (info.isreg() or info.isdir()):
            raise ExtractError(f"{archive}: member {info.name!r}: special file (device/fifo) refused")
        out.append(_Member(rel, info.isdir(), info.size if info.isreg() else 0, None, info))
    return out


def _check(
    archive: Path, members: list[_Member], max_total: int, max_ratio: float, floor: int
) -> list[_Member]:
    total = 0
    for m in members:
        total += m.size
        if total > max_total:
            raise ExtractError(
                f"{archive}: member {str(m.path)!r}: declared sizes exceed the limit of {max_total} bytes"
            )
        if m.packed is not None and m.size > floor and m.size > max_ratio * max(m.packed, 1):
            raise ExtractError(
                f"{archive}: member {str(m.path)!r}: compression ratio {m.size / max(m.packed, 1):.0f}:1 "
                f"exceeds {max_ratio:.0f}:1 (possible archive bomb)"
            )
    packed = archive.stat().st_size
    if total > floor and total > max_ratio * max(packed, 1):
        raise ExtractError(
            f"{archive}: declared content of {total} bytes is {total / max(packed, 1):.0f}x the archive "
            f"size, over {max_ratio:.0f}x (possible archive bomb)"
        )
    seen: dict[PurePosixPath, bool] = {}
    for m in members:
        for parent in m.path.parents:
            if seen.get(parent) is False:
                raise ExtractError(f"{archive}: member {str(m.path)!r}: a parent is also a file member")
        if m.path in seen and seen[m.path] != m.is_dir:
            raise ExtractError(f"{archive}: member {str(m.path)!r}: both a file and a folder")
        seen[m.path] = m.is_dir
    return members


def _write_all(archive, staging: Path, members, open_member, max_total: int, max_ratio: float, floor: int):
    staging.mkdir(parents=True)
    packed_total = max(archive.stat().st_size, 1)
    written_total = 0
    for m in members:
        out = staging.joinpath(*m.path.parts)
        if m.is_dir:
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        src = open_member(m)
        if src is None:
            raise ExtractError(f"{archive}: member {str(m.path)!r}: cannot be read")
        with src, open(out, "wb") as dst:
            while block := src.read(_CHUNK):
                written += len(block)
                written_total += len(block)
                if written > m.size:
                    raise ExtractError(
                        f"{archive}: member {str(m.path)!r}: more bytes than declared ({m.size})"
                    )
                if written_total > max_total:
                    raise ExtractError(
                        f"{archive}: member {str(m.path)!r}: extracted bytes exceed the limit of {max_total}"
                    )
                ratio_hit = (
                    m.packed is not None and written > floor and written > max_ratio * max(m.packed, 1)
                )
                if ratio_hit or (written_total > floor and written_total > max_ratio * packed_total):
                    raise ExtractError(
                        f"{archive}: member {str(m.path)!r}: extracted bytes exceed a {max_ratio:.0f}:1 "
                        "compression ratio (possible archive bomb)"
                    )
                dst.write(block)


def _move_into(archive: Path, staging: Path, target: Path) -> list[str]:
    placed = []
    for child in sorted(staging.iterdir()):
        _merge(archive, child, target / child.name)
        placed.append(child.name)
    shutil.rmtree(staging)
    return placed


def _merge(archive: Path, src: Path, dst: Path) -> None:
    if dst.is_symlink():
        raise ExtractError(f"{archive}: {dst} is a symbolic link in the target; refusing to write through it")
    if src.is_dir() and dst.is_dir():
        for child in sorted(src.iterdir()):
            _merge(archive, child, dst / child.name)
        return
    if dst.is_dir():
        shutil.rmtree(dst)
    elif src.is_dir() and dst.exists():
        dst.unlink()
    os.replace(src, dst)
