"""Output folders the tools own: a marker file says which entries of a folder we wrote.

Every command that writes a folder (`build` and its stages, `evalset`, the trainer, `export`, the
evaluator) claims it first. A new or empty folder is ours. A folder with our marker of the same
kind is a previous run of ours and is reused (resume, rerun). Anything else is refused, unless
`force` is given, and even then no entry we did not write is ever replaced: the marker lists the
top-level names this tool created, and a planned name that already exists without being listed is
someone else's file. A claim lists every name the run may write; `settle_output`, once the run is
done, keeps only those it did write, so a name that appears later is the user's, not ours.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

MARKER = ".unimed-data.json"


class OutputError(Exception):
    """The output folder is not ours to write."""


def claim_output(out: Path, kind: str, writes: Iterable[str], *, force: bool = False) -> None:
    """Make `out` ours for a run of `kind` that writes the top-level entries `writes`.

    Raises OutputError naming the folder and the reason before anything is written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    marker = out / MARKER
    owned: set[str] = set()
    if marker.is_file():
        recorded = _read_marker(marker)
        if recorded.get("kind") != kind:
            raise OutputError(
                f"{out}: holds the output of `{recorded.get('kind')}`, not of `{kind}`; choose another folder"
            )
        owned = set(recorded.get("owned", []))
    elif out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError(
            f"{out}: not empty and not an output of `{kind}` (no {MARKER}); choose a new or empty "
            "folder, or pass --force to write beside its files (which are never replaced)"
        )
    planned = set(writes)
    theirs = sorted(name for name in planned - owned if _exists(out / name))
    if theirs:
        raise OutputError(
            f"{out}: would replace {', '.join(theirs)}, which this tool did not write; "
            "move them away or choose another folder"
        )
    try:
        _write_marker(out, kind, owned | planned)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write here ({exc.strerror or exc})") from exc


def settle_output(out: Path) -> None:
    """After a run: the marker keeps only the names that exist, the ones this tool wrote."""
    recorded = _read_marker(Path(out) / MARKER)
    _write_marker(
        Path(out), recorded["kind"], {n for n in recorded.get("owned", []) if _exists(Path(out) / n)}
    )


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _write_marker(out: Path, kind: str, owned: set[str]) -> None:
    recorded = {"tool": "unimed-data", "kind": kind, "owned": sorted(owned)}
    text = json.dumps(recorded, indent=2) + "\n"
    marker = out / MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8") == text:
        return  # unchanged: a rerun leaves the folder's files untouched
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, marker)


def _read_marker(marker: Path) -> dict:
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(
            f"{marker}: unreadable marker ({exc}); remove it only if this folder is ours"
        ) from exc
    if not isinstance(recorded, dict):
        raise OutputError(f"{marker}: not a unimed-data marker")
    return recorded
