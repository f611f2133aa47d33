"""On-disk caption cache: a rerun, or a run after a crash, pays for nothing already answered.

SQLite in WAL mode, so concurrent readers and one writer (several stages or processes) are safe
and every answer is durable as soon as it is stored. Keys are digests of everything that decides
an answer: backend, model, the rendered prompt, sampling and validation parameters. Batch jobs in
flight are remembered too, so a restarted run polls the batch it already paid for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path


def cache_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def scratch_copy(path: Path, folder: Path) -> Path:
    """A copy of the cache file `path` (and its WAL) in `folder`, for a dry run that must write
    nothing: even reading a WAL database touches files beside it. Returns the copy's path, which
    does not exist when `path` does not."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in (path, path.with_name(f"{path.name}-wal")):
        if part.exists():
            shutil.copy2(part, folder / part.name)
    return folder / path.name


class CaptionCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, captions TEXT NOT NULL,"
            " prompt_tokens INTEGER, completion_tokens INTEGER, stored REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batches (request_set TEXT PRIMARY KEY, batch_id TEXT NOT NULL, stored REAL)"
        )
        self._db.commit()

    def get(self, key: str) -> list[str] | None:
        row = self._db.execute("SELECT captions FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, captions: list[str], prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                (
                    key,
                    json.dumps(captions, ensure_ascii=False),
                    prompt_tokens,
                    completion_tokens,
                    time.time(),
                ),
            )

    def batch_for(self, request_set: str) -> str | None:
        row = self._db.execute(
            "SELECT batch_id FROM batches WHERE request_set = ?", (request_set,)
        ).fetchone()
        return row[0] if row else None

    def remember_batch(self, request_set: str, batch_id: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?)", (request_set, batch_id, time.time())
            )

    def forget_batch(self, request_set: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM batches WHERE request_set = ?", (request_set,))

    def close(self) -> None:
        self._db.close()
