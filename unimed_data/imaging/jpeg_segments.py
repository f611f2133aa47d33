"""A JPEG's marker segments, read far enough to keep its compressed data and drop its metadata.

A source JPEG that already fits the size cap needs no re-encode (which costs time and a second
generation of compression loss): its entropy-coded data is kept byte for byte, and only the
segments that carry metadata go: APP1-APP13 and APP15 (EXIF/XMP/ICC/IPTC, thumbnails, vendor
blocks), COM, and every APP0 but a JFIF one. Decoders read the colour space of three components
from the JFIF and Adobe (APP14) markers, so both stay: the Adobe one as it is (a few flags), a
JFIF one replaced by a plain one without its density or thumbnail. Only baseline or extended-sequential 8-bit JPEGs with one or three
components qualify: progressive, lossless, hierarchical and 12-bit files are re-encoded like
any other source. Bytes after the end-of-image marker (appended files) are dropped too.
"""

from __future__ import annotations

import re

SOI, EOI, SOS, COM, APP0, APP14 = 0xD8, 0xD9, 0xDA, 0xFE, 0xE0, 0xEE
PLAIN_JFIF = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"  # v1.1, 1:1, no thumbnail
SEQUENTIAL_FRAMES = {0xC0, 0xC1}  # SOF0 baseline, SOF1 extended sequential (Huffman)
OTHER_FRAMES = {0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


def strip_metadata(data: bytes) -> bytes | None:
    """`data` without metadata segments, or None when it is not a sequential 8-bit grey or colour
    JPEG whose structure reads cleanly to its end-of-image marker."""
    if data[:2] != b"\xff\xd8":
        return None
    kept = bytearray(b"\xff\xd8")
    pos, frame_ok = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill bytes before a marker
            pos += 1
            continue
        if marker in STANDALONE or marker in (SOI, EOI):
            return None  # not expected between segments
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            return None
        if marker in SEQUENTIAL_FRAMES:
            frame_ok = _sequential_8bit(data[pos + 4 : end])
            if not frame_ok:
                return None
        elif marker in OTHER_FRAMES:
            return None
        if marker == APP0 and data[pos + 4 : pos + 9] == b"JFIF\x00" and PLAIN_JFIF not in kept:
            kept += PLAIN_JFIF
        elif not _is_metadata(marker):
            kept += data[pos:end]
        pos = end
        if marker == SOS:
            scan_end = _entropy_end(data, pos)
            if scan_end is None:
                return None
            kept += data[pos:scan_end]
            pos = scan_end
            if data[pos + 1] == EOI:
                return bytes(kept + b"\xff\xd9") if frame_ok else None
    return None


def _is_metadata(marker: int) -> bool:
    return marker == COM or (0xE0 <= marker <= 0xEF and marker != APP14)


def _sequential_8bit(frame: bytes) -> bool:
    """A frame header (after its length) of 8-bit samples with one or three components."""
    return len(frame) >= 6 and frame[0] == 8 and frame[5] in (1, 3)


def _entropy_end(data: bytes, pos: int) -> int | None:
    """Where a scan's entropy-coded data ends: the next marker that is not a stuffed 0xFF00 or a
    restart marker (fill bytes before it included); None when the data ends first (a truncated
    file)."""
    found = _NEXT_MARKER.search(data, pos)
    return None if found is None else found.start()


# A 0xFF before a marker code; of fill bytes (0xFF 0xFF ... code) the last. No quantifier, so the
# regex engine scans for the literal 0xFF at C speed (twenty times faster than with `\xff+`).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
