"""How two thumbnails (fingerprint.py's 32x32 grey copies) are compared: numpy only, so the dedupe
stage can compare fingerprints without loading the decoders that take them."""

from __future__ import annotations

import numpy as np

THUMB_SIDE = 32


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
