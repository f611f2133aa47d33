"""Stage stamps: a stage is skipped when its inputs and options are unchanged since it ran.

A stamp is a JSON file beside a stage's output holding a digest of the input files' sizes and
modification times plus the stage options. Outputs are published atomically before the stamp,
so a stamp never vouches for a partial output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unimed_data.tables import atomic_write_text


def file_states(inputs: list[Path]) -> list[list]:
    """Path, size and modification time of each input (one stat call each)."""
    return [[str(path), (st := path.stat()).st_size, st.st_mtime_ns] for path in inputs]


def fingerprint(inputs: list[Path], options: dict[str, Any]) -> str:
    payload = json.dumps({"inputs": file_states(inputs), "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_stamp(stamp: Path, digest: str, outputs: list[Path]) -> dict[str, Any] | None:
    """The stored summary if the stamp matches `digest` and every output still exists."""
    if not stamp.exists() or not all(p.exists() for p in outputs):
        return None
    stored = json.loads(stamp.read_text())
    return stored["summary"] if stored.get("fingerprint") == digest else None


def write_stamp(stamp: Path, digest: str, summary: dict[str, Any], inputs: list[Path] = ()) -> None:
    """Record a finished stage; `inputs` (the tables it read) let later stages tell it is current."""
    record = {"fingerprint": digest, "summary": summary, "inputs": file_states(list(inputs))}
    atomic_write_text(stamp, json.dumps(record, indent=2, sort_keys=True))


def inputs_unchanged(stamp: Path, inputs: list[Path]) -> bool:
    """Whether the stage that wrote `stamp` ran on `inputs` as they are now."""
    if not stamp.exists() or not all(p.exists() for p in inputs):
        return False
    return json.loads(stamp.read_text()).get("inputs") == file_states(inputs)


@dataclass(frozen=True)
class Stamp:
    """One stage's stamp for one digest of its inputs and options: what every stage does to skip
    work already done, and to record work finished."""

    path: Path
    digest: str

    @classmethod
    def of(cls, path: Path, inputs: list[Path], options: dict[str, Any]) -> Stamp:
        return cls(path, fingerprint(inputs, options))

    def stored(self, outputs: list[Path]) -> dict[str, Any] | None:
        return read_stamp(self.path, self.digest, outputs)

    def write(self, summary: dict[str, Any], inputs: list[Path] = ()) -> None:
        write_stamp(self.path, self.digest, summary, inputs)
