"""Single-process throughput of `convert_file` against a bare Pillow/pydicom loop on the same files.

Generates realistic inputs in a temporary folder: 2048 x 2048 16-bit CT-like DICOM slices (Explicit
VR Little Endian, rescale and window present) and 3000 x 3000 RGB fundus-like JPEGs. The bare loop is
the ceiling a naive script reaches (no windowing, no mode handling, no checks). Prints, asserts nothing.

    uv run python bench/convert_bench.py --count 40
"""

import argparse
import io
import resource
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from unimed_data.imaging import ConvertOptions, convert_file

CT_SIDE = 2048
FUNDUS_SIDE = 3000
CT, FUNDUS = "DICOM CT 2048x2048 16-bit", "JPEG fundus 3000x3000 RGB"


def smooth_noise(rng: np.random.Generator, side: int, coarse: int, channels: int = 1) -> np.ndarray:
    """Low-frequency random field in 0..1: coarse noise upsampled bicubically, like anatomy, not static."""
    mode = "L" if channels == 1 else "RGB"
    shape = (coarse, coarse) if channels == 1 else (coarse, coarse, channels)
    small = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    return np.asarray(small.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255


def write_ct(path: Path, rng: np.random.Generator) -> None:
    yy, xx = np.mgrid[-1 : 1 : CT_SIDE * 1j, -1 : 1 : CT_SIDE * 1j].astype(np.float32)
    body = (xx / 0.85) ** 2 + (yy / 0.65) ** 2 < 1
    ring = np.abs(np.hypot(xx / 0.5, yy / 0.4) - 1) < 0.04  # a rib-like bony ring
    hounsfield = np.full((CT_SIDE, CT_SIDE), -1000, np.float32)
    hounsfield[body] = (smooth_noise(rng, CT_SIDE, 48) * 120 - 40)[body]  # soft tissue
    hounsfield[ring] = 700 + 500 * smooth_noise(rng, CT_SIDE, 24)[ring]
    hounsfield += rng.normal(0, 12, hounsfield.shape).astype(np.float32)  # quantum noise
    stored = np.clip(hounsfield + 1024, 0, 4095).astype(np.uint16)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "CT", "Bench^Synthetic", "BENCH0001"
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.set_pixel_data(stored, photometric_interpretation="MONOCHROME2", bits_stored=12)
    ds.save_as(path, enforce_file_format=True)


def write_fundus(
    path: Path, rng: np.random.Generator, size: tuple[int, int] = (FUNDUS_SIDE, FUNDUS_SIDE)
) -> None:
    side = min(size) // 4  # smooth structure at quarter resolution, then upsampled to (width, height)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    radius = np.hypot(xx - side / 2, yy - side / 2) / (0.46 * side)
    disc = np.clip((1 - radius) * 40, 0, 1)  # the fundus disc with a soft edge, black outside
    shade = (1.1 - 0.5 * radius**2) * (0.8 + 0.4 * smooth_noise(rng, side, 12))
    optic = np.exp(-((xx - 0.7 * side) ** 2 + (yy - side / 2) ** 2) / (2 * (side / 27) ** 2))
    base = np.stack([210 * shade, 90 * shade, 30 * shade], axis=-1) + optic[..., None] * (45, 150, 130)
    small = Image.fromarray(np.clip(base * disc[..., None], 0, 255).astype(np.uint8))
    rgb = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    rgb = rgb + rng.integers(-6, 7, rgb.shape, dtype=np.int16)  # sensor noise and fine texture
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, quality=95)


def write_input(kind: str, path: Path, seed: int) -> None:
    (write_ct if kind == CT else write_fundus)(path, np.random.default_rng(seed))


def bare_jpeg(path: Path, max_side: int) -> bytes:
    image = Image.open(path).convert("RGB")
    scale = max_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def bare_dicom(path: Path, max_side: int) -> bytes:
    pixels = pydicom.dcmread(path).pixel_array.astype(np.float32)
    low, high = pixels.min(), pixels.max()
    image = Image.fromarray(((pixels - low) / max(high - low, 1) * 255).astype(np.uint8))
    scale = max_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def rate(files: list[Path], convert: Callable[[Path], object]) -> float:
    """Images per second over `files`, after one warm-up conversion."""
    convert(files[0])
    start = time.perf_counter()
    for path in files:
        convert(path)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="images of each kind (default 40)")
    parser.add_argument("--max-side", type=int, default=512, help="output cap (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = ConvertOptions(max_side=args.max_side)
    bare = {CT: bare_dicom, FUNDUS: bare_jpeg}

    with tempfile.TemporaryDirectory(prefix="convert-bench-") as folder:
        started = time.perf_counter()
        inputs = {
            CT: [Path(folder) / f"ct{index:04d}.dcm" for index in range(args.count)],
            FUNDUS: [Path(folder) / f"fundus{index:04d}.jpg" for index in range(args.count)],
        }
        jobs = [(kind, path, args.seed + index) for kind in inputs for index, path in enumerate(inputs[kind])]
        # Generated in worker processes, so the peak RSS below is that of the conversions alone.
        with ProcessPoolExecutor() as pool:
            list(pool.map(write_input, *zip(*jobs, strict=True)))
        print(f"generated {len(jobs)} inputs in {time.perf_counter() - started:.1f} s\n")

        print(f"{'input':<28} {'convert_file':>14} {'bare loop':>14} {'ratio':>7}")
        for kind, files in inputs.items():
            ours = rate(files, lambda path: convert_file(path, options))
            ceiling = rate(files, lambda path, kind=kind: bare[kind](path, args.max_side))
            print(f"{kind:<28} {ours:>10.1f} im/s {ceiling:>10.1f} im/s {ours / ceiling:>6.2f}x")

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak RSS of the converting process: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
