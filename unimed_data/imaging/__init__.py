"""Image decoding and encoding: any supported medical image file -> a capped, metadata-free JPEG.

The decoders (Pillow, pydicom, tifffile, numpy) load on first use of `convert_file` or
`EncodedImage`, not with the package: every command reads `ConvertOptions`, few decode images.
"""

from .errors import ImageError, TooSmallError
from .options import ConvertOptions

__all__ = ["ConvertOptions", "EncodedImage", "ImageError", "TooSmallError", "convert_file"]


def __getattr__(name: str):
    if name == "convert_file":
        from .convert import convert_file

        return convert_file
    if name == "EncodedImage":
        from .encode import EncodedImage

        return EncodedImage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
