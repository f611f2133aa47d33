"""Which rows of a corpus are one image, and which meet a protected evaluation image.

Rows are numbered across the build's tables; what is held per row is small fixed-width arrays
(a 64-bit prefix of the pixel digest, the perceptual hash, a 64-bit hash of the path tail), so
memory grows with the hash table, not with the images. Near matches are found through
`HashIndex` (never all pairs) and confirmed on thumbnails, which the caller fetches for the
candidate rows only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from unimed_data.hash_index import HashIndex, popcount
from unimed_data.imaging.thumb_compare import thumb_difference


def digest64(hex_digest: str | None) -> int:
    """The first 64 bits of a hex digest as int64 (0 for none: such rows never match exactly)."""
    if not hex_digest:
        return 0
    return int.from_bytes(bytes.fromhex(hex_digest[:16]), "big", signed=True) or 1


def text64(text: str | None) -> int:
    if not text:
        return 0
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True) or 1


@dataclass
class Corpus:
    """Per row: pixel digest prefix, perceptual hash, path-tail hash, and whether it has a
    fingerprint (rows of tables converted before fingerprints existed have none)."""

    pixels: np.ndarray  # int64
    phash: np.ndarray  # int64
    tails: np.ndarray  # int64
    has_hash: np.ndarray  # bool
    series: np.ndarray  # int64: a hash of (table, patient); 0 where the source names no patient

    def __len__(self) -> int:
        return len(self.pixels)


class UnionFind:
    def __init__(self, size: int):
        self.parent = np.arange(size)

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class Pair:
    """Two rows found to be one image."""

    a: int
    b: int


class CorpusIndex:
    """Lookups into a corpus's rows: by pixel digest, by path tail, and by hash within a radius
    (one `HashIndex` entry per distinct hash, each standing for all rows that have it)."""

    def __init__(self, corpus: Corpus, rows: np.ndarray):
        self.corpus = corpus
        self.by_pixels = rows[np.argsort(corpus.pixels[rows], kind="stable")]
        self.by_tail = rows[np.argsort(corpus.tails[rows], kind="stable")]
        self.sorted = {"pixels": corpus.pixels[self.by_pixels], "tails": corpus.tails[self.by_tail]}
        hashed = rows[corpus.has_hash[rows]]
        self.values, inverse = np.unique(corpus.phash[hashed], return_inverse=True)
        self.by_value = hashed[np.argsort(inverse, kind="stable")]  # rows grouped by distinct hash
        self.value_starts = np.searchsorted(np.sort(inverse), np.arange(len(self.values) + 1))
        self.index = HashIndex(self.values)

    def rows_of_value(self, value_id: int) -> np.ndarray:
        return self.by_value[self.value_starts[value_id] : self.value_starts[value_id + 1]]

    def same(self, column: str, value: int) -> np.ndarray:
        """Rows whose `pixels` or `tails` equal `value` (0 matches nothing)."""
        if value == 0:
            return self.by_pixels[:0]
        order, values = (self.by_pixels if column == "pixels" else self.by_tail), self.sorted[column]
        return order[np.searchsorted(values, value, "left") : np.searchsorted(values, value, "right")]

    def exact_pairs(self) -> list[Pair]:
        """Each row whose pixels equal an earlier row's, paired with the first such row."""
        order = self.by_pixels[self.corpus.pixels[self.by_pixels] != 0]
        values = self.corpus.pixels[order]
        same = np.nonzero(values[1:] == values[:-1])[0] + 1
        starts = np.searchsorted(values, values[same], "left")
        return [Pair(int(order[s]), int(order[i])) for s, i in zip(starts, same, strict=True)]

    def near_candidates(self, radius: int) -> list[tuple[int, int, int]]:
        """(row, row, distance) pairs within `radius`: each row paired with the first row of its
        hash, and the first rows of distinct hashes within `radius` of each other."""
        heads = self.by_value[self.value_starts[:-1]]
        counts = np.diff(self.value_starts)
        head_of = np.repeat(heads, counts)
        others = head_of != self.by_value
        pairs = [(int(a), int(b), 0) for a, b in zip(head_of[others], self.by_value[others], strict=True)]
        for query, found, distance in self.index.search(self.values, radius):
            keep = query < found
            pairs.extend(
                (int(heads[q]), int(heads[f]), int(d))
                for q, f, d in zip(query[keep], found[keep], distance[keep], strict=True)
            )
        return pairs


def across_series(corpus: Corpus, pairs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The near pairs that are not two images of one patient in one source: neighbouring slices or
    frames of a series look alike but are distinct images (identical pixels still match)."""
    return [(a, b, d) for a, b, d in pairs if corpus.series[a] == 0 or corpus.series[a] != corpus.series[b]]


def confirmed(
    pairs: list[tuple[int, int, int]], thumb: Callable[[int], bytes | None], max_difference: float
) -> list[Pair]:
    """The candidate pairs whose thumbnails agree (`thumb(row)`: None where a row has none)."""
    agree = []
    for a, b, _ in pairs:
        x, y = thumb(a), thumb(b)
        if x is not None and y is not None and thumb_difference(x, y) <= max_difference:
            agree.append(Pair(a, b))
    return agree


def groups(size: int, pairs: list[Pair]) -> dict[int, list[int]]:
    """Groups of two or more rows joined by `pairs`, by their smallest row."""
    union = UnionFind(size)
    for pair in pairs:
        union.union(pair.a, pair.b)
    members: dict[int, list[int]] = {}
    for row in sorted({row for pair in pairs for row in (pair.a, pair.b)}):
        members.setdefault(union.find(row), []).append(row)
    return {root: rows for root, rows in members.items() if len(rows) > 1}


def hamming(a: int, b: int) -> int:
    return int(popcount(np.array([a ^ b], dtype=np.int64).view(np.uint64))[0])
