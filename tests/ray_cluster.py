"""A real two-node Ray cluster on this machine's loopback, for the Ray executor's tests.

Both nodes are started with `ray start` (one CPU each, their own temporary folders), each in a
session of its own, and stopped by killing exactly the processes of those two sessions: `ray stop`
would stop every Ray on the machine, other users' included.

Every node's workers import `tests/ray_hooks/sitecustomize.py` (on their PYTHONPATH), through which
a test makes one chosen task announce its process and wait, so it can be killed mid-task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.conftest import free_port

HOOKS = Path(__file__).resolve().parent / "ray_hooks"
RAY = str(Path(sys.executable).parent / "ray")


class RayCluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.hook = folder / "hook"  # hook.json, pid, released: see ray_hooks/sitecustomize.py
        self.hook.mkdir(parents=True)
        self.address = f"127.0.0.1:{free_port()}"
        self.sessions: list[int] = []

    @property
    def env(self) -> dict[str, str]:
        """The environment of the cluster's nodes and of the drivers that use it: a home of its own
        keeps a Ray auth token in the user's ~/.ray from reaching this cluster, and bytecode cached
        in the cluster's folder spares each new worker process compiling its imports again."""
        (home := self.folder / "home").mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return {**env, "PYTHONPYCACHEPREFIX": str(self.folder / "pycache")}

    def start(self) -> None:
        env = {
            **self.env,
            "PYTHONPATH": os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")]),
            "UNIMED_TEST_HOOK": str(self.hook),
        }
        port = self.address.rsplit(":", 1)[1]
        common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        self._start(["--head", "--port", port, "--include-dashboard", "false", *common], "head", env)
        self._start(["--address", self.address, *common], "worker", env)

    def _start(self, arguments: list[str], name: str, env: dict) -> None:
        temp = self.folder / name
        temp.mkdir()
        starter = subprocess.Popen(
            [RAY, "start", *arguments, "--temp-dir", str(temp)],
            env=env,
            start_new_session=True,  # the node's daemons and workers stay in this session
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.sessions.append(starter.pid)
        output, _ = starter.communicate(timeout=120)
        if starter.returncode != 0:
            raise RuntimeError(f"ray start {name} failed:\n{output}")

    def stop(self) -> None:
        """SIGKILL every process of the cluster's sessions (and only those)."""
        for _ in range(3):  # a dying raylet may still be starting a worker
            pids = [pid for pid, session in _processes() if session in self.sessions]
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not pids:
                return
            time.sleep(0.2)

    @contextmanager
    def hooked(self, match: str):
        """While inside, the first task whose argument (as text) contains `match` writes its process
        and node to hook/pid and waits until hook/released exists."""
        (self.hook / "hook.json").write_text(json.dumps({"match": match}))
        try:
            yield self.hook
        finally:
            for name in ("hook.json", "pid", "released"):
                (self.hook / name).unlink(missing_ok=True)

    def wait_for_task(self, timeout: float = 60) -> tuple[int, str]:
        """The process id and Ray node id of the task waiting in the hook."""
        deadline = time.monotonic() + timeout
        path = self.hook / "pid"
        while time.monotonic() < deadline:
            try:
                held = json.loads(path.read_text())
                return held["pid"], held["node"]
            except (OSError, ValueError):
                time.sleep(0.05)
        raise TimeoutError("no task reached the hook")

    def release(self) -> None:
        (self.hook / "released").touch()


def _processes():
    """(pid, session id) of every process on the machine."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            yield int(entry.name), int(fields[3])
