"""One file in, one JPEG out: dispatch on content, decode, encode; every failure is an ImageError."""

import io
from pathlib import Path

from PIL import Image

from .encode import EncodedImage, encode_jpeg, fit_size
from .errors import ImageError, TooSmallError, UnrecognisedFormatError, describe
from .fingerprint import fingerprint
from .formats import HEAD_SIZE, has_dicom_magic, is_jpeg, is_tiff
from .jpeg_segments import strip_metadata
from .options import ConvertOptions
from .raster import check_pixels, own_bomb_guard, read_pillow, read_tiff

EXIF_ORIENTATION = 0x0112


def convert_file(path: Path, options: ConvertOptions | None = None) -> EncodedImage:
    """Convert a DICOM, TIFF or Pillow-readable image to a capped, metadata-free JPEG.

    The format is recognised from the content, not the extension (formats.py). Raises ImageError
    with a reason (not repeating the path) for anything that cannot be converted, including
    unexpected decoder errors.
    """
    options = options or ConvertOptions()
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(HEAD_SIZE)
        if not head:
            raise ImageError("empty file")
        if is_jpeg(head) and options.reencode == "auto" and (kept := _kept_jpeg(path, options)):
            return kept
        image = _decode(path, head, options)
        if min(image.size) < options.min_side:
            width, height = image.size
            raise TooSmallError(
                f"image {width}×{height} px is smaller than the minimum side {options.min_side} px"
            )
        return encode_jpeg(image, options)
    except (ImageError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # A decoder bug or unusual corruption is still one bad file, not a crash; native decoders
        # (pylibjpeg's Rust RLE plugin) raise panics that derive from BaseException, not Exception.
        raise ImageError(f"cannot read image ({describe(exc)})") from exc


def _decode(path: Path, head: bytes, options: ConvertOptions) -> Image.Image:
    if has_dicom_magic(head):
        return Image.fromarray(_read_dicom(path, options))
    if is_tiff(head):
        return read_tiff(path, options)
    try:
        return read_pillow(path, options)
    except UnrecognisedFormatError:
        return Image.fromarray(_read_dicom(path, options))  # a bare DICOM dataset, without preamble


def _read_dicom(path: Path, options: ConvertOptions):
    from .dicom import read_dicom  # pydicom loads with the first DICOM, not for every JPEG or PNG

    return read_dicom(path, options)


def _kept_jpeg(path: Path, options: ConvertOptions) -> EncodedImage | None:
    """A source JPEG's own compressed data, metadata removed, when it needs no change: it fits the
    cap, is upright (no EXIF rotation), is a sequential 8-bit grey or colour JPEG, and its kept
    bytes decode in full (the decode the fingerprint needs anyway). None: convert it as usual."""
    data = path.read_bytes()
    with own_bomb_guard(), _open(data) as source:  # reads the headers only
        check_pixels(source.width * source.height, options)
        upright = source.getexif().get(EXIF_ORIENTATION, 1) == 1
        fits = fit_size(*source.size, options.max_side) == source.size
        if not upright or not fits or min(source.size) < options.min_side:
            return None  # the usual path turns, resizes, or words why the image is too small
    kept = strip_metadata(data)
    if kept is None:
        return None
    with _open(kept) as image:
        if image.mode not in ("L", "RGB"):
            return None
        image.load()
        return EncodedImage(kept, *image.size, fingerprint(image))


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data), formats=["JPEG"])
