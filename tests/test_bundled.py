"""Where the shipped data folders are read from: in a checkout, its top level (the installed-wheel
case is tests/test_wheel.py)."""

from pathlib import Path

import pytest

from unimed_data.bundled import NAMES, bundled

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", NAMES)
def test_a_checkout_reads_its_top_level_folders(name):
    assert bundled(name) == REPO / name and any(bundled(name).iterdir())


def test_only_the_shipped_folders_are_asked_for():
    with pytest.raises(ValueError, match="not a bundled folder"):
        bundled("tests")
