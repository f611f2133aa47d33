"""Non-DICOM rasters (TIFF through tifffile, everything else through Pillow) -> "L" or "RGB" image.

tifffile reads what medical TIFFs hold and Pillow does not (16-bit and float samples, multi-page
stacks, most compressions through imagecodecs); Pillow covers PNG, JPEG, BMP, GIF, WebP and friends.
Both end in the same two modes: greyscale stays one channel, everything else becomes RGB.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from .encode import fit_size, percentile_range, to_uint8
from .errors import ImageError, UnrecognisedFormatError
from .options import ConvertOptions

ALPHA_MODES = {"LA": "L", "PA": "RGB", "RGBA": "RGB"}
HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def check_pixels(pixels: int, options: ConvertOptions) -> None:
    """The decompression-bomb guard, applied to a declared size before any pixels are decoded."""
    if pixels > options.max_pixels:
        raise ImageError(
            f"image of {pixels} pixels exceeds max_pixels={options.max_pixels} (decompression-bomb guard)"
        )


def read_tiff(path: Path, options: ConvertOptions) -> Image.Image:
    """Decode the chosen page of a TIFF.

    Only pages shaped like the first count as frames: the others are thumbnails or pyramid levels.
    """
    with tifffile.TiffFile(path) as tif:
        first = tif.pages.first
        pages = [page for page in tif.pages if page.shape == first.shape]
        page = pages[options.frame_index(len(pages))]
        check_pixels(page.imagewidth * page.imagelength * page.imagedepth, options)
        arr = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: samples first
            arr = np.moveaxis(arr, 0, -1)
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
            # The colour map holds 16-bit RGB entries, indexed by the stored value.
            return Image.fromarray((page.colormap[:, arr] >> 8).astype(np.uint8).transpose(1, 2, 0))
        image = _array_to_image(arr, cmyk=page.photometric == tifffile.PHOTOMETRIC.SEPARATED)
        if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            image = ImageOps.invert(image)
    return image


def read_pillow(path: Path, options: ConvertOptions) -> Image.Image:
    """Decode an image Pillow recognises, upright (EXIF orientation applied) and alpha on black.

    JPEGs are decoded at a reduced DCT scale (`draft`) when the output cap allows it: a 4x smaller
    decode of a 3000 x 3000 fundus photo is several times faster and loses nothing after resizing.
    """
    with own_bomb_guard():
        try:
            image = Image.open(path)
        except UnidentifiedImageError as exc:
            raise UnrecognisedFormatError() from exc
    with image:
        check_pixels(image.width * image.height, options)
        size = fit_size(*image.size, options.max_side)
        if size != image.size and image.draft(None, size):
            # Reduced decode: finish the resize here, to the exact size the full image implies.
            image = image.resize(size, Image.Resampling.LANCZOS)
        return _normalise(ImageOps.exif_transpose(image))


@contextmanager
def own_bomb_guard() -> Iterator[None]:
    """Switch off Pillow's own guard while opening: ours follows max_pixels and raises ImageError.

    Pillow's reads a module global and only warns below twice its limit; it is restored at once.
    """
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _normalise(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to "L" or "RGB"."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in HIGH_DEPTH_MODES:
        return Image.fromarray(_greyscale_to_uint8(np.asarray(image)))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ALPHA_MODES:
        return _on_black(image)
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _on_black(image: Image.Image) -> Image.Image:
    """Composite an image with alpha onto black: transparent areas become background, not noise."""
    mode = ALPHA_MODES[image.mode]
    out = Image.new(mode, image.size)
    out.paste(image.convert(mode), mask=image.getchannel("A"))
    return out


def _array_to_image(arr: np.ndarray, cmyk: bool) -> Image.Image:
    """(H, W) or (H, W, samples) array of any depth -> "L" or "RGB" image."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return Image.fromarray(_greyscale_to_uint8(arr))
    if arr.ndim != 3 or arr.shape[-1] < 2:
        raise ImageError(f"unsupported TIFF sample layout: array of shape {arr.shape}")
    if arr.dtype.kind in "ui" and arr.dtype != np.uint8:
        arr = to_uint8(arr, 0, np.iinfo(arr.dtype).max)  # keeps colours and alpha in proportion
    elif arr.dtype.kind == "f":
        arr = to_uint8(arr, *percentile_range(arr))
    samples = arr.shape[-1]
    if cmyk and samples >= 4:
        return Image.fromarray(np.ascontiguousarray(arr[..., :4]), "CMYK").convert("RGB")
    if samples == 2:
        return _on_black(Image.fromarray(np.ascontiguousarray(arr), "LA"))
    if samples == 3:
        return Image.fromarray(np.ascontiguousarray(arr))
    return _on_black(Image.fromarray(np.ascontiguousarray(arr[..., :4]), "RGBA"))  # extra samples dropped


def _greyscale_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    return to_uint8(arr, *percentile_range(arr))
