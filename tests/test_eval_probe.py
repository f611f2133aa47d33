"""Linear probe: separable data is learned, random labels stay at chance, C comes from the grid, few-shot, multi-label."""

from __future__ import annotations

import json

import numpy as np
import pytest
from unimed_train.eval.probe import DEFAULT_CS, few_shot_indices, linear_probe

CS = (0.1, 10.0, 1000.0)  # a short grid keeps the tests fast


def _blobs(n_per_class, n_classes, d=16, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * 3
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + rng.normal(0, spread, size=(len(y), d))
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def test_separable_blobs_give_perfect_accuracy():
    x, y = _blobs(60, 3)
    tx, ty = _blobs(30, 3, seed=0)  # same centres (same seed), fresh noise below
    tx = tx + np.random.default_rng(1).normal(0, 0.05, size=tx.shape)
    m = linear_probe(x, y, tx, ty, cs=CS, classnames=["a", "b", "c"])
    assert m["accuracy"] >= 0.98 and m["balanced_accuracy"] >= 0.98
    assert m["macro_auroc"] >= 0.99 and m["f1"] >= 0.98
    assert m["C"] in CS and m["val_source"] == "carved"
    assert m["n_train"] == 180 and m["n_test"] == 90 and m["k_shot"] is None  # refit on train + val
    json.dumps(m, allow_nan=False)
    assert all(not isinstance(v, np.generic) for v in m.values())


def test_random_labels_are_at_chance():
    rng = np.random.default_rng(2)
    x, tx = rng.normal(size=(600, 8)), rng.normal(size=(2000, 8))
    y, ty = rng.integers(0, 4, 600), rng.integers(0, 4, 2000)
    m = linear_probe(x, y, tx, ty, cs=CS)
    assert abs(m["accuracy"] - 0.25) < 0.05
    assert abs(m["macro_auroc"] - 0.5) < 0.05


def test_binary_probe_auroc():
    x, y = _blobs(40, 2, spread=2.5, seed=3)
    tx, ty = _blobs(100, 2, spread=2.5, seed=3)
    m = linear_probe(x, y, tx, ty, cs=CS)
    assert 0.5 < m["accuracy"] <= 1.0 and 0.5 < m["macro_auroc"] <= 1.0


def test_chosen_c_comes_from_the_validation_split():
    x, y = _blobs(100, 2, spread=1.0, seed=4)
    keep = np.flatnonzero(y == 0).tolist() + np.flatnonzero(y == 1)[:12].tolist()  # imbalanced train
    vx, vy = _blobs(20, 2, spread=1.0, seed=4)  # balanced val
    m = linear_probe(x[keep], y[keep], vx, vy, val_x=vx, val_y=vy, cs=(1e-4, 3.0))
    # C = 1e-4 shrinks the weights to ~0, so the (unpenalised) intercept predicts the majority class
    # everywhere: val accuracy 0.5. The grid value that separates the classes must win.
    assert m["C"] == 3.0 and m["val_source"] == "given" and m["val_score"] > 0.9
    assert m["n_train"] == len(keep) + 40 and m["n_val"] == 40
    assert DEFAULT_CS[0] < 1.0 < DEFAULT_CS[-1] and list(DEFAULT_CS) == sorted(DEFAULT_CS)


def test_few_shot_keeps_k_per_class():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    idx = few_shot_indices(y, 5, seed=0)
    assert np.bincount(y[idx]).tolist() == [5, 3, 5]  # class 1 has only 3: all kept
    assert len(np.unique(idx)) == len(idx)
    assert np.array_equal(idx, few_shot_indices(y, 5, seed=0))
    assert not np.array_equal(idx, few_shot_indices(y, 5, seed=1))
    ml = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 0], [0, 1]])
    kept = ml[few_shot_indices(ml, 1, seed=0)]
    assert np.all(kept.sum(axis=0) >= 1) and len(kept) <= 2
    with pytest.raises(ValueError, match="k must be"):
        few_shot_indices(y, 0, seed=0)


def test_few_shot_probe_trains_on_k_per_class_only():
    x, y = _blobs(40, 4, seed=5)
    tx, ty = _blobs(20, 4, seed=5)
    m = linear_probe(x, y, tx, ty, cs=CS, k_shot=4, seed=0)
    assert m["k_shot"] == 4 and m["n_train"] == 16  # no val samples added in few-shot
    assert m["accuracy"] >= 0.9
    assert linear_probe(x, y, tx, ty, cs=CS, k_shot=1, seed=0)["n_train"] == 4


def test_deterministic_for_a_seed():
    x, y = _blobs(30, 3, spread=2.0, seed=6)
    tx, ty = _blobs(30, 3, spread=2.0, seed=7)
    a = linear_probe(x, y, tx, ty, cs=CS, k_shot=5, seed=3)
    assert a == linear_probe(x, y, tx, ty, cs=CS, k_shot=5, seed=3)


def test_multilabel_probe_with_unknown_targets():
    rng = np.random.default_rng(8)
    w = rng.normal(size=(12, 3))

    def make(n):
        x = rng.normal(size=(n, 12))
        return x, (x @ w > 0).astype(int)

    x, y = make(200)
    tx, ty = make(150)
    y[:20, 0] = -1  # unknown targets in train and test are masked per class
    ty[:10, 1] = -1
    m = linear_probe(x, y, tx, ty, multilabel=True, cs=CS, classnames=["a", "b", "c"])
    assert m["macro_auroc"] > 0.95 and m["mean_average_precision"] > 0.9
    assert m["f1"] > 0.8 and set(m["per_class_auroc"]) == {"a", "b", "c"}
    assert m["C"] in CS and "accuracy" not in m
    json.dumps(m, allow_nan=False)
    rx, ry = rng.normal(size=(3000, 12)), rng.integers(0, 2, size=(3000, 3))  # labels independent of x
    r = linear_probe(x, rng.permutation(y), rx, ry, multilabel=True, cs=(0.1, 10.0))
    assert abs(r["macro_auroc"] - 0.5) < 0.04
    fs = linear_probe(x, y, tx, ty, multilabel=True, cs=(0.1, 10.0), k_shot=5)
    assert fs["n_train"] <= 15


def test_a_test_class_unseen_in_training_is_scored_as_never_predicted():
    x, y = _blobs(10, 3)
    m = linear_probe(x, np.minimum(y, 1), x, y, cs=CS, classnames=["a", "b", "c"])
    assert m["unseen_in_train"] == ["c"]
    assert m["balanced_accuracy"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(2 / 3)


def test_probe_errors():
    x, y = _blobs(10, 3)
    with pytest.raises(ValueError, match=r"\(30,\).*\(29,\)"):
        linear_probe(x, y[:29], x, y, cs=CS)
    with pytest.raises(ValueError, match="feature dim"):
        linear_probe(x, y, x[:, :5], y, cs=CS)
    with pytest.raises(ValueError, match="N == 0"):
        linear_probe(x, y, x[:0], y[:0], cs=CS)
    with pytest.raises(ValueError, match="single class"):
        linear_probe(x, np.zeros(30, dtype=int), x, np.zeros(30, dtype=int), cs=CS)
    with pytest.raises(ValueError, match="both val_x and val_y"):
        linear_probe(x, y, x, y, val_x=x, cs=CS)
