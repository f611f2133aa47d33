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

from .thumb_compare import THUMB_SIDE

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
