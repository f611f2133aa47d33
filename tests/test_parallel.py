"""ordered_map: results in input order, on a pool, and a worker that dies costs only its own item."""

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from unimed_data.parallel import ordered_map


def square(x: int) -> int:
    return x * x


def die_on_seven(x: int) -> int:
    if x == 7:
        os._exit(1)  # what a segfault or an OOM kill in a native decoder looks like to the pool
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_input_order_across_windows(workers):
    assert list(ordered_map(square, range(50), workers=workers, desc="t", window=8)) == [
        x * x for x in range(50)
    ]


def test_a_dying_worker_is_pinned_on_its_item_and_the_rest_go_on():
    results = list(ordered_map(die_on_seven, range(20), workers=2, desc="t", window=6, on_crash=lambda x: -x))
    assert results == [-7 if x == 7 else x * x for x in range(20)]


def test_without_on_crash_a_dying_worker_is_an_error_not_a_hang():
    with pytest.raises(BrokenProcessPool):
        list(ordered_map(die_on_seven, range(10), workers=2, desc="t"))
