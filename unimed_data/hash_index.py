"""Every pair of 64-bit hashes within a Hamming radius, without comparing all pairs.

Multi-index hashing (Norouzi et al.): each hash is cut into `m` blocks. Two hashes at most `r`
bits apart differ in at most `r // m` bits of at least one block (pigeonhole), so looking up, in
each block's sorted table, the query block's values within that many bits finds every pair within
`r`; the candidates are then checked on all 64 bits. `m` is about 64 / log2(size), which keeps a
table's buckets near one hash each. Memory is the hashes and `m` sorted tables (about 40 bytes a
hash); queries go in chunks, so a search holds one chunk's candidates at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import combinations, pairwise

import numpy as np

CHUNK = 1024  # queries looked up at once
BITS = 64


def block_masks(width: int, radius: int) -> np.ndarray:
    """Every `width`-bit mask with at most `radius` bits set."""
    masks = [0]
    for bits in range(1, min(radius, width) + 1):
        masks.extend(sum(1 << i for i in chosen) for chosen in combinations(range(width), bits))
    return np.array(masks, dtype=np.uint32)


def popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values)


def block_count(size: int) -> int:
    """About 64 / log2(size) blocks, at least 3 (a block of 32 bits would need a 2^32 lookup table)."""
    return min(8, max(3, round(BITS / math.log2(max(size, 4)))))


class HashIndex:
    """A searchable set of 64-bit hashes (given as int64 or uint64; positions are their ids)."""

    def __init__(self, hashes: np.ndarray):
        self.hashes = np.ascontiguousarray(hashes).view(np.uint64)
        blocks = block_count(len(self.hashes))
        edges = [round(i * BITS / blocks) for i in range(blocks + 1)]
        self.blocks = list(pairwise(edges))  # (first bit, end bit)
        self.tables = []
        for block in self.blocks:
            values = self._values(self.hashes, block)
            order = np.argsort(values, kind="stable")
            # starts[v]..starts[v + 1] are the positions of value v in the sorted table: a lookup
            # is then two reads, not a binary search (2^width entries; with at least three
            # blocks a width is at most 22 bits).
            starts = np.searchsorted(values[order], np.arange((1 << (block[1] - block[0])) + 1))
            self.tables.append((starts.astype(np.int64), order))

    @staticmethod
    def _values(hashes: np.ndarray, block: tuple[int, int]) -> np.ndarray:
        first, end = block
        mask = np.uint64((1 << (end - first)) - 1)
        return ((hashes >> np.uint64(first)) & mask).astype(np.uint32)

    def search(self, queries: np.ndarray, radius: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(query ids, hash ids, distances) of every pair within `radius` bits, chunk by chunk,
        each pair once, sorted by query id then hash id."""
        if not 0 <= radius < BITS:
            raise ValueError(f"radius must be 0..{BITS - 1}, got {radius}")
        queries = np.ascontiguousarray(queries).view(np.uint64)
        masks = [block_masks(end - first, radius // len(self.blocks)) for first, end in self.blocks]
        for start in range(0, len(queries), CHUNK):
            chunk = queries[start : start + CHUNK]
            found = [self._near(chunk, b, masks[b], radius) for b in range(len(self.blocks))]
            pairs = np.unique(np.concatenate(found))  # query * size + hash: sorted, each pair once
            if len(pairs):
                query, hash_id = np.divmod(pairs, len(self.hashes))
                distance = popcount(chunk[query] ^ self.hashes[hash_id]).astype(np.int16)
                yield query + start, hash_id, distance

    def _near(self, chunk: np.ndarray, block: int, masks: np.ndarray, radius: int) -> np.ndarray:
        """The pairs (as query * size + hash id) within `radius` among those agreeing with a query
        within the masks' bits on `block`."""
        starts, order = self.tables[block]
        probes = (self._values(chunk, self.blocks[block])[:, None] ^ masks[None, :]).ravel()
        low = starts[probes]
        counts = starts[probes + 1] - low
        total = int(counts.sum())
        query = np.repeat(np.arange(len(chunk)).repeat(len(masks)), counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        hash_id = order[np.repeat(low, counts) + offsets]
        near = popcount(chunk[query] ^ self.hashes[hash_id]) <= radius
        return query[near].astype(np.int64) * len(self.hashes) + hash_id[near]
