"""Peak memory of a whole `unimed-data build` as the input grows (1k vs 10k records by default).

Generates a folder-per-class tree of small greyscale PNGs (copies of a few source images under
new names, so generation is cheap), runs the real CLI in a subprocess, and samples the resident
memory of the main process and of the whole process tree (main + pool workers) with psutil.
Flat memory means the peak barely moves when the record count grows tenfold. Prints; asserts nothing.

    uv run python bench/build_memory_bench.py --sizes 1000 10000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image


def make_tree(root: Path, count: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    templates = []
    for c in range(classes):
        pixels = rng.integers(0, 65535, size=(384, 384), dtype=np.uint16)
        path = root / ".templates" / f"{c}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        templates.append(path)
    for i in range(count):
        folder = root / "tree" / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(templates[i % classes], folder / f"img{i:07d}.png")


def run_build(tree: Path, out: Path, workers: int) -> tuple[float, int, int]:
    """Wall seconds, peak RSS of the main process, peak RSS summed over the process tree."""
    command = [
        sys.executable,
        "-m",
        "unimed_data",
        "build",
        "--from-folder",
        str(tree),
        "--modality",
        "xray",
        "--out",
        str(out),
        "--workers",
        str(workers),
    ]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"}
    )
    main = psutil.Process(process.pid)
    peak_main = peak_tree = 0
    while process.poll() is None:
        try:
            rss_main = main.memory_info().rss
            rss_tree = rss_main + sum(c.memory_info().rss for c in main.children(recursive=True))
        except psutil.Error:
            break
        peak_main, peak_tree = max(peak_main, rss_main), max(peak_tree, rss_tree)
        time.sleep(0.05)
    if process.wait() != 0:
        raise SystemExit(f"build failed: {' '.join(command)}")
    return time.perf_counter() - start, peak_main, peak_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"{'records':>8} {'wall s':>8} {'records/s':>10} {'peak main MiB':>14} {'peak tree MiB':>14}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_tree(root, size)
            wall, peak_main, peak_tree = run_build(root / "tree", root / "out", args.workers)
            mib = 1024 * 1024
            print(
                f"{size:>8} {wall:>8.1f} {size / wall:>10.1f} {peak_main / mib:>14.0f} {peak_tree / mib:>14.0f}"
            )


if __name__ == "__main__":
    main()
