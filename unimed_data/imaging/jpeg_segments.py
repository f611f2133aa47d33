"""A JPEG's marker segments, read far enough to keep its compressed data and drop its metadata.

A source JPEG that already fits the size cap needs no re-encode (which costs time and a second
generation of compression loss): its entropy-coded data is kept byte for byte with the segments
a decoder needs (frame header, Huffman and quantisation tables, restart interval, scans), and
nothing else: EXIF, XMP, ICC, IPTC, comments, thumbnails, vendor blocks and any segment this
module does not know all go. Decoders read the colour space of three components from the JFIF
(APP0) and Adobe (APP14) markers, so those are rewritten, not dropped: a plain JFIF marker
without density or thumbnail, and the Adobe marker's 12 defined bytes without anything after
them. Only baseline or extended-sequential 8-bit JPEGs with one or three components and their own
tables qualify: progressive, lossless, hierarchical, arithmetic-coded and 12-bit files (and
motion-JPEG frames that rely on default tables) are re-encoded like any other source. Bytes
after the end-of-image marker (appended files) are dropped too.
"""

from __future__ import annotations

import re

SOI, EOI, SOS, COM, APP0, APP14, DNL = 0xD8, 0xD9, 0xDA, 0xFE, 0xE0, 0xEE, 0xDC
DHT, DQT, DRI = 0xC4, 0xDB, 0xDD
SEQUENTIAL_FRAMES = {0xC0, 0xC1}  # SOF0 baseline, SOF1 extended sequential (Huffman)
NEEDED = {DHT, DQT, DRI, SOS}
STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length
PLAIN_JFIF = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"  # v1.1, 1:1, no thumbnail
ADOBE_BYTES = 12  # "Adobe", version, two flag words, colour transform


def strip_metadata(data: bytes) -> bytes | None:
    """`data` with only the segments a decoder needs, or None when it is not a sequential 8-bit
    grey or colour JPEG whose structure reads cleanly to its end-of-image marker."""
    if data[:2] != b"\xff\xd8":
        return None
    kept, seen, pos = bytearray(b"\xff\xd8"), set(), 2
    while (segment := _segment(data, pos)) is not None:
        marker, start, end = segment
        piece = _kept(marker, data[start:end], seen)
        if piece is None:
            return None
        kept += piece
        seen.add(marker)
        pos = end
        if marker == SOS:
            if not (seen & SEQUENTIAL_FRAMES and {DHT, DQT} <= seen):
                return None
            scan_end = _entropy_end(data, pos)
            if scan_end is None:
                return None
            kept += data[pos:scan_end]
            pos = scan_end
            if data[pos + 1] == EOI:
                return bytes(kept + b"\xff\xd9")
    return None


def _segment(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """The marker segment at `pos` (after any fill bytes): (marker, start, end); None when the
    data is not a segment there."""
    while data[pos : pos + 2] == b"\xff\xff":  # fill bytes before a marker
        pos += 1
    if pos + 4 > len(data) or data[pos] != 0xFF:
        return None
    marker = data[pos + 1]
    length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    if marker in STANDALONE or marker in (SOI, EOI) or length < 2 or pos + 2 + length > len(data):
        return None
    return marker, pos, pos + 2 + length


def _kept(marker: int, segment: bytes, seen: set[int]) -> bytes | None:
    """What of a segment goes into the output (b"" for nothing), or None when the file does not
    qualify."""
    payload = segment[4:]
    if marker in SEQUENTIAL_FRAMES:
        return segment if _sequential_8bit(payload) else None
    if marker in NEEDED or (marker == DNL and len(payload) == 2):
        return segment
    if marker == APP0 and payload[:5] == b"JFIF\x00" and APP0 not in seen:
        return PLAIN_JFIF
    if marker == APP14 and payload[:5] == b"Adobe" and len(payload) >= ADOBE_BYTES and APP14 not in seen:
        return b"\xff\xee" + (2 + ADOBE_BYTES).to_bytes(2, "big") + payload[:ADOBE_BYTES]
    if 0xE0 <= marker <= 0xEF or marker == COM:
        return b""  # metadata
    return None  # a frame type or segment that is not passed through


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
