"""Stage tasks on a Ray cluster: the local pool's ordered `map`, for builds past one machine.

Ray is imported here only, and only when a build asks for it, so `unimed-data` runs without the
`cluster` extra. Tasks are pickled by reference to module-level functions, so every node must run
the driver's environment (the same venv on a shared filesystem, or the same image) and mount OUT at
the same path; nothing is uploaded. At most `2 x` the cluster's CPUs tasks are in flight: enough to
keep every CPU busy while results are collected, while the object store only ever holds a window
of tasks and results, never a whole dataset.

A task whose worker process or node dies is submitted again by this executor (Ray's own retries
are off, so each retry is seen and counted) up to `max_retries` times; then `on_crash(task)` gives
its result. Each finished task reports the node that ran it and its seconds; each attempt also
notes its node in Ray's key-value store as it starts (one small write), so a dead attempt is
counted against the node it died on. The figures of each map are kept in the build's work folder
for stats.json (see `executor_figures`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from tqdm import tqdm

from unimed_data.executor_figures import Figures, forget, save

MISSING = (
    "--executor ray needs Ray, which is not installed: `uv sync --extra cluster` "
    "(or `pip install 'unimed-data[cluster]'`)"
)
# The failures a retry can mend: the worker process or its node died, or a result was lost with it.
RETRYABLE = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError")
NAMESPACE = "unimed-data"  # of the attempts' notes in Ray's key-value store, removed after each map


class ExecutorError(RuntimeError):
    """The Ray executor cannot be used here; its message is the one error line."""


def _ray():
    """The `ray` module, imported here only. Unless told otherwise, Ray must not start each worker
    through `uv run` (its default when the driver was so started): the cluster's own environment is
    the build's (see the module docstring)."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # read as Ray is imported
    import ray

    return ray


def _check_reachable(address: str | None) -> None:
    """Fail at once when no cluster answers at HOST:PORT: Ray itself would keep retrying for minutes."""
    given = "--ray-address" if address else "RAY_ADDRESS"
    target = address or os.environ.get("RAY_ADDRESS") or ""
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():  # auto, or none: Ray finds (or starts) the cluster itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ExecutorError(
            f"{given} {target}: no Ray cluster answers there ({exc.strerror or exc}); start one "
            "with `ray start --head` from this environment, or check the address"
        ) from None


def _attempt(fn, task, tag: str):
    """One try of fn(task) on a worker: its result, the node that ran it and the seconds it took.

    The node is also noted under `tag` in the cluster's key-value store before the task starts, so
    the driver can tell which node an attempt died on.
    """
    from ray.experimental.internal_kv import _internal_kv_put

    node = _ray().get_runtime_context().get_node_id()
    _internal_kv_put(tag, node, namespace=NAMESPACE)
    start = time.perf_counter()
    result = fn(task)
    return result, node, time.perf_counter() - start


class RayExecutor:
    """Tasks on the Ray cluster at `address` (`HOST:PORT`, `auto`, or None: RAY_ADDRESS, else a
    Ray started on this machine for the build). Connects on the first map (a build whose stages
    are all done reaches no cluster); `close` disconnects."""

    def __init__(self, address: str | None, figures: Path | None = None, *, max_retries: int = 3):
        if importlib.util.find_spec("ray") is None:
            raise ExecutorError(MISSING)
        _check_reachable(address)  # before any stage runs, not after an hour of ingest
        self.address, self.figures, self.max_retries = address, figures, max_retries
        self._remote = None
        self._retryable: tuple[type[BaseException], ...] = ()
        self._window = 0
        self._ips: dict[str, str] = {}

    def _connect(self):
        if self._remote is None:
            ray = _ray()
            ray.init(address=self.address, log_to_driver=False)
            self._window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
            # SPREAD: tasks go to every node, not first to the driver's (which short tasks would fill).
            self._remote = ray.remote(max_retries=0, scheduling_strategy="SPREAD")(_attempt)
            self._retryable = tuple(getattr(ray.exceptions, name) for name in RETRYABLE)
        return self._remote

    def map(self, fn, tasks, *, desc, total=None, on_crash=None):
        source = iter(tasks)
        if (first := next(source, _END)) is _END:  # nothing to run: no cluster to reach (or start)
            if self.figures is not None:
                forget(self.figures, desc)
            return
        run = _Run(self._connect(), fn, f"{uuid.uuid4().hex}/", Figures("ray"))
        pending: deque = deque()  # (task, ref, tag), in task order
        source = chain([first], source)
        bar = tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, disable=None)
        try:
            while True:
                while len(pending) < self._window and (task := next(source, _END)) is not _END:
                    pending.append((task, *run.submit(task)))
                if not pending:
                    break
                yield self._result(run, *pending.popleft(), on_crash)
                bar.update()
        finally:
            bar.close()
            for _, ref, _ in pending:  # the map was abandoned (an error downstream): stop its tasks
                _ray().cancel(ref)
            run.forget_notes()
        if self.figures is not None:
            save(self.figures, desc, run.figures)

    def _result(self, run: _Run, task, ref, tag: str, on_crash):
        """The task's result, submitting it again while its worker or node dies."""
        ray = _ray()
        retries = 0
        while True:
            try:
                result, node, seconds = ray.get(ref)
            except self._retryable as exc:
                node = run.node_of(tag)
                run.figures.died(node, self._address(node))
                if retries == self.max_retries:
                    run.figures.crashed += 1
                    if on_crash is None:
                        raise ExecutorError(
                            f"a task's worker died on all {retries + 1} attempts ({exc}); "
                            "see the Ray logs of its nodes"
                        ) from exc
                    return on_crash(task)
                retries += 1
                run.figures.retries += 1
                ref, tag = run.submit(task)
                continue
            run.figures.ran(node, self._address(node), seconds)
            return result

    def _address(self, node: str) -> str:
        """The IP of a node, by its id (nodes may join during the build)."""
        if node not in self._ips:
            self._ips.update({n["NodeID"]: n["NodeManagerAddress"] for n in _ray().nodes()})
        return self._ips.get(node, "")

    def close(self) -> None:
        if self._remote is not None:
            _ray().shutdown()
            self._remote = None


@dataclass
class _Run:
    """One map's submissions: each attempt gets a tag of its own under the map's `prefix`."""

    remote: object
    fn: object
    prefix: str
    figures: Figures
    submitted: int = 0

    def submit(self, task) -> tuple[object, str]:
        tag = f"{self.prefix}{self.submitted}"
        self.submitted += 1
        return self.remote.remote(self.fn, task, tag), tag

    def node_of(self, tag: str) -> str:
        """The node a dead attempt ran on ("unknown" if it died before it could say)."""
        from ray.experimental.internal_kv import _internal_kv_get

        node = _internal_kv_get(tag, namespace=NAMESPACE)
        return node.decode() if node else "unknown"

    def forget_notes(self) -> None:
        from ray.experimental.internal_kv import _internal_kv_del

        _internal_kv_del(self.prefix, del_by_prefix=True, namespace=NAMESPACE)


_END = object()
