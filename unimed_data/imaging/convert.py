"""One file in, one JPEG out: dispatch on content, decode, encode; every failure is an ImageError."""

from pathlib import Path

from PIL import Image

from .dicom import has_dicom_magic, read_dicom
from .encode import EncodedImage, encode_jpeg
from .errors import ImageError, TooSmallError, UnrecognisedFormatError, describe
from .options import ConvertOptions
from .raster import is_tiff, read_pillow, read_tiff

HEAD_SIZE = 132  # DICOM preamble (128 bytes) + 'DICM'; also covers the TIFF magic


def convert_file(path: Path, options: ConvertOptions | None = None) -> EncodedImage:
    """Convert a DICOM, TIFF or Pillow-readable image to a capped, metadata-free JPEG.

    The format is recognised from the content, not the extension: medical archives are full of
    DICOM files named `.jpg` or with no extension at all. Raises ImageError with a reason (not
    repeating the path) for anything that cannot be converted, including unexpected decoder errors.
    """
    options = options or ConvertOptions()
    try:
        image = _decode(Path(path), options)
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


def _decode(path: Path, options: ConvertOptions) -> Image.Image:
    with path.open("rb") as file:
        head = file.read(HEAD_SIZE)
    if not head:
        raise ImageError("empty file")
    if has_dicom_magic(head):
        return Image.fromarray(read_dicom(path, options))
    if is_tiff(head):
        return read_tiff(path, options)
    try:
        return read_pillow(path, options)
    except UnrecognisedFormatError:
        return Image.fromarray(read_dicom(path, options))  # a bare DICOM dataset, without preamble
