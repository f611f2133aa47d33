"""Split rules: patient-level hashing, source-given splits and fixed splits."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from pydantic import ValidationError

from unimed_data.splits import ColumnSplit, FixedSplit, HashSplit, assign_split, normalise_split

PATIENTS = [f"P{number:05d}" for number in range(1000)]
ITEMS = [(f"{patient}/img{image}.png", patient) for patient in PATIENTS for image in range(5)]


def hash_splits(items, rule=None, seed=0) -> dict[str, str]:
    rule = rule or HashSplit()
    return {
        item_id: assign_split(rule, item_id=item_id, patient=patient, source_split=None, seed=seed)
        for item_id, patient in items
    }


def test_no_patient_is_in_two_splits():
    splits = hash_splits(ITEMS)
    per_patient = defaultdict(set)
    for item_id, patient in ITEMS:
        per_patient[patient].add(splits[item_id])
    assert all(len(found) == 1 for found in per_patient.values())


def test_fractions_are_roughly_respected():
    rule = HashSplit(fractions={"train": 0.8, "val": 0.1, "test": 0.1})
    counts = Counter(hash_splits([(p, p) for p in PATIENTS], rule).values())
    assert abs(counts["train"] / 1000 - 0.8) < 0.05
    assert abs(counts["val"] / 1000 - 0.1) < 0.04
    assert abs(counts["test"] / 1000 - 0.1) < 0.04


def test_assignment_ignores_row_order_and_depends_on_the_seed():
    shuffled = ITEMS[:]
    random.Random(7).shuffle(shuffled)
    assert hash_splits(shuffled) == hash_splits(ITEMS)
    assert hash_splits(ITEMS[:50]) == {
        key: value for key, value in hash_splits(ITEMS).items() if key in dict(ITEMS[:50])
    }
    assert hash_splits(ITEMS, seed=1) != hash_splits(ITEMS)


def test_items_without_a_patient_are_grouped_by_their_own_id():
    rule = HashSplit(fractions={"train": 0.5, "test": 0.5})
    alone = {assign_split(rule, item_id=f"x{n}", patient=None, source_split=None, seed=3) for n in range(50)}
    assert alone == {"train", "test"}


def test_a_zero_fraction_split_is_never_chosen():
    rule = HashSplit(fractions={"train": 0.7, "val": 0.0, "test": 0.3})
    assert "val" not in set(hash_splits(ITEMS, rule).values())


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"train": 0.9, "val": 0.05}, "fractions must sum to 1, they sum to 0.95"),
        ({"train": 1.2, "val": -0.2}, "fractions must not be negative"),
    ],
)
def test_fractions_are_validated(fractions, message):
    with pytest.raises(ValidationError, match=message):
        HashSplit(fractions=fractions)


@pytest.mark.parametrize(
    ("raw", "split"),
    [
        ("train", "train"),
        ("Training", "train"),
        ("valid", "val"),
        (" Validation ", "val"),
        ("dev", "val"),
        ("val", "val"),
        ("TEST", "test"),
    ],
)
def test_source_split_names_are_normalised(raw, split):
    assert normalise_split(raw) == split
    assert assign_split(ColumnSplit(by="column"), item_id="a", patient="p", source_split=raw, seed=0) == split


def test_column_rule_needs_a_known_split_from_the_source():
    with pytest.raises(ValueError, match="the source gives no split"):
        assign_split(ColumnSplit(by="column"), item_id="a", patient=None, source_split=None, seed=0)
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        assign_split(ColumnSplit(by="column"), item_id="a", patient=None, source_split="holdout", seed=0)


def test_fixed_rule_puts_everything_in_one_split():
    rule = FixedSplit(by="fixed", split="test")
    assert {
        assign_split(rule, item_id=i, patient=p, source_split="train", seed=0) for i, p in ITEMS[:20]
    } == {"test"}


def test_column_rule_moves_a_seeded_patient_slice_of_train_to_val():
    """CBIS-DDSM publishes train and test only: `val_fraction` of the train patients become val."""
    rule = ColumnSplit(by="column", val_fraction=0.25)

    def split(patient: str, source: str, seed: int = 0, item: str = "a.dcm") -> str:
        return assign_split(rule, item_id=item, patient=patient, source_split=source, seed=seed)

    patients = [f"P_{n:05d}" for n in range(400)]
    train = Counter(split(p, "train") for p in patients)
    assert set(train) == {"train", "val"} and 0.2 < train["val"] / 400 < 0.3
    assert {split(p, "test") for p in patients} == {"test"}  # the official test stays whole
    assert all(split(p, "train", item="b.dcm") == split(p, "train") for p in patients)  # per patient
    assert [split(p, "train", seed=1) for p in patients] != [split(p, "train") for p in patients]
    with pytest.raises(ValidationError):
        ColumnSplit(by="column", val_fraction=1.0)
