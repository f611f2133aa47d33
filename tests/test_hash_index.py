"""The hash index finds exactly the pairs a brute-force Hamming comparison finds."""

from __future__ import annotations

import numpy as np
import pytest

from unimed_data.hash_index import HashIndex, popcount


@pytest.mark.parametrize("radius", [0, 3, 8, 12])
def test_every_pair_within_the_radius_and_no_other(radius):
    rng = np.random.default_rng(radius)
    hashes = rng.integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)
    queries = hashes[:300].copy().view(np.uint64)
    for i in range(len(queries)):  # near copies: up to 14 bits flipped
        for bit in rng.choice(64, rng.integers(0, 15), replace=False):
            queries[i] ^= np.uint64(1) << np.uint64(bit)
    queries = np.concatenate([queries, rng.integers(0, 2**63, 300, dtype=np.int64).view(np.uint64)])
    found = {
        (int(q), int(h), int(d))
        for qs, hs, ds in HashIndex(hashes).search(queries.view(np.int64), radius)
        for q, h, d in zip(qs, hs, ds, strict=True)
    }
    expected = set()
    for q, value in enumerate(queries):
        distance = popcount(hashes.view(np.uint64) ^ value)
        expected |= {(q, int(h), int(distance[h])) for h in np.nonzero(distance <= radius)[0]}
    assert found == expected


def test_a_radius_beyond_the_hash_is_refused():
    with pytest.raises(ValueError, match="radius must be"):
        next(HashIndex(np.zeros(4, dtype=np.int64)).search(np.zeros(1, dtype=np.int64), 64))
