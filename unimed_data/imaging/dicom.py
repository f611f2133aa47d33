"""DICOM -> 8-bit greyscale (H, W) or RGB (H, W, 3) array, close to a viewer's default display.

Greyscale: modality LUT (rescale slope/intercept) -> the file's own VOI LUT or window (the first of
several) -> else a percentile window -> 0..255, with MONOCHROME1 inverted so bone is bright as in
MONOCHROME2. Colour: YBR is turned into RGB by pydicom, PALETTE COLOR through its lookup table, and
more than 8 bits per sample scaled down. Only the chosen frame of a multi-frame file is decoded.
"""

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .encode import percentile_range, subsample, to_uint8
from .errors import ImageError, UnrecognisedFormatError, describe
from .options import ConvertOptions

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Values larger than this (the pixel data) are read only when decoded, after the size checks.
DEFER_SIZE = "1 MB"
# Transfer syntax implied by how pydicom parsed a dataset lacking one: (implicit VR, little endian).
SYNTAX_BY_ENCODING = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def read_dicom(path: Path, options: ConvertOptions) -> np.ndarray:
    """Decode the chosen frame of a DICOM file into an 8-bit display array."""
    with _quiet_pydicom():
        ds = _read_dataset(path)
        index = options.frame_index(_checked_frame_count(ds, options))
        frame = _decode_frame(ds, index)
        return _to_display(frame, ds)


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and log records (tracebacks from each failed decoder plugin).

    They would repeat for thousands of slightly non-conformant files that still decode, and a file
    that does not decode raises ImageError, whose reason carries the decoders' messages.
    """
    logger = logging.getLogger("pydicom")
    saved_level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(saved_level)


def _read_dataset(path: Path) -> Dataset:
    try:
        return dcmread(path, defer_size=DEFER_SIZE)
    except InvalidDicomError:
        pass  # no 'DICM' marker: some archives write a bare dataset, which needs force=True
    except Exception as exc:
        raise ImageError(f"unreadable DICOM header ({describe(exc)})") from exc
    try:
        ds = dcmread(path, force=True, defer_size=DEFER_SIZE)
    except Exception as exc:
        raise UnrecognisedFormatError() from exc
    # force=True parses almost any bytes into some elements; a real dataset has these.
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise UnrecognisedFormatError()
    return ds


def _checked_frame_count(ds: Dataset, options: ConvertOptions) -> int:
    """Number of frames, after checking the declared size against the decompression-bomb guard."""
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise ImageError("DICOM has no pixel data (not an image object)")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageError("DICOM has missing or invalid Rows, Columns or Number of Frames") from exc
    if min(rows, columns, frames) < 1:
        raise ImageError(f"DICOM declares an empty image ({rows} x {columns}, {frames} frames)")
    # Only one frame is ever decoded, so the guard applies per frame: a long cine loop is fine.
    if rows * columns > options.max_pixels:
        raise ImageError(
            f"frame of {rows * columns} pixels ({rows} x {columns}) exceeds "
            f"max_pixels={options.max_pixels} (decompression-bomb guard)"
        )
    return frames


def _decode_frame(ds: Dataset, index: int) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not syntax:
        syntax = ds.file_meta.TransferSyntaxUID = SYNTAX_BY_ENCODING[ds.original_encoding]
    syntax = UID(syntax)
    if "PixelData" in ds and not syntax.is_encapsulated:
        expected, found = get_expected_length(ds), len(ds.PixelData)
        if found < expected:
            raise ImageError(f"truncated pixel data: expected {expected} bytes, found {found}")
    try:
        return pixel_array(ds, index=index)
    except NotImplementedError as exc:
        raise ImageError(
            f"unsupported transfer syntax {syntax} ({syntax.name}): no installed decoder handles it"
        ) from exc
    except Exception as exc:
        raise ImageError(f"cannot decode {syntax.name} pixel data ({describe(exc)})") from exc


def _to_display(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        return to_uint8(rgb, 0, np.iinfo(rgb.dtype).max) if rgb.dtype != np.uint8 else rgb
    if frame.ndim == 3:
        if frame.shape[-1] != 3:
            raise ImageError(f"unsupported DICOM colour layout: {frame.shape[-1]} samples per pixel")
        # pydicom has already turned YBR_FULL/YBR_FULL_422 into RGB, and J2K YBR_RCT/ICT decode as RGB.
        bits = int(ds.get("BitsStored") or frame.dtype.itemsize * 8)
        return frame if frame.dtype == np.uint8 else to_uint8(frame, 0, 2**bits - 1)
    grey = _window(frame, ds)
    return 255 - grey if photometric == "MONOCHROME1" else grey


def _window(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """Greyscale to 8 bits through the file's own VOI LUT or window where it has one.

    Otherwise, and for a malformed VOI (e.g. width 0), a percentile window. Float pixel data holds
    real-world values with no modality or VOI transform, so it always takes the percentile window.
    """
    if frame.dtype.kind == "f":
        return to_uint8(frame, *percentile_range(frame))
    low, high = int(frame.min()), int(frame.max())
    if high - low < frame.size:
        # The transforms depend on the stored value alone: apply them once per value in the frame's
        # range (a lookup table) rather than once per pixel, several times faster on a CT slice.
        indices = np.subtract(frame, low, dtype=np.intp)
        stored = np.arange(low, high + 1).astype(frame.dtype)
    else:  # e.g. 32-bit dose values, whose table would outgrow the frame
        indices, stored = None, frame
    values = apply_modality_lut(stored, ds)
    grey = _voi_to_uint8(values, ds)
    if grey is None:
        pixels = values if indices is None else values[subsample(indices)]
        grey = to_uint8(values, *percentile_range(pixels))
    return grey if indices is None else grey[indices]


def _voi_to_uint8(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The file's own VOI mapped onto 0..255 as a viewer shows it, or None if it has no usable VOI.

    A window maps about [centre - width/2, centre + width/2] onto black..white (values outside clip), so
    an image that fills only part of its window keeps the contrast the window gives it. A VOI LUT
    is applied by pydicom and scaled by its own output bit depth.
    """
    try:
        if ds.get("VOILUTSequence"):
            bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            return to_uint8(apply_voi_lut(values, ds, index=0, prefer_lut=True), 0, 2**bits - 1)
        if "WindowCenter" in ds and "WindowWidth" in ds:
            centre, width = (_first(ds[k].value) for k in ("WindowCenter", "WindowWidth"))
            if width > 1:  # DICOM's LINEAR function (PS3.3 C.11.2.1.2.1)
                half = (width - 1) / 2
                return to_uint8(values, centre - 0.5 - half, centre - 0.5 + half)
    except (ValueError, IndexError, TypeError, AttributeError, KeyError, NotImplementedError):
        pass  # a malformed VOI: fall back to the percentile window
    return None


def _first(value) -> float:
    """The first of several window values (DICOM allows alternatives; the first is the default)."""
    return float(value[0]) if isinstance(value, MultiValue | list | tuple) else float(value)
