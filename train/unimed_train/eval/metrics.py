"""Evaluation metrics on precomputed scores / embeddings (numpy + scikit-learn, no torch).

Definitions follow CLIP_benchmark (``clip_benchmark.metrics``) so numbers are comparable with
published CLIP / UniMed-CLIP tables; the tests check equality with its functions on random data.

Every function returns plain Python ``float``/``int``/``list``/``dict`` values (JSON-serialisable);
an undefined value (AUROC of a class with a single label value, top-5 with fewer than 5 classes, ...)
is ``None``, never NaN, so reports and averages cannot silently propagate NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

__all__ = [
    "base_task",
    "class_embeddings",
    "classification_metrics",
    "multilabel_metrics",
    "probe_task",
    "retrieval_metrics",
    "summary_score",
    "task_shots",
]

# Rows of the similarity matrix computed at once in retrieval: bounds memory to CHUNK x N floats.
_RETRIEVAL_CHUNK = 1024


# --------------------------------------------------------------------------------------- helpers


def _float(x) -> float | None:
    """Plain float, or None for NaN/inf/None (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _mean_defined(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _names(classnames: Sequence[str] | None, n_classes: int) -> list[str]:
    """Class names as dict keys; default "0".."C-1" (strings so the dicts stay JSON objects)."""
    if classnames is None:
        return [str(i) for i in range(n_classes)]
    names = [str(c) for c in classnames]
    if len(names) != n_classes:
        raise ValueError(f"got {len(names)} classnames for {n_classes} classes (score columns)")
    if len(set(names)) != len(names):
        raise ValueError("classnames must be unique (they are dict keys)")
    return names


def _check_scores(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (N, C); got shape {scores.shape}")
    if scores.shape[0] == 0:
        raise ValueError("no samples (N == 0): cannot compute metrics")
    if scores.shape[1] == 0:
        raise ValueError("scores have no classes (C == 0)")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    return scores


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# -------------------------------------------------------------------------------- classification


NEGATIVE_WORDS = ("normal", "no finding", "healthy", "benign", "negative", "absent", "no ")


def positive_class(classnames: list[str] | None) -> int:
    """The class binary metrics are about: class 1, unless its name reads as the negative one
    ("normal", "no finding", "benign", ...) and class 0's does not. Class order is alphabetical, so
    ["abnormal", "normal"] must not report F1 for "normal"."""
    if not classnames or len(classnames) != 2:
        return 1

    def negative(name: str) -> bool:
        return name.strip().lower().startswith(NEGATIVE_WORDS)

    return 0 if negative(classnames[1]) and not negative(classnames[0]) else 1


def classification_metrics(
    scores: np.ndarray, targets: np.ndarray, classnames: list[str] | None = None
) -> dict:
    """Single-label (multi-class) metrics from logits / similarities ``scores`` (N, C) and int ``targets`` (N,).

    ``top1``/``top5`` are CLIP_benchmark's ``accuracy`` (ties broken towards the lower class index,
    as ``np.argmax``); ``top5`` is None when C < 5 (CLIP_benchmark reports NaN there).
    ``balanced_accuracy`` is the mean recall over the classes present in ``targets``
    (== ``sklearn.metrics.balanced_accuracy_score``), the fairer number on imbalanced medical test
    sets; ``per_class_recall`` is None for a class with no test samples.
    For C == 2 also ``auroc`` (of the ``positive_class``, score = its softmax probability; None if
    targets hold one class only) and ``f1``/``precision``/``recall`` of that class on the argmax
    prediction (0.0 where undefined, sklearn's ``zero_division=0``), and ``positive`` (its name).
    """
    scores = _check_scores(scores)
    n, c = scores.shape
    targets = np.asarray(targets)
    if targets.ndim != 1 or targets.shape[0] != n:
        raise ValueError(
            f"targets must have shape ({n},) to match scores {scores.shape}; got {targets.shape}"
        )
    if not np.issubdtype(targets.dtype, np.integer):
        if not np.all(np.equal(np.mod(targets, 1), 0)):
            raise ValueError("targets must be integer class ids")
        targets = targets.astype(np.int64)
    if targets.min() < 0 or targets.max() >= c:
        raise ValueError(
            f"targets must lie in [0, {c}) (number of score columns); got {targets.min()}..{targets.max()}"
        )
    names = _names(classnames, c)

    # Stable argsort of -scores == topk with ties to the lower index, and column 0 == np.argmax.
    order = np.argsort(-scores, axis=1, kind="stable")
    pred = order[:, 0]
    top1 = float(np.mean(pred == targets))
    top5 = float(np.mean(np.any(order[:, :5] == targets[:, None], axis=1))) if c >= 5 else None

    cm = confusion_matrix(targets, pred, labels=np.arange(c))
    support = cm.sum(axis=1)
    per_class_recall = {
        names[i]: (float(cm[i, i] / support[i]) if support[i] > 0 else None) for i in range(c)
    }
    out = {
        "top1": top1,
        "top5": top5,
        "balanced_accuracy": float(balanced_accuracy_score(targets, pred)),
        "per_class_recall": per_class_recall,
        "confusion": cm.astype(int).tolist(),
        "n": int(n),
    }
    if c == 2:
        pos = positive_class(classnames)
        prob = _softmax(scores)[:, pos]
        defined = len(np.unique(targets)) == 2
        out["auroc"] = _float(roc_auc_score(targets == pos, prob)) if defined else None
        p, r, f, _ = precision_recall_fscore_support(
            targets, pred, labels=[pos], average=None, zero_division=0
        )
        out.update(f1=float(f[0]), precision=float(p[0]), recall=float(r[0]), positive=names[pos])
    return out


# ------------------------------------------------------------------------------------ multilabel


def multilabel_metrics(scores: np.ndarray, targets: np.ndarray, classnames: list[str] | None = None) -> dict:
    """Per-class AUROC / average precision for multi-label targets (N, C) in {0, 1}.

    A target of -1 (or NaN) means "uncertain / not labelled" (CheXpert-style) and is masked out of
    that class only. AUROC is None for a class whose remaining targets hold one value; AP is None
    for a class without positives. ``macro_auroc`` / ``mean_average_precision`` average the defined
    ones (CLIP_benchmark's mAP would count a class without positives as AP 0; we skip it instead,
    since it says nothing about the model). AP is sklearn's step-wise AP, equal to CLIP_benchmark's
    ``average_precision_per_class`` when scores have no ties.
    """
    scores = _check_scores(scores)
    n, c = scores.shape
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != scores.shape:
        raise ValueError(f"targets shape {targets.shape} does not match scores shape {scores.shape}")
    targets = np.where(np.isnan(targets), -1.0, targets)
    if not np.all(np.isin(targets, (-1.0, 0.0, 1.0))):
        raise ValueError("multilabel targets must be 0, 1, or -1 / NaN (unknown)")
    names = _names(classnames, c)

    aurocs, aps = {}, {}
    for j, name in enumerate(names):
        known = targets[:, j] >= 0
        y, s = targets[known, j].astype(int), scores[known, j]
        aurocs[name] = _float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None
        aps[name] = _float(average_precision_score(y, s)) if y.sum() > 0 else None
    return {
        "per_class_auroc": aurocs,
        "macro_auroc": _mean_defined(aurocs.values()),
        "per_class_ap": aps,
        "mean_average_precision": _mean_defined(aps.values()),
        "n": int(n),
    }


# ------------------------------------------------------------------------------------- retrieval


def retrieval_metrics(
    image_features: np.ndarray,
    text_features: np.ndarray,
    text_to_image: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    text_groups: np.ndarray | None = None,
) -> dict:
    """CLIP-style Recall@k with several texts per image (CLIP_benchmark ``zeroshot_retrieval``).

    ``image_retrieval_recall@k``: fraction of texts whose own image is among the k images most
    similar to the text (text -> image). ``text_retrieval_recall@k``: fraction of images with at
    least one of their texts among the k most similar texts (image -> text). Features are used as
    given (pass L2-normalised ones, as CLIP_benchmark does). Ties are counted against the model
    (a negative scoring equal to the best positive ranks before it), so a collapsed model with
    constant embeddings scores 0, not 1; without ties this equals CLIP_benchmark exactly.
    k >= the gallery size gives 1.0 (CLIP_benchmark's ``topk`` would raise). An image without any
    text stays a distractor for text -> image but is left out of image -> text (CLIP_benchmark
    would count it as a miss, which measures the data, not the model).
    Similarities are computed in row chunks so large test sets do not need an N_text x N_image matrix.
    ``text_groups`` (one id per text) marks texts that are the same string: a text then counts every
    image holding that string as its own, and an image every copy of its texts. Template captions
    repeat across images, and without this the identical copies would tie and count as misses.
    """
    img, txt, t2i, ks = _retrieval_inputs(image_features, text_features, text_to_image, ks)
    n_img, n_txt = img.shape[0], txt.shape[0]
    gid, group_images, image_texts = _positives(t2i, text_groups, n_img)

    # The rank of the best positive = the number of negatives scoring at least as high (ties lose).
    t_rank = np.empty(n_txt, dtype=np.int64)
    for s in range(0, n_txt, _RETRIEVAL_CHUNK):
        sim = txt[s : s + _RETRIEVAL_CHUNK] @ img.T  # (b, n_img)
        pos = np.zeros(sim.shape, dtype=bool)
        for r in range(sim.shape[0]):
            pos[r, group_images[gid[s + r]]] = True
        t_rank[s : s + sim.shape[0]] = _negatives_above(sim, pos)

    i_rank = np.empty(n_img, dtype=np.int64)
    for s in range(0, n_img, _RETRIEVAL_CHUNK):
        sim = img[s : s + _RETRIEVAL_CHUNK] @ txt.T  # (b, n_txt)
        pos = np.zeros(sim.shape, dtype=bool)
        for r in range(sim.shape[0]):
            pos[r, sorted(image_texts[s + r])] = True
        i_rank[s : s + sim.shape[0]] = _negatives_above(sim, pos)

    has_text = np.bincount(t2i, minlength=n_img) > 0
    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = float(np.mean(t_rank < k))
        out[f"text_retrieval_recall@{k}"] = float(np.mean(i_rank[has_text] < k))
    out["n_images"] = int(n_img)
    out["n_texts"] = int(n_txt)
    return out


def _retrieval_inputs(
    image_features: np.ndarray, text_features: np.ndarray, text_to_image: np.ndarray, ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Features, text->image map and ks as arrays/ints, rejecting malformed input before any similarity."""
    img = np.asarray(image_features, dtype=np.float32)
    txt = np.asarray(text_features, dtype=np.float32)
    t2i = np.asarray(text_to_image)
    if img.ndim != 2 or txt.ndim != 2:
        raise ValueError(f"features must be 2-D; got image {img.shape}, text {txt.shape}")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"feature dims differ: image {img.shape}, text {txt.shape}")
    n_img, n_txt = img.shape[0], txt.shape[0]
    if n_img == 0 or n_txt == 0:
        raise ValueError(f"empty retrieval set: {n_img} images, {n_txt} texts")
    if t2i.shape != (n_txt,):
        raise ValueError(f"text_to_image must have shape ({n_txt},) (one image per text); got {t2i.shape}")
    if not np.issubdtype(t2i.dtype, np.integer):
        raise ValueError("text_to_image must hold integer image indices")
    if t2i.min() < 0 or t2i.max() >= n_img:
        raise ValueError(f"text_to_image indices must lie in [0, {n_img}); got {t2i.min()}..{t2i.max()}")
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be >= 1; got {ks}")
    return img, txt, t2i, ks


def _positives(
    t2i: np.ndarray, text_groups: np.ndarray | None, n_img: int
) -> tuple[np.ndarray, list[list[int]], list[set[int]]]:
    """Each text's group id, each group's images, each image's texts: identical captions count as hits."""
    n_txt = t2i.shape[0]
    groups = np.arange(n_txt) if text_groups is None else np.asarray(text_groups)
    if groups.shape != (n_txt,):
        raise ValueError(f"text_groups must have shape ({n_txt},); got {groups.shape}")
    _, gid = np.unique(groups, return_inverse=True)
    group_images: list[list[int]] = [[] for _ in range(int(gid.max()) + 1)]
    group_texts: list[list[int]] = [[] for _ in range(len(group_images))]
    for j, (g, i) in enumerate(zip(gid.tolist(), t2i.tolist(), strict=True)):
        group_images[g].append(i)
        group_texts[g].append(j)
    image_texts: list[set[int]] = [set() for _ in range(n_img)]
    for j, i in enumerate(t2i.tolist()):
        image_texts[i].update(group_texts[gid[j]])
    return gid, group_images, image_texts


def _negatives_above(sim: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Per row: how many non-positive columns score >= the best positive (0 = retrieved first)."""
    best = np.where(pos, sim, -np.inf).max(axis=1)
    return ((sim >= best[:, None]) & ~pos).sum(axis=1)


# ------------------------------------------------------------------------------ class embeddings


def class_embeddings(prompt_embeddings: list[np.ndarray]) -> np.ndarray:
    """Zero-shot classifier weights (C, D): per class, normalise each prompt embedding, average, renormalise.

    This is CLIP's prompt ensembling (CLIP_benchmark ``zero_shot_classifier``, transposed: rows are
    classes), so logits are ``image_features @ class_embeddings(...).T``.
    """
    if len(prompt_embeddings) == 0:
        raise ValueError("no classes: prompt_embeddings is empty")
    rows = []
    dim = None
    for i, e in enumerate(prompt_embeddings):
        e = np.asarray(e)
        if e.ndim == 1:
            e = e[None, :]
        if e.ndim != 2 or e.shape[0] == 0:
            raise ValueError(f"class {i}: expected a (P, D) array with P >= 1; got shape {e.shape}")
        if dim is None:
            dim = e.shape[1]
        elif e.shape[1] != dim:
            raise ValueError(f"class {i}: embedding dim {e.shape[1]} differs from {dim}")
        norms = np.linalg.norm(e, axis=1)
        if np.any(norms == 0):
            raise ValueError(f"class {i}: a prompt embedding is all zeros")
        rows.append(_l2n(_l2n(e).mean(axis=0)))
    dtype = np.result_type(*[np.asarray(e).dtype for e in prompt_embeddings], np.float32)
    return np.stack(rows).astype(dtype)


# --------------------------------------------------------------------------------------- summary

_CLASSIFICATION = {"classification", "zeroshot"}
_MULTILABEL = {"multilabel"}
_RETRIEVAL = {"retrieval"}
_PROBE = {"linear_probe"}
PROBE = "linear_probe"


def probe_task(k_shot: int | None) -> str:
    """The task name of a probe: `linear_probe`, or `linear_probe_<k>shot` for a k-shot probe."""
    return PROBE if k_shot is None else f"{PROBE}_{k_shot}shot"


def task_shots(task: str) -> int | None:
    """`linear_probe_4shot` -> 4; None for every other task (the full-data probe included)."""
    shots = task.removeprefix(f"{PROBE}_").removesuffix("shot")
    return int(shots) if task.startswith(f"{PROBE}_") and shots.isdigit() else None


def base_task(task: str) -> str:
    """`linear_probe_4shot` -> `linear_probe`: the task whose headline a task reports."""
    return PROBE if task.startswith(PROBE) else task


def summary_score(task: str, metrics: dict) -> float | None:
    """The one headline number of a task, for averages and plots (None if it is undefined).

    classification -> ``top1`` (what UniMed-CLIP's zero-shot tables report; ``balanced_accuracy``
    stays in the full metrics), multilabel -> ``macro_auroc``, retrieval -> mean of the
    ``*_recall@1`` values (text->image and image->text), linear_probe -> ``accuracy``, or
    ``macro_auroc`` for a multi-label probe (which has no accuracy).
    A classification metrics dict without ``top1`` (a multi-label zero-shot task) falls back to
    ``macro_auroc``.
    """
    t = task.lower()
    if t in _RETRIEVAL:
        r1 = [v for k, v in metrics.items() if k.endswith("_recall@1")]
        if not r1:
            raise KeyError("retrieval metrics have no *_recall@1 entries")
        return _mean_defined(r1)
    if t in _CLASSIFICATION:
        keys = ("top1", "macro_auroc")
    elif t in _MULTILABEL:
        keys = ("macro_auroc",)
    elif t in _PROBE:
        keys = ("accuracy", "macro_auroc")
    else:
        raise ValueError(
            f"unknown task {task!r}; expected classification, multilabel, retrieval or linear_probe"
        )
    for k in keys:
        if k in metrics:
            return _float(metrics[k])
    raise KeyError(f"{task} metrics have none of {keys}; got {sorted(metrics)}")
