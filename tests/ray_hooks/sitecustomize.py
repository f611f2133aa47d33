"""Test-only: makes one chosen task of a Ray worker announce its process and wait, so a test can
kill it mid-task. On the PYTHONPATH of the test cluster's nodes only (see tests/ray_cluster.py).

The folder UNIMED_TEST_HOOK names may hold hook.json, {"match": TEXT}: the first call of a wrapped
function whose first argument (as text) contains TEXT writes {"pid": its process id, "node": its Ray node
id} to `pid` there and waits until `released` appears (or hook.json goes). Wrapped: image decoding (convert) and shard
writing, patched as their modules are imported.
"""

import importlib.abc
import importlib.machinery
import json
import os
import sys
import time
from pathlib import Path

WRAPPED = {"unimed_data.imaging": "convert_file", "unimed_data.stages.shard": "write_shard"}
FOLDER = Path(os.environ.get("UNIMED_TEST_HOOK", "/nonexistent"))


def _hold_if_chosen(argument) -> None:
    try:
        match = json.loads((FOLDER / "hook.json").read_text())["match"]
    except (OSError, ValueError):
        return
    if match not in str(argument) or (FOLDER / "released").exists():
        return
    import ray  # a worker's: it runs a task

    node = ray.get_runtime_context().get_node_id()
    (FOLDER / "pid").write_text(json.dumps({"pid": os.getpid(), "node": node}))
    while (FOLDER / "hook.json").exists() and not (FOLDER / "released").exists():
        time.sleep(0.05)


def _wrap(function):
    def held(first, *rest, **named):
        _hold_if_chosen(first)
        return function(first, *rest, **named)

    return held


class _Loader(importlib.abc.Loader):
    def __init__(self, loader, attribute):
        self.loader, self.attribute = loader, attribute

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        setattr(module, self.attribute, _wrap(getattr(module, self.attribute)))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in WRAPPED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _Loader(spec.loader, WRAPPED[name])
        return spec


if FOLDER.is_dir():
    sys.meta_path.insert(0, _Finder())
