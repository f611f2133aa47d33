"""Per-node figures of the tasks a build ran on a cluster, kept in the work folder until stats.json
takes them.

One file per executor `map` (one stage on one dataset, or on one split) in OUT/work/executor/, so a
stage run alone as its own command, or skipped on a rerun, still has its figures in the stats.json
that the shard stage writes later. A local map removes its file: a local build's stats.json holds
nothing that differs between machines or runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unimed_data.tables import atomic_write_text


def figures_dir(work: Path) -> Path:
    return work / "executor"


@dataclass
class Figures:
    """One map's tasks, seconds and lost attempts per node (a node id keys it: nodes may share an IP)."""

    kind: str
    nodes: dict[str, dict] = field(default_factory=dict)
    retries: int = 0  # attempts that died with their worker or node and were submitted again
    crashed: int = 0  # tasks that still died after every retry (their result came from on_crash)

    def _node(self, node: str, ip: str) -> dict:
        return self.nodes.setdefault(node, {"ip": ip, "tasks": 0, "seconds": 0.0, "died": 0})

    def ran(self, node: str, ip: str, seconds: float) -> None:
        """A task that finished on `node`."""
        entry = self._node(node, ip)
        entry["tasks"] += 1
        entry["seconds"] += seconds

    def died(self, node: str, ip: str) -> None:
        """An attempt whose worker process (or the whole node) died on `node`."""
        self._node(node, ip)["died"] += 1


def _file(folder: Path, desc: str) -> Path:
    return folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', desc)}.json"


def save(folder: Path, desc: str, figures: Figures) -> None:
    atomic_write_text(_file(folder, desc), json.dumps({"desc": desc, **asdict(figures)}, sort_keys=True))


def forget(folder: Path, desc: str) -> None:
    """The map `desc` ran again without figures (locally): the ones of an earlier run are stale."""
    _file(folder, desc).unlink(missing_ok=True)


def collect(folder: Path) -> dict | None:
    """Every kept map's figures summed per stage (the first word of a map's `desc`), for stats.json;
    None when no stage ran on a cluster."""
    stages: dict[str, dict] = {}
    kinds = set()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        kept = json.loads(path.read_text())
        kinds.add(kept["kind"])
        stage = stages.setdefault(kept["desc"].split()[0], {"nodes": {}, "retries": 0, "crashed": 0})
        stage["retries"] += kept["retries"]
        stage["crashed"] += kept["crashed"]
        for node, figures in kept["nodes"].items():
            total = stage["nodes"].setdefault(
                node, {"ip": figures["ip"], "tasks": 0, "seconds": 0.0, "died": 0}
            )
            for name in ("tasks", "seconds", "died"):
                total[name] += figures[name]
    for stage in stages.values():
        for figures in stage["nodes"].values():
            figures["seconds"] = round(figures["seconds"], 3)
    return {"kind": "+".join(sorted(kinds)), "stages": stages} if stages else None
