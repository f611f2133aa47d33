"""Images/s of `unimed-data build` beside img2dataset 1.47 and a bare Pillow ceiling, on the same files.

Issue 16's table. The design promises a local build near the bare decode -> resize -> encode ceiling
(goal: ours/ceiling >= 0.8); this measures it on four input kinds with the same worker count, cap
(512 px, Lanczos) and JPEG quality (90) for every tool (our build keeps a source JPEG that already fits
the cap as it is, at its own quality: see the README's convert notes). Our build is also timed stage by stage
(each stage command in its own process, as a user runs them) beside the CLI's start-up, since a
small tree's build is mostly fixed costs. img2dataset runs in its own uvx environment (its pins are
not ours) on file:// URLs; it reads no DICOM. Timed subprocesses may write bytecode (this machine
sets PYTHONDONTWRITEBYTECODE, which would make every start-up compile afresh) and are warmed once.
Inputs are synthetic but image-like (smooth anatomy plus noise), so codecs see realistic content.
Prints a table; --json writes the figures bench/cluster_plan.py reads. Asserts nothing.

    uv run --all-extras python -m bench.throughput_bench --count-scale 0.05 --json throughput.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from bench.convert_bench import smooth_noise, write_ct, write_fundus

IMG2DATASET = "img2dataset==1.47.0"
STAGES = ("ingest", "convert", "caption", "dedupe", "shard")
CLI = str(Path(sys.executable).with_name("unimed-data"))


def write_xray(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    """A chest-radiograph-like grey image: bright body, dark lungs of random shape, ribs, texture, noise."""
    width, height = size
    yy, xx = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j].astype(np.float32)
    lungs = 0
    for side in (-1, 1):  # two soft-edged ellipses of random width, height and spacing
        dx = (xx - side * rng.uniform(0.3, 0.45)) / rng.uniform(0.2, 0.3)
        lungs = lungs + np.exp(-((dx**2 + (yy / rng.uniform(0.45, 0.6)) ** 2) ** 2))
    ribs = np.sin(yy * rng.uniform(16, 24) + np.abs(xx) * rng.uniform(2, 5)) ** 8 * (lungs > 0.2)
    texture = smooth_noise(rng, max(size), 24)[:height, :width]
    grey = 255 * (0.8 * np.exp(-((xx / 0.9) ** 8)) - 0.45 * lungs + 0.12 * ribs + 0.25 * texture)
    grey += rng.normal(0, 3, grey.shape)
    Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(path, quality=95)


@dataclass(frozen=True)
class Kind:
    label: str
    count: int  # at --count-scale 1
    suffix: str
    modality: str
    classes: tuple[str, ...]
    size: tuple[int, int] | None = None  # (width, height); None: the CT generator's own 2048x2048


XRAY_CLASSES = ("normal", "cardiomegaly", "pleural_effusion", "pneumonia")
KINDS = {
    "fundus-jpeg": Kind(
        "fundus JPEG 2124x2056 RGB", 600, ".jpg", "fundus", ("normal", "glaucoma", "cataract"), (2124, 2056)
    ),
    "xray-png": Kind("X-ray PNG 1024x1024 grey", 600, ".png", "xray", XRAY_CLASSES, (1024, 1024)),
    "xray-jpeg": Kind("X-ray JPEG 390x320 grey", 5000, ".jpg", "xray", XRAY_CLASSES, (390, 320)),
    "dicom": Kind("CT DICOM 2048x2048 16-bit", 200, ".dcm", "ct", ("liver", "kidney", "lung")),
}


def write_input(kind: str, path: Path, seed: int) -> None:
    rng, spec = np.random.default_rng(seed), KINDS[kind]
    if kind == "dicom":
        write_ct(path, rng)
    elif kind == "fundus-jpeg":
        write_fundus(path, rng, spec.size)
    else:
        write_xray(path, rng, spec.size)


def bare_convert(path: str, max_side: int = 512) -> int:
    """The ceiling: decode, (window DICOM to 8 bit), resize the longest side to the cap if bigger, encode."""
    if path.endswith(".dcm"):
        ds = pydicom.dcmread(path)
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        low, width = float(ds.WindowCenter) - float(ds.WindowWidth) / 2, float(ds.WindowWidth)
        image = Image.fromarray(np.clip((values - low) * (255 / width), 0, 255).astype(np.uint8))
    else:
        image = Image.open(path)
        image = image.convert("L" if image.mode == "L" else "RGB")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.tell()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed_env() -> dict[str, str]:
    env = {**os.environ, "TQDM_DISABLE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(command: list[str], log_path: Path | None = None) -> float:
    """Wall seconds of one subprocess; its output goes to `log_path`; a failure stops the bench."""
    with open(log_path or os.devnull, "w") as sink:
        start = time.perf_counter()
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=timed_env()).returncode
        seconds = time.perf_counter() - start
    if code != 0:
        tail = log_path.read_text()[-2000:] if log_path else ""
        raise SystemExit(f"failed ({code}): {' '.join(command)}\n{tail}")
    return seconds


def make_inputs(kind: str, folder: Path, count: int) -> list[Path]:
    """`count` files of `kind` in class folders under folder/bench-<kind>/; existing ones are kept (--keep)."""
    spec = KINDS[kind]
    paths = [
        folder / f"bench-{kind}" / spec.classes[i % len(spec.classes)] / f"{kind}{i:05d}{spec.suffix}"
        for i in range(count)
    ]
    missing = [(i, path) for i, path in enumerate(paths) if not path.exists()]
    for _, path in missing:
        path.parent.mkdir(parents=True, exist_ok=True)
    if missing:
        log(f"{kind}: generating {len(missing)} inputs")
        with ProcessPoolExecutor() as pool:
            list(
                pool.map(write_input, [kind] * len(missing), *zip(*[(p, i) for i, p in missing], strict=True))
            )
    return paths


def write_config(kind: str, inputs: Path, work: Path, workers: int) -> Path:
    """A build config over the folder tree: template captions, default dedupe, the bench's cap and quality."""
    manifest = work / f"bench-{kind}.yaml"
    manifest.write_text(
        f"name: bench-{kind}\nmodality: {KINDS[kind].modality}\nlicense: synthetic\nlayout: {{type: folder, path: .}}\n"
    )
    config = work / f"build-{kind}.yaml"
    config.write_text(
        f"datasets: [{{manifest: '{manifest}', root: '{inputs}'}}]\nworkers: {workers}\n"
        "convert: {max_side: 512, jpeg_quality: 90}\ncaptions: {backend: template}\n"
    )
    return config


def samples_written(out: Path) -> int:
    return sum(sum(json.loads(p.read_text()).values()) for p in out.glob("*/sizes.json"))


def run_ours(kind: str, config: Path, work: Path) -> dict:
    out, staged = work / f"ours-{kind}", work / f"ours-stages-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(staged, ignore_errors=True)
    log(f"{kind}: unimed-data build")
    seconds = timed([CLI, "build", str(config), "--out", str(out)], work / f"ours-{kind}.log")
    stages = {}
    for stage in STAGES:
        log(f"{kind}: unimed-data {stage}")
        stages[stage] = timed([CLI, stage, str(config), "--out", str(staged)], work / f"{stage}-{kind}.log")
    samples = samples_written(out)
    output_bytes = sum(p.stat().st_size for p in out.glob("*/*.tar"))
    return {"seconds": seconds, "stages_s": stages, "samples": samples, "output_bytes": output_bytes}


def img2dataset_python() -> tuple[str | None, str]:
    """The Python of img2dataset's own (cached) uvx environment, or None and why not."""
    try:
        found = subprocess.run(
            ["uvx", "--from", IMG2DATASET, "python", "-c", "import img2dataset, sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            env=timed_env(),
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"uvx failed: {exc}"
    if found.returncode != 0:
        return None, (found.stderr.strip().splitlines() or ["uvx failed"])[-1]
    return found.stdout.strip().splitlines()[-1], ""


def run_img2dataset(
    python: str, kind: str, files: list[Path], work: Path, workers: int, threads: int
) -> dict:
    out, urls = work / f"img2dataset-{kind}", work / f"urls-{kind}.txt"
    shutil.rmtree(out, ignore_errors=True)
    urls.write_text("".join(f"file://{path}\n" for path in files))
    per_shard = max(1, math.ceil(len(files) / (4 * workers)))  # enough shards to keep every process busy
    command = [
        str(Path(python).with_name("img2dataset")),
        *("--url_list", str(urls), "--input_format", "txt", "--output_folder", str(out)),
        *("--image_size", "512", "--resize_mode", "keep_ratio", "--resize_only_if_bigger", "True"),
        *("--encode_quality", "90", "--processes_count", str(workers), "--thread_count", str(threads)),
        *("--output_format", "webdataset", "--number_sample_per_shard", str(per_shard)),
    ]
    log(f"{kind}: img2dataset")
    seconds = timed(command, work / f"img2dataset-{kind}.log")
    successes = sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))
    return {"seconds": seconds, "successes": successes}


def run_ceiling(files: list[Path], workers: int) -> dict:
    log(f"{len(files)} files: bare ceiling")
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(bare_convert, map(str, files), chunksize=4))
    return {"seconds": time.perf_counter() - start}


def startup() -> dict:
    """Best of three: `unimed-data --help`, and importing the CLI module alone."""
    commands = {"help": [CLI, "--help"], "import": [sys.executable, "-c", "import unimed_data.cli"]}
    return {name: min(timed(command) for _ in range(3)) for name, command in commands.items()}


def warm_up(i2d_python: str | None) -> None:
    """Write the bytecode of everything the timed runs import, so no run pays for compiling it."""
    stages = ", ".join(f"unimed_data.stages.{stage}" for stage in STAGES)
    timed([sys.executable, "-c", f"import unimed_data.cli, unimed_data.imaging, {stages}"])
    if i2d_python:
        timed([i2d_python, "-c", "import img2dataset.main"])


def rate(images: int, result: dict | None) -> float | None:
    return images / result["seconds"] if result else None


def print_table(figures: dict, workers: int, startup_s: dict) -> None:
    def cell(result: dict | None, images: int) -> str:
        return (
            f"{result['seconds']:8.1f} {images / result['seconds']:8.1f}" if result else f"{'n/a':>8} {'':>8}"
        )

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:8.2f}" if a and b else f"{'n/a':>8}"

    print(f"\n{workers} worker processes, longest side 512, JPEG quality 90; seconds and images/s (wall)")
    head = f"{'input':<27} {'images':>6} | {'ours s':>8} {'im/s':>8} | {'i2d s':>8} {'im/s':>8} | {'ceil s':>8} {'im/s':>8}"
    print(head + f" | {'ours/ceil':>9} {'conv/ceil':>9} {'ours/i2d':>8} {'samples':>7}")
    print("-" * (len(head) + 39))
    for kind, f in figures.items():
        n = f["images"]
        ours, ceiling = rate(n, f["ours"]), rate(n, f["ceiling"])
        # The convert stage alone (its command less the CLI's start-up): the part that scales.
        convert = n / max(f["ours"]["stages_s"]["convert"] - startup_s["help"], 0.01)
        i2d = rate(n, f["img2dataset"])
        print(
            f"{KINDS[kind].label:<27} {n:>6} | {cell(f['ours'], n)} | {cell(f['img2dataset'], n)} | "
            f"{cell(f['ceiling'], n)} | {ratio(ours, ceiling):>9} {ratio(convert, ceiling):>9} "
            f"{ratio(ours, i2d)} {f['ours']['samples']:>7}"
        )
    for kind, f in figures.items():
        if f["img2dataset_note"]:
            print(f"  img2dataset n/a for {kind}: {f['img2dataset_note']}")

    print(
        f"\nstages of ours, each its own command (seconds); start-up: `unimed-data --help` {startup_s['help']:.2f} s,"
    )
    print(
        f"`import unimed_data.cli` {startup_s['import']:.2f} s (best of 3); issue's target: ingest, caption, shard"
    )
    limit = 1 + startup_s["help"]
    print(f"under 1 s + start-up for the 5,000-image tree ('*': over {limit:.2f} s)")
    print(f"{'input':<27} " + " ".join(f"{stage:>9}" for stage in STAGES) + f" {'sum':>9} {'build':>9}")
    for kind, f in figures.items():
        stages = f["ours"]["stages_s"]
        marks = {
            s: "*"
            if kind == "xray-jpeg" and s in ("ingest", "caption", "shard") and stages[s] > limit
            else " "
            for s in STAGES
        }
        cells = " ".join(f"{stages[s]:>8.2f}{marks[s]}" for s in STAGES)
        print(f"{KINDS[kind].label:<27} {cells} {sum(stages.values()):>9.2f} {f['ours']['seconds']:>9.2f}")


def to_json(figures: dict, workers: int, startup_s: dict) -> dict:
    kinds = {}
    for kind, f in figures.items():
        n, ours = f["images"], f["ours"]
        kinds[kind] = {
            "label": KINDS[kind].label,
            "images": n,
            "samples": ours["samples"],
            "input_bytes_per_image": f["input_bytes"] / n,
            "output_bytes_per_image": ours["output_bytes"] / max(ours["samples"], 1),
            "ours_s": ours["seconds"],
            "ours_images_per_s": n / ours["seconds"],
            "per_cpu_images_per_s": n / ours["seconds"] / workers,
            # The parallel part's rate: the convert command less the CLI's start-up, per worker.
            "convert_per_cpu_images_per_s": n
            / max(ours["stages_s"]["convert"] - startup_s["help"], 0.01)
            / workers,
            "stages_s": ours["stages_s"],
            "img2dataset_images_per_s": rate(n, f["img2dataset"]),
            "img2dataset_note": f["img2dataset_note"],
            "ceiling_images_per_s": rate(n, f["ceiling"]),
        }
    return {"workers": workers, "max_side": 512, "jpeg_quality": 90, "startup_s": startup_s, "kinds": kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count-scale", type=float, default=1.0, help="multiply every input count (default 1.0)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(KINDS),
        help="run only this input kind; repeatable (default: all)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every tool (default 2)")
    parser.add_argument("--threads", type=int, default=16, help="img2dataset's --thread_count (default 16)")
    parser.add_argument(
        "--keep", type=Path, help="keep inputs and outputs here; inputs are reused (default: a temp dir)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here (default: none)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="throughput-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        i2d_python, i2d_reason = img2dataset_python()
        log(f"img2dataset: {i2d_python or i2d_reason}")
        warm_up(i2d_python)
        startup_s = startup()
        figures = {}
        for kind in args.only or KINDS:
            count = max(4, round(KINDS[kind].count * args.count_scale))
            inputs = work / f"inputs-{kind}-{count}"  # a tree per count: ours reads the whole tree
            files = make_inputs(kind, inputs, count)
            config = write_config(kind, inputs, work, args.workers)
            note = "cannot read DICOM" if kind == "dicom" else i2d_reason
            i2d = None
            if not note:
                i2d = run_img2dataset(i2d_python, kind, files, work, args.workers, args.threads)
                if i2d["successes"] != count:
                    note = f"{i2d['successes']} of {count} images written"
            figures[kind] = {
                "images": count,
                "input_bytes": sum(p.stat().st_size for p in files),
                "ours": run_ours(kind, config, work),
                "img2dataset": i2d,
                "img2dataset_note": note,
                "ceiling": run_ceiling(files, args.workers),
            }
        print_table(figures, args.workers, startup_s)
        if args.json:
            args.json.write_text(json.dumps(to_json(figures, args.workers, startup_s), indent=2) + "\n")
            log(f"figures written to {args.json}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
