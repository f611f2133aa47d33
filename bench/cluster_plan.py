"""Wall time and cost of UniMed- and BIOMEDICA-scale builds on 4, 16 and 64 nodes, from bench figures.

Reads the JSON that `bench/throughput_bench.py --json` writes: per-CPU images/s of our convert stage
per input kind, bytes read and written per image, and the stage times of the 5,000-image tree.
A build's wall time is taken as max(CPU-bound, filesystem-bound) + the driver's serial part, and
the table says which of the three is largest ("binds"):
- CPU-bound: images / (convert images/s per CPU x CPUs), assuming linear scaling over CPUs (the
  bench measures a few processes on one machine; a cluster adds scheduling and stragglers).
- filesystem-bound: bytes moved / the shared filesystem's aggregate bandwidth, which does not grow
  with nodes, so it binds first on large clusters. Bytes moved: the sources read once, and the
  output JPEGs three times (written into chunk files, read back by the shard tasks, written into
  shards).
- serial: ingest, caption, dedupe and shard of the 5,000 tree per record (CLI start-up taken off),
  scaled linearly. Shard's tar writing is parallel, so counting it serial is an upper bound.
Input kinds stand in for real sources by size and codec (proxies, not the sources themselves):

UniMed (5,282k; counts per part from recipes/unimed.yaml, i.e. UniMed-CLIP's training config):
  small (xray-jpeg, 390x320 grey JPEG): RadImageNet 1,049k (224 px PNG slices), CheXpert-small
    212k, ROCOv2 61k, PMC-OA subfigures 1,645k                                     = 2,967k
  ~1 MP (xray-png, 1024x1024 PNG): ChestX-ray8 113k, OpenI 7k, LLaVA-Med whole PMC figures
    468k + 265k, Quilt video frames 1,018k                                         = 1,871k
  large (fundus-jpeg, 2124x2056 RGB JPEG): MIMIC-CXR-JPG 270k (~2.5k x 3k grey), FLAIR retinal
    155k, Retina-DEN 13k, MM-Retinal 6k                                            =   444k
BIOMEDICA (24M PMC figure-caption pairs): assumed 70% small subfigures, 30% ~1 MP figures (its
paper gives the count, not a size distribution; this split is our assumption).
The default price, 1.50 USD per node-hour, assumes an on-demand 32-vCPU cloud CPU instance.

    uv run python -m bench.cluster_plan throughput.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MIXES = {
    "UniMed 5.3M": {"xray-jpeg": 2_967_000, "xray-png": 1_871_000, "fundus-jpeg": 444_000},
    "BIOMEDICA 24M": {"xray-jpeg": 16_800_000, "xray-png": 7_200_000},
}
SERIAL_STAGES = ("ingest", "caption", "dedupe", "shard")
NODES = (4, 16, 64)


def serial_s_per_record(figures: dict) -> float:
    """Driver seconds per record from the 5,000 tree (xray-jpeg), each stage's CLI start-up taken off."""
    tree = figures["kinds"]["xray-jpeg"]
    startup = figures["startup_s"]["help"]
    return sum(max(0.0, tree["stages_s"][s] - startup) for s in SERIAL_STAGES) / tree["images"]


def plan(mix: dict[str, int], figures: dict, nodes: int, args: argparse.Namespace) -> dict:
    kinds = figures["kinds"]
    cpu_seconds = sum(n / kinds[k]["convert_per_cpu_images_per_s"] for k, n in mix.items())
    data_bytes = sum(
        n * (kinds[k]["input_bytes_per_image"] + 3 * kinds[k]["output_bytes_per_image"])
        for k, n in mix.items()
    )
    cpu_bound = cpu_seconds / (nodes * args.cpus_per_node)
    fs_bound = data_bytes / (args.shared_fs_gbps * 1e9 / 8)
    serial = sum(mix.values()) * serial_s_per_record(figures)
    wall = max(cpu_bound, fs_bound) + serial
    bound = {"CPU": cpu_bound, "filesystem": fs_bound, "driver": serial}
    return {
        "cpu_h": cpu_bound / 3600,
        "fs_h": fs_bound / 3600,
        "serial_h": serial / 3600,
        "wall_h": wall / 3600,
        "binds": max(bound, key=bound.get),
        "cost": nodes * args.price_per_node_hour * wall / 3600,
        "tb": data_bytes / 1e12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", type=Path, help="JSON written by bench/throughput_bench.py --json")
    parser.add_argument("--cpus-per-node", type=int, default=32, help="worker CPUs per node (default 32)")
    parser.add_argument(
        "--price-per-node-hour",
        type=float,
        default=1.50,
        help="USD per node-hour (default 1.50: 32-vCPU on demand)",
    )
    parser.add_argument(
        "--shared-fs-gbps",
        type=float,
        default=2.0,
        help="aggregate shared-filesystem bandwidth, Gbit/s (default 2.0)",
    )
    args = parser.parse_args()
    figures = json.loads(args.figures.read_text())
    missing = {k for mix in MIXES.values() for k in mix} - set(figures["kinds"])
    if missing:
        raise SystemExit(f"{args.figures} lacks input kinds {sorted(missing)}: run the bench with them")

    print("per-CPU images/s of the convert stage (bench, linear scaling assumed):")
    for kind, f in figures["kinds"].items():
        print(f"  {kind:<12} {f['convert_per_cpu_images_per_s']:8.1f}   {f['label']}")
    records = figures["kinds"]["xray-jpeg"]["images"]
    print(
        f"driver serial part: {serial_s_per_record(figures) * 1e3:.3f} ms per record, from a {records}-image tree "
        "(fixed per-stage costs inflate it on small trees: plan from a --count-scale 1 run)"
    )
    print(
        f"{args.cpus_per_node} CPUs/node, {args.price_per_node_hour:.2f} USD/node-hour, "
        f"shared filesystem {args.shared_fs_gbps:g} Gbit/s\n"
    )
    print(
        f"{'corpus':<14} {'nodes':>5} {'convert h':>9} {'FS h':>8} {'serial h':>8} {'wall h':>8} "
        f"{'binds':>10} {'USD':>9} {'TB moved':>8}"
    )
    for corpus, mix in MIXES.items():
        for nodes in NODES:
            p = plan(mix, figures, nodes, args)
            print(
                f"{corpus:<14} {nodes:>5} {p['cpu_h']:>9.2f} {p['fs_h']:>8.2f} {p['serial_h']:>8.2f} "
                f"{p['wall_h']:>8.2f} {p['binds']:>10} {p['cost']:>9.0f} {p['tb']:>8.2f}"
            )


if __name__ == "__main__":
    main()
