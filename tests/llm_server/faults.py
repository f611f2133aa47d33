"""Which chat completion misbehaves, and how: the fault plans a test hands to the fake server.

Faults apply to chat completions only; `faults=` takes one of:

- `FaultPlan(by_prompt, every=[...])`: `by_prompt` maps a substring to a list of `Fault | None`.
  A key counts every chat request in which any *user* message contains it (a follow-up turn that
  keeps the original prompt still counts); its list is applied to the 1st, 2nd, ... such request,
  after which requests are answered normally. `every` is applied to the 1st, 2nd, ... chat request
  overall and wins over `by_prompt` when both give a fault (the key counters advance regardless).
  `None` in a list means "answer normally this time". `plan.exhausted` is True once every scheduled
  entry has been reached.
- a list or tuple: the same as `FaultPlan(every=that_list)`.
- a `collections.deque` or `queue.Queue`: one entry is taken per chat request while any is left.
- a callable `(index, body) -> Fault | None`, where `index` is 0 for the first request with this
  exact last user message, 1 for the second, and so on.

`Fault` kinds: `Fault.rate_limit(retry_after=0.2)` (429 + `Retry-After`, omitted when None),
`Fault.server_error(status=500)`, `Fault.stall(seconds)` (sleep, then answer normally if the
server is still running; the client is expected to have timed out), `Fault.drop()` (close the
connection without a response), `Fault.content(text)` (a normal 200 completion carrying `text`).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .prompts import last_user_text, user_texts

FaultKind = Literal["rate_limit", "server_error", "stall", "drop", "content"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour of a chat completion; build it with the class methods."""

    kind: FaultKind
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0
    text: str | None = None

    @classmethod
    def rate_limit(cls, retry_after: float | None = 0.2) -> Fault:
        return cls("rate_limit", status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        if status < 500:
            raise ValueError("server_error wants a 5xx status")
        return cls("server_error", status=status)

    @classmethod
    def stall(cls, seconds: float = 5.0) -> Fault:
        return cls("stall", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop", status=0)

    @classmethod
    def content(cls, text: str) -> Fault:
        return cls("content", text=text)


FaultEntry = Fault | None


class FaultPlan:
    """Faults by prompt substring (1st, 2nd, ... request carrying it) and for the first requests overall."""

    def __init__(
        self, by_prompt: Mapping[str, Sequence[FaultEntry]] | None = None, *, every: Sequence[FaultEntry] = ()
    ):
        self.by_prompt = {key: list(entries) for key, entries in (by_prompt or {}).items()}
        self.every = list(every)
        self.seen: collections.Counter[str] = collections.Counter()
        self.total = 0
        self._lock = threading.Lock()

    def pick(self, body: dict) -> Fault | None:
        text = "\n".join(user_texts(body))
        with self._lock:
            index = self.total
            self.total += 1
            chosen = self.every[index] if index < len(self.every) else None
            for key, entries in self.by_prompt.items():
                if key in text:
                    nth = self.seen[key]
                    self.seen[key] += 1
                    if chosen is None and nth < len(entries):
                        chosen = entries[nth]
            return chosen

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self.total >= len(self.every) and all(
                self.seen[key] >= len(entries) for key, entries in self.by_prompt.items()
            )


Faults = (
    FaultPlan | Sequence[FaultEntry] | collections.deque | queue.Queue | Callable[[int, dict], FaultEntry]
)


class FaultSource:
    """Any accepted `faults=` value behind one `pick(body)`, so the chat endpoint asks one way."""

    def __init__(self, faults: Faults | None):
        self.faults = FaultPlan(every=faults) if isinstance(faults, list | tuple) else faults
        if self.faults is not None and not (
            isinstance(self.faults, FaultPlan | collections.deque | queue.Queue) or callable(self.faults)
        ):
            raise TypeError(f"faults: unsupported type {type(faults).__name__}")
        self._prompt_counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def pick(self, body: dict) -> Fault | None:
        faults = self.faults
        if faults is None:
            return None
        if isinstance(faults, FaultPlan):
            return faults.pick(body)
        if isinstance(faults, collections.deque):
            try:
                return faults.popleft()
            except IndexError:
                return None
        if isinstance(faults, queue.Queue):
            try:
                return faults.get_nowait()
            except queue.Empty:
                return None
        prompt = last_user_text(body)
        with self._lock:
            index = self._prompt_counts[prompt]
            self._prompt_counts[prompt] += 1
        return faults(index, body)
