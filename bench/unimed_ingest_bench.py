"""Reading UniMed's caption CSVs: our streaming `unimed_csv` ingest beside the way UniMed's own
scripts read them (`pandas.read_csv` of the whole file, then `ast.literal_eval` per cell).

Writes a RadImageNet-shaped annotation file (image-path list, label list, ten captions per row)
of each size, then runs each reader in its own process and reports rows/s and the process's peak
resident memory. Flat memory means the peak barely moves as the file grows; UniMed's way grows
with it. Prints; asserts nothing.

    uv run python bench/unimed_ingest_bench.py --rows 100000 400000
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAPTION = "Axial CT slice of the abdomen at the level of the kidneys, finding number {} seen here"


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "labels", "captions"])
        for i in range(rows):
            captions = [CAPTION.format(i * 10 + k) for k in range(10)]
            image = [f"radiology_ai/CT/abd/class{i % 50}/img{i:07d}.png"]
            writer.writerow([str(image), str([f"class{i % 50}"]), str(captions)])


def ours(path: Path) -> int:
    from unimed_data.manifest import validate_manifest
    from unimed_data.stages.ingest import ingest_dataset

    manifest = validate_manifest(
        {
            "name": "bench",
            "modality": "ct",
            "license": "bench",
            "root": ".",
            "layout": {"type": "unimed_csv", "csv": path.name},
        },
        "bench",
    )
    with tempfile.TemporaryDirectory() as work:
        return ingest_dataset(manifest, path.parent, Path(work), salt="s", seed=0).records


def unimed_way(path: Path) -> int:
    import ast

    import pandas as pd

    rows = 0
    for row in pd.read_csv(path).values:
        ast.literal_eval(row[0])[0], ast.literal_eval(row[1]), ast.literal_eval(row[2])
        rows += 1
    return rows


def child(reader: str, path: Path) -> None:
    import unimed_data.stages.ingest  # noqa: F401  (imports before the clock, for both readers)

    start = time.perf_counter()
    rows = {"ours": ours, "unimed": unimed_way}[reader](path)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rows} {seconds:.3f} {peak_mib:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 400_000])
    args = parser.parse_args()
    print(f"{'rows':>9} {'reader':<28} {'rows/s':>9} {'peak RSS':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.rows:
            path = Path(folder) / f"radimagenet_{size}.csv"
            write_csv(path, size)
            for reader, label in (("ours", "unimed-data (streaming)"), ("unimed", "pandas + literal_eval")):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", reader, str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                rows, seconds, peak = int(out[0]), float(out[1]), out[2]
                print(f"{size:>9} {label:<28} {rows / seconds:>9.0f} {peak + ' MiB':>9}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
