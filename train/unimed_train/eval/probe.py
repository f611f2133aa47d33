"""Linear probe (logistic regression) on frozen image features, full-data and few-shot.

The protocol is CLIP's / CLIP_benchmark's: features are L2-normalised, the L2 regularisation
strength (sklearn's ``C`` = 1 / lambda) is chosen on a validation split, then the probe is refit:

* full data: on train + val with the chosen C (more data, same hyper-parameter);
* few-shot (``k_shot``): on the k-shot training subset only, because adding val would train on
  more labels than k per class (CLIP_benchmark does the same).

Without a validation split one is carved from train (seeded, stratified, 20 %) *before* the k-shot
subset is drawn from the rest, so val never overlaps the few-shot samples.
Everything is deterministic for a given seed (lbfgs has no randomness; splits use ``seed``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedShuffleSplit

from .metrics import _l2n, multilabel_metrics, positive_class

__all__ = ["DEFAULT_CS", "few_shot_indices", "linear_probe"]

# Half-decade grid 1e-2..1e4: L2-normalised features give small logits, so useful C values sit
# higher than for standardised features (OpenAI's CLIP probe searched up to 1e6).
DEFAULT_CS: tuple[float, ...] = tuple(float(10.0**e) for e in np.arange(-2.0, 4.01, 0.5))
VAL_FRACTION = 0.2
MAX_ITER = 1000


# --------------------------------------------------------------------------------------- helpers


def _features(x, name: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (N == 0)")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has feature dim {x.shape[1]}, train_x has {dim}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return _l2n(x)


def _labels(y, n: int, name: str, xname: str, multilabel: bool) -> np.ndarray:
    y = np.asarray(y)
    if multilabel:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[0] != n:
            raise ValueError(f"{name} must have shape ({n}, C) to match {xname}; got {y.shape}")
        y = np.where(np.isnan(y), -1.0, y)
        if not np.all(np.isin(y, (-1.0, 0.0, 1.0))):
            raise ValueError(f"{name}: multilabel targets must be 0, 1 or -1/NaN (unknown)")
        return y.astype(np.int64)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match {xname}; got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.number) and np.all(np.mod(y, 1) == 0)):
            raise ValueError(f"{name} must hold integer class ids")
        y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"{name} has negative class ids")
    return y


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    """One logistic regression; a constant target (one class only) becomes a constant predictor."""
    classes = np.unique(y)
    if len(classes) < 2:
        return float(classes[0])
    clf = LogisticRegression(C=c, max_iter=MAX_ITER)
    with warnings.catch_warnings():
        # Large C on (nearly) separable features stops at max_iter; the probe is still usable.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _proba_multiclass(clf, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N, len(classes)) probabilities in the order of ``classes``."""
    p = np.zeros((x.shape[0], len(classes)))
    cols = np.searchsorted(classes, clf.classes_)
    p[:, cols] = clf.predict_proba(x)
    return p


def _fit_multilabel(x: np.ndarray, y: np.ndarray, c: float) -> list:
    """One-vs-rest, one model per class on the rows where that class is known (target != -1)."""
    models = []
    for j in range(y.shape[1]):
        known = y[:, j] >= 0
        models.append(_fit(x[known], y[known, j], c) if known.any() else 0.0)
    return models


def _proba_multilabel(models: list, x: np.ndarray) -> np.ndarray:
    cols = [np.full(x.shape[0], m) if isinstance(m, float) else m.predict_proba(x)[:, 1] for m in models]
    return np.stack(cols, axis=1)


def _macro_auroc(proba: np.ndarray, y: np.ndarray, n_classes: int) -> float | None:
    """Mean one-vs-rest AUROC over test classes with positives and negatives (binary: the AUROC)."""
    onehot = np.eye(n_classes, dtype=np.int64)[y]
    return multilabel_metrics(proba, onehot)["macro_auroc"]


def few_shot_indices(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted row indices keeping ``k`` random samples per class (all of a class with fewer than k).

    1-D int labels: k per class. 2-D multi-label 0/1 targets: for every class, k random rows among
    its positives (the union, so a row may serve several classes; negatives come for free).
    Seeded with ``numpy.random.default_rng(seed)``, classes visited in sorted order.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    k = int(k)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if labels.ndim == 1:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    elif labels.ndim == 2:
        groups = [np.flatnonzero(labels[:, j] == 1) for j in range(labels.shape[1])]
    else:
        raise ValueError(f"labels must be 1-D (N,) or 2-D (N, C); got shape {labels.shape}")
    keep = [rng.choice(g, size=min(k, len(g)), replace=False) for g in groups if len(g)]
    if not keep:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(keep)).astype(np.int64)


def _carve_val(y: np.ndarray, seed: int, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): seeded split, stratified by class (multi-label: by the first positive class).

    Samples of a class with a single example stay in train (they cannot be stratified, and the
    probe must see every class).
    """
    strata = (np.where(y == 1, np.arange(y.shape[1]), y.shape[1]).min(axis=1)) if multilabel else y
    values, counts = np.unique(strata, return_counts=True)
    ok = np.isin(strata, values[counts >= 2])
    eligible = np.flatnonzero(ok)
    n_strata = int((counts >= 2).sum())
    if n_strata == 0:
        raise ValueError(
            "cannot carve a validation split: every class has a single training sample; pass val_x/val_y"
        )
    n_val = max(n_strata, math.ceil(VAL_FRACTION * len(eligible)))
    split = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    tr, va = next(split.split(np.zeros(len(eligible)), strata[eligible]))
    train_idx = np.sort(np.concatenate([np.flatnonzero(~ok), eligible[tr]]))
    return train_idx, np.sort(eligible[va])


# ---------------------------------------------------------------------------------------- probe


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    multilabel: bool = False,
    cs: Sequence[float] = DEFAULT_CS,
    k_shot: int | None = None,
    seed: int = 0,
    classnames: list[str] | None = None,
) -> dict:
    """Fit and score a logistic-regression probe; returns MedSLIP-style metrics as plain Python values.

    Multi-class (``train_y`` (N,) int): ``accuracy``, ``balanced_accuracy``, ``macro_auroc``
    (one-vs-rest over test classes; the AUROC itself when binary), macro ``f1``/``precision``/``recall``;
    a binary probe adds ``positive`` and its ``positive_precision``/``positive_recall``.
    Multi-label (``multilabel=True``, targets (N, C) in {0, 1}, -1 = unknown and masked per class):
    ``macro_auroc``, ``mean_average_precision``, macro ``f1``/``precision``/``recall`` at threshold 0.5
    (over known targets), ``per_class_auroc``. Both also give ``C`` (chosen), ``val_score`` (its
    validation accuracy, or macro AUROC for multi-label), ``n_train`` (samples of the final fit),
    ``n_val``, ``n_test``, ``k_shot``, ``val_source`` ("given" / "carved").
    A test class absent from the training data stays in the scores (never predicted, so its recall
    is 0) and is named in ``unseen_in_train``: small held-out splits often have such classes.
    """
    train_x = _features(train_x, "train_x")
    dim = train_x.shape[1]
    test_x = _features(test_x, "test_x", dim)
    train_y = _labels(train_y, train_x.shape[0], "train_y", "train_x", multilabel)
    test_y = _labels(test_y, test_x.shape[0], "test_y", "test_x", multilabel)
    if (val_x is None) != (val_y is None):
        raise ValueError("pass both val_x and val_y, or neither")
    cs = [float(c) for c in cs]
    if not cs or any(not (c > 0 and math.isfinite(c)) for c in cs):
        raise ValueError(f"cs must be a non-empty list of positive regularisation values; got {cs}")
    if k_shot is not None and int(k_shot) < 1:
        raise ValueError(f"k_shot must be >= 1 or None; got {k_shot}")

    tr_x, tr_y, val_x, val_y, val_source = _probe_data(
        train_x, train_y, val_x, val_y, k_shot, seed, multilabel
    )

    if multilabel:
        n_classes = train_y.shape[1]
        if test_y.shape[1] != n_classes or val_y.shape[1] != n_classes:
            raise ValueError(
                f"label columns differ: train {train_y.shape}, val {val_y.shape}, test {test_y.shape}"
            )
        if classnames is not None and len(classnames) != n_classes:
            raise ValueError(f"got {len(classnames)} classnames for {n_classes} label columns")
        return _probe_multilabel(tr_x, tr_y, val_x, val_y, test_x, test_y, cs, k_shot, val_source, classnames)

    return _probe_multiclass(
        train_y, tr_x, tr_y, val_x, val_y, test_x, test_y, cs, k_shot, val_source, classnames
    )


def _probe_data(train_x, train_y, val_x, val_y, k_shot: int | None, seed: int, multilabel: bool) -> tuple:
    """(tr_x, tr_y, val_x, val_y, val_source): val given or carved from train before the k-shot draw."""
    dim = train_x.shape[1]
    if val_x is not None:
        val_x = _features(val_x, "val_x", dim)
        val_y = _labels(val_y, val_x.shape[0], "val_y", "val_x", multilabel)
        tr_x, tr_y, val_source = train_x, train_y, "given"
    else:
        tr_idx, va_idx = _carve_val(train_y, seed, multilabel)
        tr_x, tr_y, val_x, val_y = train_x[tr_idx], train_y[tr_idx], train_x[va_idx], train_y[va_idx]
        val_source = "carved"
    if k_shot is not None:
        keep = few_shot_indices(tr_y, int(k_shot), seed)
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    return tr_x, tr_y, val_x, val_y, val_source


def _probe_multiclass(
    train_y, tr_x, tr_y, val_x, val_y, test_x, test_y, cs, k_shot, val_source, classnames
) -> dict:
    """The multi-class probe: C chosen by validation accuracy, then refit and scored on test."""
    n_classes = len(classnames) if classnames is not None else int(train_y.max()) + 1
    for name, y in (("train_y", train_y), ("val_y", val_y), ("test_y", test_y)):
        if classnames is not None and y.max() >= n_classes:
            raise ValueError(f"{name} has class id {int(y.max())} but there are {n_classes} classnames")
    fit_classes = np.unique(tr_y)
    # A held-out class the probe never saw is kept (it scores as never predicted), and named.
    unseen = np.setdiff1d(np.unique(test_y), fit_classes)
    unseen_names = [classnames[int(c)] if classnames is not None else str(int(c)) for c in unseen]
    if len(fit_classes) < 2:
        raise ValueError(f"the training data has a single class ({int(fit_classes[0])}); nothing to probe")

    best_c, best = cs[0], -1.0
    # First best wins: the grid order decides ties (pass the grid ascending for more regularisation).
    for c in cs:
        score = float(accuracy_score(val_y, _fit(tr_x, tr_y, c).predict(val_x)))
        if score > best:
            best_c, best = c, score

    fit_x, fit_y = _final_fit_data(tr_x, tr_y, val_x, val_y, k_shot)
    clf = _fit(fit_x, fit_y, best_c)
    pred = clf.predict(test_x)
    proba = _proba_multiclass(clf, test_x, np.arange(n_classes))
    p, r, f, _ = precision_recall_fscore_support(
        test_y, pred, labels=np.unique(test_y), average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(test_y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(test_y, pred)),
        "macro_auroc": _macro_auroc(proba, test_y, n_classes),
        "f1": float(f),
        "precision": float(p),
        "recall": float(r),
        **_common_fields(best_c, best, fit_y, val_y, test_y, k_shot, val_source),
        "unseen_in_train": unseen_names,
        **(_positive_fields(test_y, pred, classnames) if n_classes == 2 else {}),
    }


def _positive_fields(test_y: np.ndarray, pred: np.ndarray, classnames: list[str] | None) -> dict:
    """A binary probe's precision and recall of its positive class (MedSLIP's malignant columns;
    `metrics.positive_class` picks it), beside the macro ones; appended, so earlier keys keep their place."""
    pos = positive_class(classnames)
    p, r, _, _ = precision_recall_fscore_support(test_y, pred, labels=[pos], average=None, zero_division=0)
    name = classnames[pos] if classnames is not None else str(pos)
    return {"positive": name, "positive_precision": float(p[0]), "positive_recall": float(r[0])}


def _final_fit_data(tr_x, tr_y, val_x, val_y, k_shot: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The data of the final fit with the chosen C: the k-shot subset alone (val would add more
    than k labels per class), else train + val."""
    if k_shot is not None:
        return tr_x, tr_y
    return np.vstack([tr_x, val_x]), np.concatenate([tr_y, val_y])


def _common_fields(best_c, val_score, fit_y, val_y, test_y, k_shot, val_source) -> dict:
    """The result fields both probes share, in the order they are reported."""
    return {
        "C": best_c,
        "val_score": val_score,
        "n_train": len(fit_y),
        "n_val": len(val_y),
        "n_test": len(test_y),
        "k_shot": None if k_shot is None else int(k_shot),
        "val_source": val_source,
    }


def _probe_multilabel(tr_x, tr_y, val_x, val_y, test_x, test_y, cs, k_shot, val_source, classnames) -> dict:
    best_c, best = cs[0], -math.inf
    for c in cs:
        score = multilabel_metrics(_proba_multilabel(_fit_multilabel(tr_x, tr_y, c), val_x), val_y)[
            "macro_auroc"
        ]
        score = -1.0 if score is None else score
        if score > best:
            best_c, best = c, score

    fit_x, fit_y = _final_fit_data(tr_x, tr_y, val_x, val_y, k_shot)
    proba = _proba_multilabel(_fit_multilabel(fit_x, fit_y, best_c), test_x)
    ml = multilabel_metrics(proba, test_y, classnames)

    # Macro P/R/F1 at 0.5 over the known targets of each class with at least one known target.
    prf = []
    for j in range(test_y.shape[1]):
        known = test_y[:, j] >= 0
        if known.any():
            p, r, f, _ = precision_recall_fscore_support(
                test_y[known, j],
                (proba[known, j] >= 0.5).astype(int),
                labels=[1],
                average=None,
                zero_division=0,
            )
            prf.append((p[0], r[0], f[0]))
    p, r, f = (float(v) for v in np.mean(prf, axis=0)) if prf else (None, None, None)
    return {
        "macro_auroc": ml["macro_auroc"],
        "mean_average_precision": ml["mean_average_precision"],
        "per_class_auroc": ml["per_class_auroc"],
        "f1": f,
        "precision": p,
        "recall": r,
        **_common_fields(best_c, None if best < 0 else float(best), fit_y, val_y, test_y, k_shot, val_source),
    }
