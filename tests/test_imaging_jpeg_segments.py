"""A source JPEG that needs no change keeps its compressed data: only metadata segments go."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unimed_data.imaging import ConvertOptions, convert_file
from unimed_data.imaging.jpeg_segments import strip_metadata

PATIENT = "Doe^Jane 1957-03-02"


def photo(mode: str = "L", size=(120, 90)) -> Image.Image:
    rng = np.random.default_rng(0)
    shape = (size[1] // 8, size[0] // 8) if mode == "L" else (size[1] // 8, size[0] // 8, 3)
    small = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    return small.resize(size, Image.Resampling.BICUBIC)


def jpeg_with_metadata(image: Image.Image, **save) -> bytes:
    """A JPEG carrying what a scanner or a phone writes: EXIF (with a name), an ICC profile, a comment."""
    exif = Image.Exif()
    exif[0x010E] = PATIENT  # ImageDescription
    buffer = io.BytesIO()
    image.save(
        buffer, "JPEG", quality=92, exif=exif, comment=PATIENT.encode(), icc_profile=b"ICC" * 50, **save
    )
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_metadata_goes_and_the_pixels_stay_exactly(mode):
    data = jpeg_with_metadata(photo(mode)) + b"appended bytes after the image"
    kept = strip_metadata(data)
    assert kept is not None and len(kept) < len(data)
    for trace in (PATIENT.encode(), b"Exif", b"ICC_PROFILE", b"appended"):
        assert trace not in kept
    assert np.array_equal(pixels(kept), pixels(data))
    assert kept.endswith(b"\xff\xd9")


def test_the_adobe_marker_that_says_how_to_decode_colours_is_kept():
    buffer = io.BytesIO()
    photo("RGB").convert("CMYK").convert("RGB").save(buffer, "JPEG")
    adobe = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"  # transform 0: the samples are RGB
    data = buffer.getvalue()
    data = data[:2] + adobe + data[2:]
    kept = strip_metadata(data)
    assert adobe in kept and np.array_equal(pixels(kept), pixels(data))


def test_only_the_defined_bytes_of_an_adobe_marker_are_kept():
    buffer = io.BytesIO()
    photo("RGB").save(buffer, "JPEG")
    payload = b"Adobe\x00\x64\x00\x00\x00\x00\x01" + PATIENT.encode()  # defined bytes, then a name
    data = buffer.getvalue()
    data = data[:2] + b"\xff\xee" + (2 + len(payload)).to_bytes(2, "big") + payload + data[2:]
    kept = strip_metadata(data)
    assert b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x01" in kept and PATIENT.encode() not in kept
    assert np.array_equal(pixels(kept), pixels(data))


def without_segments(data: bytes, marker: int) -> bytes:
    """`data` with every segment of one kind removed (before the first scan)."""
    out, pos = bytearray(data[:2]), 2
    while data[pos + 1] != 0xDA:
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] != marker:
            out += data[pos:end]
        pos = end
    return bytes(out + data[pos:])


def test_a_jpeg_relying_on_default_huffman_tables_is_encoded_again():
    """Motion-JPEG frames leave their Huffman tables out; not every decoder supplies them."""
    data = jpeg_with_metadata(photo())
    assert strip_metadata(without_segments(data, 0xC4)) is None
    assert strip_metadata(without_segments(data, 0xE1)) is not None  # EXIF is not needed


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(lambda image, b: image.save(b, "JPEG", progressive=True), id="progressive"),
        pytest.param(lambda image, b: image.convert("CMYK").save(b, "JPEG"), id="cmyk"),
        pytest.param(lambda image, b: image.save(b, "PNG"), id="png"),
    ],
)
def test_other_kinds_of_file_do_not_qualify(how):
    buffer = io.BytesIO()
    how(photo("RGB"), buffer)
    assert strip_metadata(buffer.getvalue()) is None


def test_a_truncated_jpeg_does_not_qualify():
    data = jpeg_with_metadata(photo())
    assert strip_metadata(data[: len(data) // 2]) is None
    assert strip_metadata(data[:-2]) is None  # no end-of-image marker


def write(tmp_path: Path, data: bytes, name: str = "in.jpg") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_jpeg_that_fits_the_cap_keeps_its_data_and_loses_its_metadata(tmp_path: Path):
    data = jpeg_with_metadata(photo("RGB"))
    out = convert_file(write(tmp_path, data), ConvertOptions(max_side=512))
    assert out.jpeg == strip_metadata(data) and PATIENT.encode() not in out.jpeg
    # Its fingerprint is the one a re-encode takes from the same pixels.
    again = convert_file(write(tmp_path, data), ConvertOptions(max_side=512, reencode="always"))
    assert again.jpeg != out.jpeg and again.fingerprint == out.fingerprint
    assert PATIENT.encode() not in again.jpeg


def test_a_jpeg_larger_than_the_cap_or_turned_by_exif_is_encoded_again(tmp_path: Path):
    data = jpeg_with_metadata(photo("L", (300, 200)))
    out = convert_file(write(tmp_path, data), ConvertOptions(max_side=150))
    assert (out.width, out.height) == (150, 100) and out.jpeg != strip_metadata(data)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    buffer = io.BytesIO()
    photo("L").save(buffer, "JPEG", exif=exif)
    out = convert_file(write(tmp_path, buffer.getvalue(), "turned.jpg"), ConvertOptions(max_side=512))
    assert (out.width, out.height) == (90, 120)


def test_a_kept_jpeg_still_obeys_the_minimum_side(tmp_path: Path):
    from unimed_data.imaging import TooSmallError

    with pytest.raises(TooSmallError):
        convert_file(write(tmp_path, jpeg_with_metadata(photo("L", (40, 20)))), ConvertOptions(min_side=32))
