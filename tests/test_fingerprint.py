"""Fingerprints: exact for the same pixels in any format, near for re-encoded or resized copies,
apart for different images."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from unimed_data.config import DedupeConfig
from unimed_data.dedupe_match import hamming
from unimed_data.imaging.fingerprint import fingerprint
from unimed_data.imaging.thumb_compare import thumb_difference

RADIUS, MAX_THUMB_DIFFERENCE = DedupeConfig().radius, DedupeConfig().max_thumb_difference


def scene(seed: int) -> Image.Image:
    image = Image.new("L", (200, 160), 30)
    draw = ImageDraw.Draw(image)
    for i in range(5):
        x, y = (seed * 41 + i * 37) % 200, (seed * 23 + i * 53) % 160
        draw.rectangle((x - 25, y - 18, x + 25, y + 18), fill=(seed * 70 + i * 45) % 220 + 30)
    return image


def reread(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue())).convert(image.mode)


def test_the_same_pixels_in_another_format_or_as_equal_rgb_channels_match_exactly():
    image = scene(1)
    digest = fingerprint(image).pixels
    assert fingerprint(reread(image, "PNG")).pixels == digest
    assert fingerprint(reread(image, "TIFF")).pixels == digest
    assert fingerprint(image.convert("RGB")).pixels == digest  # grey saved as RGB


def test_a_reencoded_or_resized_copy_is_near_and_a_different_image_is_not():
    original = fingerprint(scene(2))
    for copy in (reread(scene(2), "JPEG", quality=60), scene(2).resize((300, 240))):
        mark = fingerprint(copy)
        assert mark.pixels != original.pixels
        assert hamming(mark.phash, original.phash) <= RADIUS
        assert thumb_difference(mark.thumb, original.thumb) <= MAX_THUMB_DIFFERENCE
    other = fingerprint(scene(3))
    near = hamming(other.phash, original.phash) <= RADIUS
    assert not (near and thumb_difference(other.thumb, original.thumb) <= MAX_THUMB_DIFFERENCE)
