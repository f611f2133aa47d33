"""DICOM conversion, specified against the test files pydicom ships (no network: nothing is downloaded)."""

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import apply_color_lut, pixel_array

from unimed_data.imaging import ConvertOptions, EncodedImage, ImageError, convert_file
from unimed_data.imaging.dicom import read_dicom

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Files with pixel data that cannot become an image, and the reason each one gives.
UNDECODABLE = {
    "JPEG-lossy.dcm": "cannot decode JPEG Extended",  # corrupt 12-bit JPEG (misplaced marker)
    "JPEG2000-embedded-sequence-delimiter.dcm": "cannot decode JPEG 2000",
    "MR_truncated.dcm": "truncated pixel data: expected 8192 bytes, found 8130",
    "badVR.dcm": "invalid Rows, Columns or Number of Frames",  # NumberOfFrames is '1A'
    "meta_missing_tsyntax.dcm": "invalid Rows, Columns or Number of Frames",  # no image module
    "nested_priv_SQ.dcm": "invalid Rows, Columns or Number of Frames",  # no image module
}
# pydicom's SC_rgb images: ten 10-row bands of known colours.
SC_RGB_BANDS = [
    (255, 0, 0),
    (255, 128, 128),
    (0, 255, 0),
    (128, 255, 128),
    (0, 0, 255),
    (128, 128, 255),
    (0, 0, 0),
    (64, 64, 64),
    (192, 192, 192),
    (255, 255, 255),
]
SC_RGB_FILES = [
    "SC_rgb_rle.dcm",  # RGB
    "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL, JPEG baseline
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # YBR_FULL
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # YBR_FULL_422
    "SC_rgb_dcmtk_+eb+cy+s4.dcm",  # YBR_FULL
    "SC_rgb_jpeg_lossy_gdcm.dcm",  # YBR_FULL
    "SC_ybr_full_422_uncompressed.dcm",  # YBR_FULL_422, native (sub-sampled)
    "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
    "SC_rgb_jls_lossy_sample.dcm",  # JPEG-LS
    "SC_rgb_rle_16bit.dcm",  # 16 bits per sample
    "SC_rgb_rle_32bit.dcm",  # 32 bits per sample
]
MR_SMALL_SYNTAXES = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_padded.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
]


def _has_pixel_data(path: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True, defer_size=1024)
        except Exception:
            return False
    return any(keyword in ds for keyword in PIXEL_KEYWORDS)


ALL_FILES = sorted(path for path in TEST_FILES.rglob("*") if path.is_file())
PIXEL_FILES = [path for path in ALL_FILES if _has_pixel_data(path)]
OTHER_FILES = [path for path in ALL_FILES if path not in PIXEL_FILES]


def _id(path: Path) -> str:
    return str(path.relative_to(TEST_FILES))


def _decoded(result: EncodedImage) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.jpeg)))


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(TEST_FILES / name, tmp_path / name))


def test_the_shipped_test_files_are_there():
    assert len(PIXEL_FILES) > 80
    assert {path.name for path in PIXEL_FILES} >= set(UNDECODABLE)


@pytest.mark.parametrize("path", PIXEL_FILES, ids=_id)
def test_every_file_with_pixel_data_converts_or_gives_its_reason(path):
    if path.name in UNDECODABLE:
        with pytest.raises(ImageError, match=UNDECODABLE[path.name]):
            convert_file(path)
        return
    result = convert_file(path)
    image = Image.open(io.BytesIO(result.jpeg))
    assert image.format == "JPEG"
    assert image.mode in ("L", "RGB")
    assert image.size == (result.width, result.height)
    assert max(image.size) <= 512


@pytest.mark.parametrize("path", OTHER_FILES, ids=_id)
def test_files_without_pixel_data_are_rejected_with_a_reason(path):
    with pytest.raises(ImageError) as caught:
        convert_file(path)
    assert str(caught.value) in (
        "DICOM has no pixel data (not an image object)",
        "not a recognised image format",
    )


def test_mr_small_gives_the_same_pixels_in_every_transfer_syntax():
    reference = read_dicom(TEST_FILES / "MR_small.dcm", ConvertOptions())
    for name in MR_SMALL_SYNTAXES:
        pixels = read_dicom(TEST_FILES / name, ConvertOptions())
        assert pixels.shape == reference.shape == (64, 64), name
        assert np.abs(pixels.astype(int) - reference).max() <= 1, name


def test_monochrome1_is_inverted_so_bone_is_bright():
    for path in sorted((TEST_FILES / "dicomdirtests" / "77654033").glob("CR*/*")):
        assert pydicom.dcmread(path).PhotometricInterpretation == "MONOCHROME1"
        naive = pixel_array(path).astype(float)
        ours = read_dicom(path, ConvertOptions()).astype(float)
        assert np.corrcoef(naive.ravel(), ours.ravel())[0, 1] < -0.95, path.name


def test_window_centre_and_width_are_used_when_present(tmp_path):
    source = TEST_FILES / "CT_small.dcm"
    ds = pydicom.dcmread(source)
    assert "WindowCenter" not in ds
    hounsfield = pixel_array(ds) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ds.WindowCenter, ds.WindowWidth = 40, 400  # soft-tissue window
    windowed = tmp_path / "windowed.dcm"
    ds.save_as(windowed)

    ours = read_dicom(windowed, ConvertOptions()).astype(float)
    # DICOM's LINEAR window: -160 HU and below black, 240 HU and above white.
    expected = np.clip(((hounsfield - 39.5) / 399 + 0.5) * 255, 0, 255)
    assert np.abs(ours - expected).max() <= 1


def test_without_a_window_a_percentile_window_is_used():
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    hounsfield = pixel_array(ds) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    low, high = np.percentile(hounsfield, [0.5, 99.5])
    expected = np.clip((hounsfield - low) / (high - low) * 255, 0, 255)
    ours = read_dicom(TEST_FILES / "CT_small.dcm", ConvertOptions()).astype(float)
    assert np.abs(ours - expected).max() <= 1
    assert np.mean(ours == 0) < 0.02 and np.mean(ours == 255) < 0.02  # only the tails are clipped


def test_float_pixel_data_takes_the_percentile_window(tmp_path):
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    values = np.linspace(-1, 1, 128 * 128, dtype=np.float32).reshape(128, 128)
    values[0, :5] = np.nan  # not-a-number pixels must not poison the window
    del ds.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, keyword)
    ds.BitsAllocated, ds.FloatPixelData = 32, values.tobytes()
    path = tmp_path / "float.dcm"
    ds.save_as(path)
    ours = read_dicom(path, ConvertOptions()).astype(float)
    low, high = np.nanpercentile(values, [0.5, 99.5])
    expected = np.nan_to_num(np.clip((values - low) / (high - low) * 255, 0, 255), nan=0)
    assert np.abs(ours - expected).max() <= 1


def test_window_with_several_values_uses_the_first():
    path = TEST_FILES / "examples_overlay.dcm"
    ds = pydicom.dcmread(path)
    assert list(ds.WindowCenter) == [450, 200] and list(ds.WindowWidth) == [790, 443]
    values = pixel_array(ds).astype(float)
    expected = np.clip(((values - 449.5) / 789 + 0.5) * 255, 0, 255)
    expected = (expected - expected.min()) / (expected.max() - expected.min()) * 255
    ours = read_dicom(path, ConvertOptions()).astype(float)
    assert np.abs(ours - expected).max() <= 1


@pytest.mark.parametrize("name", SC_RGB_FILES)
def test_colour_files_decode_to_the_known_rgb_bands(name):
    pixels = _decoded(convert_file(TEST_FILES / name))
    assert pixels.shape == (100, 100, 3)
    for band, colour in enumerate(SC_RGB_BANDS):
        centre = pixels[band * 10 + 3 : band * 10 + 7, 40:60].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - colour).max() < 12, (band, centre, colour)


def test_palette_colour_goes_through_its_lookup_table():
    path = TEST_FILES / "examples_palette.dcm"
    ds = pydicom.dcmread(path)
    rgb16 = apply_color_lut(pixel_array(ds), ds)
    assert rgb16.dtype == np.uint16  # 16-bit palette entries, scaled down to 8 bits
    ours = read_dicom(path, ConvertOptions())
    assert ours.shape == (*ds.pixel_array.shape, 3)
    assert np.abs(ours - rgb16 / 257).max() <= 0.5


def test_multi_frame_keeps_the_middle_frame_unless_told_otherwise():
    path = TEST_FILES / "SC_rgb_rle_2frame.dcm"  # the second frame is the first one's inverse
    top_band = slice(3, 7), slice(40, 60)
    middle = _decoded(convert_file(path))[top_band].reshape(-1, 3).mean(axis=0)
    first = _decoded(convert_file(path, ConvertOptions(frame="first")))[top_band].reshape(-1, 3).mean(axis=0)
    last = _decoded(convert_file(path, ConvertOptions(frame="last")))[top_band].reshape(-1, 3).mean(axis=0)
    assert np.abs(first - (255, 0, 0)).max() < 12
    assert np.abs(middle - (0, 255, 255)).max() < 12
    assert np.allclose(last, middle)


def test_middle_frame_of_a_long_cine():
    path = TEST_FILES / "examples_ybr_color.dcm"
    assert pydicom.dcmread(path).NumberOfFrames == 30
    middle = read_dicom(path, ConvertOptions())
    assert np.array_equal(middle, pixel_array(path, index=15))
    assert not np.array_equal(middle, read_dicom(path, ConvertOptions(frame="first")))


def test_truncated_native_pixel_data_is_an_error():
    with pytest.raises(ImageError, match=r"^truncated pixel data: expected 8192 bytes, found 8130$"):
        convert_file(TEST_FILES / "MR_truncated.dcm")


def test_too_short_jpeg2000_codestream_is_an_error(tmp_path):
    # pydicom's emri_small_jpeg_2k_lossless_too_short.dcm is download-only; this is the same defect.
    ds = pydicom.dcmread(TEST_FILES / "MR_small_jp2klossless.dcm")
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([codestream[: len(codestream) // 2]])
    path = tmp_path / "too_short.dcm"
    ds.save_as(path)
    with pytest.raises(ImageError, match=r"^cannot decode JPEG 2000 .* failed to decode image"):
        convert_file(path)


def test_non_dicom_bytes_are_not_an_image(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ImageError, match=r"^not a recognised image format$"):
        convert_file(path)


def test_dicom_marker_with_a_broken_header_is_an_error(tmp_path):
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"1.2" * 10)
    with pytest.raises(ImageError):
        convert_file(path)


def test_dicom_without_preamble_is_recognised_by_content(tmp_path):
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.preamble = None
    del ds.file_meta
    path = tmp_path / "no_preamble.jpg"  # a misleading extension: content decides
    ds.save_as(path, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    assert convert_file(path) == convert_file(TEST_FILES / "CT_small.dcm")


def test_decompression_bomb_guard_checks_the_declared_size():
    with pytest.raises(
        ImageError, match=r"16384 pixels .* exceeds max_pixels=10000 \(decompression-bomb guard\)"
    ):
        convert_file(TEST_FILES / "CT_small.dcm", ConvertOptions(max_pixels=10_000))
    # Only one frame is decoded, so the guard is per frame: a 30-frame cine under the limit passes.
    assert convert_file(TEST_FILES / "examples_ybr_color.dcm", ConvertOptions(max_pixels=240 * 320))
    with pytest.raises(ImageError, match="decompression-bomb"):
        convert_file(TEST_FILES / "examples_ybr_color.dcm", ConvertOptions(max_pixels=240 * 320 - 1))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_no_patient_header_value_reaches_the_output(name):
    ds = pydicom.dcmread(TEST_FILES / name)
    values = [str(ds.get(keyword, "")) for keyword in ("PatientName", "PatientID", "PatientBirthDate")]
    values = [value.encode() for value in values if value]
    assert values  # the files do carry identifying values
    jpeg = convert_file(TEST_FILES / name).jpeg
    for value in values:
        assert value not in jpeg
    assert b"CompressedSamples" not in jpeg


def test_output_is_capped_and_deterministic():
    options = ConvertOptions(max_side=100)
    first = convert_file(TEST_FILES / "examples_overlay.dcm", options)  # 484 x 300
    assert (first.width, first.height) == (100, 62)
    assert convert_file(TEST_FILES / "examples_overlay.dcm", options) == first


def test_a_panic_in_a_native_decoder_is_an_image_error(tmp_path):
    """pylibjpeg-rle is Rust: corrupt input makes it panic with a BaseException, not an Exception."""
    data = bytearray((TEST_FILES / "MR_small_RLE.dcm").read_bytes())
    rng = np.random.default_rng(17)  # a seed whose damage makes the RLE decoder index out of bounds
    for position in rng.integers(len(data) - 3000, len(data), 20):
        data[position] = rng.integers(0, 256)
    path = tmp_path / "corrupt_rle.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="PanicException"):
        convert_file(path)
