"""What `convert.jpeg_optimize` costs and saves: convert_file with and without optimal Huffman
tables on the throughput bench's inputs (every image re-encoded), one process, alternating the
two settings image by image so a busy machine slows both alike. Prints, asserts nothing.

    uv run python -m bench.jpeg_optimize_bench --count 40
"""

import argparse
import tempfile
import time
from pathlib import Path

from bench.throughput_bench import KINDS, make_inputs
from unimed_data.imaging import ConvertOptions, convert_file


def measure(files: list[Path]) -> dict[bool, tuple[float, int]]:
    """Seconds and output bytes per setting over `files`."""
    totals = {False: [0.0, 0], True: [0.0, 0]}
    for path in files:
        for optimize in (False, True):
            options = ConvertOptions(max_side=512, jpeg_quality=90, reencode="always", jpeg_optimize=optimize)
            start = time.perf_counter()
            size = len(convert_file(path, options).jpeg)
            totals[optimize][0] += time.perf_counter() - start
            totals[optimize][1] += size
    return {k: (v[0], v[1]) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="images per kind (default: 40)")
    parser.add_argument("--keep", type=Path, help="input folder to reuse (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = args.keep or Path(temp)
        print(f"{'input':28} {'ms/img off':>10} {'ms/img on':>10} {'time on/off':>11} {'bytes on/off':>12}")
        for kind, spec in KINDS.items():
            files = make_inputs(kind, folder, args.count)
            figures = measure(files)
            (t_off, b_off), (t_on, b_on) = figures[False], figures[True]
            n = len(files)
            print(
                f"{spec.label:28} {1e3 * t_off / n:10.2f} {1e3 * t_on / n:10.2f} "
                f"{t_on / t_off:11.2f} {b_on / b_off:12.3f}"
            )


if __name__ == "__main__":
    main()
