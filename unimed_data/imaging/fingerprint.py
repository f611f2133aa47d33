"""What the dedupe stage compares, taken from the image the converter already holds decoded.

- `pixels`: a digest of the output pixels (size, then grey or RGB bytes), so one image saved in
  another format or with other metadata matches exactly; an RGB image whose channels are equal
  counts as grey.
- `phash`: imagehash's 64-bit perceptual hash (DCT of a 32x32 grey copy), which re-encoding,
  resizing, small crops and brightness/contrast changes move by a few bits only.
- `thumb`: a 32x32 grey copy, the cheap pixel check that confirms a near match, so two look-alike
  images of different patients (close hashes) are not taken for one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

THUMB_SIDE = 32
PHASH_SIDE = 32  # imagehash.phash's own: hash_size 8 x highfreq_factor 4
REDUCED_SIDE = 64  # the box-averaged copy both are made from: twice their side, or the image's own


@dataclass(frozen=True)
class Fingerprint:
    pixels: str  # sha256 hex of the normalised pixels
    phash: int  # 64 bits, as a signed int64 (parquet has no uint64 that every reader takes)
    thumb: bytes  # THUMB_SIDE x THUMB_SIDE grey pixels


def fingerprint(image: Image.Image) -> Fingerprint:
    """The fingerprint of an "L" or "RGB" image."""
    grey = _as_grey_if_equal(image)
    digest = hashlib.sha256(f"{grey.mode} {grey.width}x{grey.height}\n".encode())
    digest.update(grey.tobytes())
    # Both small copies come from one box-averaged copy of about REDUCED_SIDE px, so the image's
    # pixels are read once more, not twice; phash is made not to care how an image was scaled.
    luma = grey.convert("L")
    reduced = luma.reduce(max(1, min(luma.size) // REDUCED_SIDE))
    small = reduced.resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS)
    bits = imagehash.phash(small).hash.flatten()
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    thumb = reduced.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return Fingerprint(digest.hexdigest(), to_signed(value), thumb.tobytes())


def to_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _as_grey_if_equal(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    image = image.convert("RGB")
    arr = np.asarray(image)
    if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        return Image.fromarray(arr[..., 0])
    return image


FLAT = 2.0  # grey levels: a thumbnail with less spread than this shows no structure to compare


def thumb_difference(a: bytes, b: bytes) -> float:
    """The mean absolute difference of two thumbnails' standardised pixels (brightness and contrast
    taken out) at the best of nine one-pixel shifts (a crop of a few per cent moves the content by
    a pixel or two). Infinite when either is flat: blank images of any grey would otherwise agree,
    so they match only on identical pixels."""
    x, y = _standardised(a), _standardised(b)
    if x is None or y is None:
        return float("inf")
    best = float("inf")
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            xs = x[max(0, dy) : THUMB_SIDE + min(0, dy), max(0, dx) : THUMB_SIDE + min(0, dx)]
            ys = y[max(0, -dy) : THUMB_SIDE + min(0, -dy), max(0, -dx) : THUMB_SIDE + min(0, -dx)]
            best = min(best, float(np.abs(xs - ys).mean()))
    return best


def _standardised(thumb: bytes) -> np.ndarray | None:
    """The thumbnail with its mean and spread taken out; None when it is flat (spread below FLAT)."""
    pixels = np.frombuffer(thumb, dtype=np.uint8)
    if float(pixels.std()) < FLAT:
        return None
    arr = pixels.astype(np.float32).reshape(THUMB_SIDE, THUMB_SIDE)
    return (arr - arr.mean()) / arr.std()
