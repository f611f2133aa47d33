"""What a file is, from its first bytes: the content decides, not the extension (medical archives
are full of DICOM files named `.jpg` or with no extension at all). No decoder is imported here."""

HEAD_SIZE = 132  # DICOM preamble (128 bytes) + 'DICM'; also covers the TIFF and JPEG magics
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
JPEG_MAGIC = b"\xff\xd8\xff"


def has_dicom_magic(head: bytes) -> bool:
    """Whether a file's first bytes hold the DICOM File Format's 'DICM' marker after the preamble."""
    return head[128:132] == b"DICM"


def is_tiff(head: bytes) -> bool:
    """Whether a file's first bytes are a TIFF or BigTIFF header."""
    return head[:4] in TIFF_MAGICS


def is_jpeg(head: bytes) -> bool:
    return head.startswith(JPEG_MAGIC)
