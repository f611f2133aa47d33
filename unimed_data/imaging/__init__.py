"""Image decoding and encoding: any supported medical image file -> a capped, metadata-free JPEG."""

from .convert import convert_file
from .encode import EncodedImage
from .errors import ImageError, TooSmallError
from .options import ConvertOptions

__all__ = ["ConvertOptions", "EncodedImage", "ImageError", "TooSmallError", "convert_file"]
