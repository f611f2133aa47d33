"""The FLAIR dataframes: the real ODIR and REFUGE CSVs, and malformed `categories` cells."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from unimed_data.layouts import Item, ItemError, iter_items
from unimed_data.manifest import Manifest

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "annotations"
needs_shared = pytest.mark.skipif(not ANNOTATIONS.is_dir(), reason=f"shared data not found at {ANNOTATIONS}")


def manifest(**layout) -> Manifest:
    return Manifest.model_validate(
        {"name": "flair", "modality": "fundus", "license": "research", "layout": {"type": "flair", **layout}}
    )


def simple_counts(path: Path) -> tuple[int, Counter]:
    """Row count and per-category counts by plain string handling, independent of the layout code."""
    counts: Counter = Counter()
    rows = 0
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            rows += 1
            for part in record["categories"].strip("[]").split(","):
                counts[part.strip().strip("'\"")] += 1
    return rows, counts


@needs_shared
@pytest.mark.parametrize("name", ["08_ODIR200x3.csv", "25_REFUGE.csv"])
def test_real_flair_csvs_yield_one_item_per_row_with_their_categories(name):
    rows, counts = simple_counts(ANNOTATIONS / name)
    entries = list(iter_items(manifest(csv=name), ANNOTATIONS))
    assert all(isinstance(entry, Item) for entry in entries) and len(entries) == rows
    assert Counter(label for entry in entries for label in entry.labels) == counts
    first = next(csv.DictReader((ANNOTATIONS / name).open()))
    assert entries[0].source_path == first["image"] and entries[0].origin == f"{name}:2"


@needs_shared
def test_patient_pattern_groups_both_eyes_of_an_odir_patient():
    layout = {"csv": "08_ODIR200x3.csv", "patient_pattern": r"(\d+)_(?:left|right)\.\w+$"}
    entries = list(iter_items(manifest(**layout), ANNOTATIONS))
    assert all(entry.patient for entry in entries)
    assert {(e.source_path, e.patient) for e in entries[:2]} == {
        ("08_ODIR-5K/preprocessed_images/0_right.jpg", "0"),
        ("08_ODIR-5K/preprocessed_images/0_left.jpg", "0"),
    }


def test_malformed_categories_are_row_errors_and_never_evaluated(tmp_path):
    (tmp_path / "d.csv").write_text(
        ",image,atributes,categories\n"
        "0,a.jpg,[],\"['glaucoma', 'cataract']\"\n"
        "1,b.jpg,[],['']\n"
        "2,c.jpg,[],[1]\n"
        "3,d.jpg,[],glaucoma\n"
        "4,e.jpg,[],\"__import__('os').system('echo hacked')\"\n"
        "5,,[],['normal']\n"
    )
    entries = list(iter_items(manifest(csv="d.csv", image_root="imgs"), tmp_path))
    assert entries[0] == Item("imgs/a.jpg", "imgs/a.jpg", labels=["glaucoma", "cataract"], origin="d.csv:2")
    assert [entry.reason for entry in entries[1:]] == [
        "d.csv:3: column 'categories': empty category list",
        "d.csv:4: column 'categories': expected a list of strings, got '[1]'",
        "d.csv:5: column 'categories': not a Python list literal: 'glaucoma'",
        "d.csv:6: column 'categories': not a Python list literal: \"__import__('os').system('echo hacked')\"",
        "d.csv:7: column 'image': empty path",
    ]
    assert all(isinstance(entry, ItemError) for entry in entries[1:])
