"""The shared output end of every decoder: scale to 8 bits, resize to the cap, encode a JPEG.

Encoding is deterministic (same pixels and options give the same bytes) and writes no metadata
(no EXIF, ICC profile or comment), so nothing from an input header can reach a shard.
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .fingerprint import Fingerprint, fingerprint
from .options import ConvertOptions

# Percentiles of the fallback window: clips the few outliers (metal, burned-in text, dead pixels)
# that would otherwise squash the useful range into a handful of grey levels.
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
# Percentiles are estimated on at most about this many pixels: accurate enough, and fast.
PERCENTILE_SAMPLES = 1 << 20


@dataclass(frozen=True)
class EncodedImage:
    """An encoded output image, its size in pixels, and the fingerprint of its pixels (taken here,
    while they are decoded, for the dedupe stage)."""

    jpeg: bytes
    width: int
    height: int
    fingerprint: Fingerprint


def subsample(arr: np.ndarray) -> np.ndarray:
    """A regular sample of at most about PERCENTILE_SAMPLES of `arr`'s values, flattened."""
    flat = arr.ravel()
    return flat[:: max(1, flat.size // PERCENTILE_SAMPLES)]


def percentile_range(arr: np.ndarray) -> tuple[float, float]:
    """Robust display range of `arr`; falls back to min..max where the percentiles coincide."""
    sample = subsample(arr)
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        low, high = sample.min(), sample.max()
    return float(low), float(high)


def to_uint8(arr: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map `low..high` linearly onto 0..255, clipping outside; NaN and a constant image map to 0."""
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    scale = 255.0 / (high - low)
    out = np.asarray(arr, dtype=np.float32) * np.float32(scale)
    out += np.float32(0.5 - low * scale)  # + 0.5: the truncating cast below then rounds
    np.fmax(out, 0, out=out)  # fmax/fmin rather than clip: they also send NaN to 0
    np.fmin(out, 255, out=out)
    return out.astype(np.uint8)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size with the longest side exactly `max_side` and the aspect kept; never larger than the input."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return (
        max_side if width == longest else max(1, round(width * scale)),
        max_side if height == longest else max(1, round(height * scale)),
    )


def capped(image: Image.Image, max_side: int) -> Image.Image:
    """A copy of `image` with its longest side at most `max_side` (Lanczos, aspect kept): the size
    every output image has, and the image fingerprints are taken from."""
    size = fit_size(*image.size, max_side)
    return image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image.copy()


def encode_jpeg(image: Image.Image, options: ConvertOptions) -> EncodedImage:
    """Resize an "L" or "RGB" image to the cap (Lanczos) and encode it as a metadata-free JPEG."""
    out = capped(image, options.max_side)
    out.info = {}  # Pillow re-emits some info entries (e.g. a JPEG comment) when saving
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=options.jpeg_quality, optimize=options.jpeg_optimize)
    return EncodedImage(buffer.getvalue(), *out.size, fingerprint(out))
