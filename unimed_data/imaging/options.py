"""Conversion options: one frozen value shared by every decoder and the encoder."""

from dataclasses import dataclass

FRAME_POLICIES = ("first", "middle", "last")
REENCODE_POLICIES = ("auto", "always")


@dataclass(frozen=True)
class ConvertOptions:
    """How an input image becomes the output JPEG.

    `max_side` caps the longest side (aspect kept, never upscaled). `min_side` refuses images whose
    shorter side is smaller (TooSmallError); 1, the default here, keeps every image, and a build's
    convert config raises it to leave icons and placeholders out of a corpus. `max_pixels` is the
    decompression-bomb guard, checked against the size a file declares before any pixels are
    decoded. `frame` picks which frame of a multi-frame DICOM or page of a multi-page TIFF is kept:
    the middle one by default, as the first and last slices of a series are often the least typical.
    `reencode`: "auto" keeps the compressed data of a source JPEG that needs no change (it fits the
    cap and is a sequential 8-bit grey or colour JPEG), with its metadata segments removed; "always"
    decodes and encodes every image. `jpeg_optimize` computes optimal Huffman tables when encoding:
    files 4-8 % smaller for 0-36 % more convert time (off by default: see the README).
    """

    max_side: int = 512
    min_side: int = 1
    jpeg_quality: int = 90
    max_pixels: int = 200_000_000
    frame: str = "middle"
    reencode: str = "auto"
    jpeg_optimize: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_side, int) or self.max_side < 1:
            raise ValueError(f"max_side must be a positive integer, got {self.max_side!r}")
        if not isinstance(self.min_side, int) or self.min_side < 1:
            raise ValueError(f"min_side must be a positive integer, got {self.min_side!r}")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an integer from 1 to 100, got {self.jpeg_quality!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer, got {self.max_pixels!r}")
        if self.frame not in FRAME_POLICIES:
            raise ValueError(f"frame must be one of {', '.join(FRAME_POLICIES)}; got {self.frame!r}")
        if self.reencode not in REENCODE_POLICIES:
            raise ValueError(f"reencode must be one of {', '.join(REENCODE_POLICIES)}; got {self.reencode!r}")

    def frame_index(self, count: int) -> int:
        """Index of the frame to keep among `count` frames (count >= 1)."""
        return {"first": 0, "middle": count // 2, "last": count - 1}[self.frame]
