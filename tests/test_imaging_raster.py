"""Non-DICOM conversion (TIFF, PNG, JPEG, ...) and the JPEG output, on real files written here."""

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unimed_data.imaging import ConvertOptions, EncodedImage, ImageError, convert_file

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"


def _decoded(result: EncodedImage) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.jpeg)))


def _capped(width: int, height: int, cap: int) -> tuple[int, int]:
    """The output size the cap implies: longest side exactly `cap`, aspect kept, never upscaled."""
    scale = min(1.0, cap / max(width, height))
    return round(width * scale), round(height * scale)


def _sample_files() -> list[Path]:
    return sorted(SAMPLES.iterdir()) if SAMPLES.is_dir() else []


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"sample images folder {SAMPLES} is absent")
@pytest.mark.parametrize("path", _sample_files(), ids=lambda path: path.name)
@pytest.mark.parametrize("cap", [512, 200])
def test_every_sample_converts_to_the_capped_size(path, cap):
    with Image.open(path) as source:
        expected = _capped(*source.size, cap)
        colour = source.mode not in ("L", "I;16", "I", "F", "1")
    result = convert_file(path, ConvertOptions(max_side=cap))
    image = Image.open(io.BytesIO(result.jpeg))
    assert image.size == (result.width, result.height) == expected
    assert image.mode == ("RGB" if colour else "L")


def test_16_bit_png_is_windowed_to_the_full_8_bit_range(tmp_path):
    ramp = np.tile(np.linspace(1000, 5000, 256).astype(np.uint16), (64, 1))
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    pixels = _decoded(convert_file(path)).astype(int)
    assert pixels.shape == (64, 256)
    assert pixels.min() <= 3 and pixels.max() >= 252
    assert np.all(np.diff(pixels[32, 8:-8]) >= -2)  # still a ramp (give or take JPEG noise)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_16_bit_and_float_tiff(tmp_path, dtype):
    ramp = np.tile(np.linspace(-3.5, 900.0, 300), (100, 1)).astype(np.float32)
    values = (ramp + 4).astype(dtype) if dtype == np.uint16 else ramp
    path = tmp_path / "ramp.tif"
    tifffile.imwrite(path, values, compression="zlib")
    result = convert_file(path)
    pixels = _decoded(result).astype(int)
    assert (result.width, result.height) == (300, 100)
    assert pixels.min() <= 3 and pixels.max() >= 252


def test_rgb_and_rgba_tiff(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 1] = 200  # green
    rgba[:, :30, 3] = 255  # left half opaque, right half transparent
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=[2])
    tifffile.imwrite(tmp_path / "rgb.tif", rgba[..., :3], photometric="rgb", compression="jpeg")
    left, right = (slice(5, 35), slice(5, 25)), (slice(5, 35), slice(35, 55))
    rgba_pixels = _decoded(convert_file(tmp_path / "rgba.tif")).astype(int)
    assert np.abs(rgba_pixels[left].mean(axis=(0, 1)) - (0, 200, 0)).max() < 8
    assert rgba_pixels[right].max() < 8  # transparent composites onto black
    rgb_pixels = _decoded(convert_file(tmp_path / "rgb.tif")).astype(int)
    assert np.abs(rgb_pixels.mean(axis=(0, 1)) - (0, 200, 0)).max() < 8


def test_palette_and_min_is_white_tiff(tmp_path):
    indices = np.zeros((20, 40), np.uint8)
    indices[:, 20:] = 1
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (0, 65535, 0)  # index 0 black, index 1 green
    tifffile.imwrite(tmp_path / "palette.tif", indices, photometric="palette", colormap=colormap)
    pixels = _decoded(convert_file(tmp_path / "palette.tif")).astype(int)
    assert pixels[5:15, 3:15].max() < 8
    assert np.abs(pixels[5:15, 25:37].mean(axis=(0, 1)) - (0, 255, 0)).max() < 8
    tifffile.imwrite(tmp_path / "white.tif", indices * 200, photometric="miniswhite")
    grey = _decoded(convert_file(tmp_path / "white.tif")).astype(int)
    assert grey[5:15, 3:15].min() > 247 and abs(grey[5:15, 25:37].mean() - 55) < 4  # 0 shows white


@pytest.mark.parametrize(("frame", "value"), [("middle", 100), ("first", 10), ("last", 200)])
def test_multi_page_tiff_follows_the_frame_policy(tmp_path, frame, value):
    pages = np.stack([np.full((32, 48), level, np.uint8) for level in (10, 50, 100, 150, 200)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, pages)
    assert len(tifffile.TiffFile(path).pages) == 5
    pixels = _decoded(convert_file(path, ConvertOptions(frame=frame)))
    assert pixels.shape == (32, 48)
    assert abs(int(np.median(pixels)) - value) <= 1


def test_palette_png_becomes_rgb(tmp_path):
    indices = np.zeros((20, 40), np.uint8)
    indices[:, 20:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    path = tmp_path / "palette.png"
    image.save(path)
    pixels = _decoded(convert_file(path)).astype(int)
    assert pixels.shape == (20, 40, 3)
    assert np.abs(pixels[5:15, 3:15].mean(axis=(0, 1)) - (255, 0, 0)).max() < 10
    assert np.abs(pixels[5:15, 25:37].mean(axis=(0, 1)) - (0, 0, 255)).max() < 10


def test_rgba_and_la_png_composite_onto_black(tmp_path):
    rgba = np.zeros((30, 60, 4), np.uint8)
    rgba[..., :3] = (250, 250, 0)
    rgba[:, :30, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., [0, 3]]).save(tmp_path / "la.png")
    colour = _decoded(convert_file(tmp_path / "rgba.png")).astype(int)
    assert np.abs(colour[5:25, 5:25].mean(axis=(0, 1)) - (250, 250, 0)).max() < 8
    assert colour[5:25, 35:55].max() < 8
    grey = _decoded(convert_file(tmp_path / "la.png")).astype(int)
    assert grey.ndim == 2  # greyscale stays one channel
    assert abs(grey[5:25, 5:25].mean() - 250) < 4 and grey[5:25, 35:55].max() < 8


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path)  # no black, full magenta + yellow: red
    pixels = _decoded(convert_file(path)).astype(int)
    assert pixels.shape == (48, 64, 3)
    assert np.abs(pixels.mean(axis=(0, 1)) - (255, 0, 0)).max() < 10


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((200, 300), np.uint8)
    array[:, :150] = 255  # left half white, as stored
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    result = convert_file(path)
    assert (result.width, result.height) == (200, 300)
    pixels = _decoded(result).astype(int)
    assert pixels[:140].mean() > 240 and pixels[160:].mean() < 15  # the white half is now on top
    reduced = convert_file(path, ConvertOptions(max_side=100))  # decoded at a reduced scale first
    assert (reduced.width, reduced.height) == (67, 100)
    pixels = _decoded(reduced).astype(int)
    assert pixels[:45].mean() > 240 and pixels[55:].mean() < 15


def test_a_small_image_is_never_upscaled(tmp_path):
    path = tmp_path / "small.png"
    Image.new("L", (50, 30), 128).save(path)
    assert (convert_file(path).width, convert_file(path).height) == (50, 30)


def test_the_longest_side_is_exactly_the_cap(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (3001, 2000), (10, 20, 30)).save(path)
    result = convert_file(path)
    assert (result.width, result.height) == (512, 341)


def test_large_jpeg_reduced_decode_matches_a_full_decode(tmp_path):
    yy, xx = np.mgrid[0:3000, 0:3000]
    disc = ((yy - 1500) ** 2 + (xx - 1500) ** 2 < 1400**2).astype(np.float32)
    rgb = np.stack([disc * 200, disc * (90 + 60 * np.sin(xx / 150)), disc * 40], axis=-1).astype(np.uint8)
    path = tmp_path / "fundus.jpg"
    Image.fromarray(rgb).save(path, quality=92)
    ours = _decoded(convert_file(path)).astype(int)
    reference = np.asarray(Image.open(path).resize((512, 512), Image.Resampling.LANCZOS)).astype(int)
    assert ours.shape == reference.shape == (512, 512, 3)
    assert np.abs(ours - reference).mean() < 2


def test_corrupt_and_truncated_files_are_errors(tmp_path):
    path = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)).save(path)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ImageError, match="truncated"):
        convert_file(truncated)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ImageError):
        convert_file(garbage)
    text = tmp_path / "text.png"
    text.write_text("hello, not an image")
    with pytest.raises(ImageError, match=r"^not a recognised image format$"):
        convert_file(text)
    with pytest.raises(ImageError, match="No such file or directory"):
        convert_file(tmp_path / "missing.png")


def test_decompression_bomb_guard_and_no_global_change(tmp_path):
    Image.new("L", (200, 100)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((100, 200), np.uint8))
    limit_before = Image.MAX_IMAGE_PIXELS
    for name in ("big.png", "big.tif"):
        with pytest.raises(
            ImageError, match=r"20000 pixels exceeds max_pixels=19999 \(decompression-bomb guard\)"
        ):
            convert_file(tmp_path / name, ConvertOptions(max_pixels=19_999))
        convert_file(tmp_path / name, ConvertOptions(max_pixels=20_000))
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_pillow_own_bomb_limit_does_not_override_max_pixels(tmp_path, monkeypatch):
    Image.new("L", (200, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # some other code lowered Pillow's limit
    assert convert_file(tmp_path / "big.png").width == 200


def test_jpeg_quality_changes_the_size(tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (256, 256, 3), np.uint8)).save(path)
    low = convert_file(path, ConvertOptions(jpeg_quality=30))
    high = convert_file(path, ConvertOptions(jpeg_quality=95))
    assert len(low.jpeg) < len(high.jpeg) * 0.6


def test_output_is_deterministic_and_carries_no_metadata(tmp_path):
    path = tmp_path / "tagged.jpg"
    image = Image.new("RGB", (640, 480), (90, 60, 30))
    exif = image.getexif()
    exif[0x010E] = "PATIENT SECRET"  # ImageDescription
    image.save(path, exif=exif, comment=b"PATIENT COMMENT", icc_profile=b"\0" * 128)
    first, second = convert_file(path), convert_file(path)
    assert first == second
    output = Image.open(io.BytesIO(first.jpeg))
    assert not {"exif", "icc_profile", "comment"} & set(output.info)
    assert b"PATIENT" not in first.jpeg


def test_content_decides_not_the_extension(tmp_path):
    path = tmp_path / "image.dcm"
    Image.new("RGB", (64, 64), (0, 128, 255)).save(path, format="PNG")
    assert _decoded(convert_file(path)).shape == (64, 64, 3)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_side": 0}, {"jpeg_quality": 0}, {"jpeg_quality": 101}, {"max_pixels": 0}, {"frame": "centre"}],
)
def test_invalid_options_are_rejected(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ConvertOptions(**kwargs)


def test_a_long_decoder_message_is_cut_with_a_visible_mark():
    from unimed_data.imaging.errors import describe

    assert describe(RuntimeError("short")) == "RuntimeError: short"
    long = describe(RuntimeError("word " * 500))
    assert len(long) <= 600 and long.endswith("word…")


def test_min_side_refuses_small_images_only_when_asked(tmp_path: Path):
    from unimed_data.imaging import TooSmallError

    path = tmp_path / "thumb.png"
    Image.new("L", (20, 400)).save(path)
    assert convert_file(path).width == 20  # the decoder's default keeps every image
    with pytest.raises(TooSmallError, match=r"image 20×400 px is smaller than the minimum side 32 px"):
        convert_file(path, ConvertOptions(min_side=32))
