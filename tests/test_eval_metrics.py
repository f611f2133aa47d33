"""Evaluator metrics: hand-computed cases, chance levels, and equality with CLIP_benchmark's own functions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clip_benchmark.metrics import zeroshot_classification as cb_cls
from clip_benchmark.metrics import zeroshot_retrieval as cb_ret
from sklearn.metrics import balanced_accuracy_score
from unimed_train.eval.metrics import (
    class_embeddings,
    classification_metrics,
    multilabel_metrics,
    positive_class,
    retrieval_metrics,
    summary_score,
)


def _assert_plain(obj):
    """JSON-serialisable without NaN, and no numpy scalars anywhere."""
    json.dumps(obj, allow_nan=False)

    def walk(o):
        assert not isinstance(o, np.generic | np.ndarray), type(o)
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(obj)


def _l2n(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------------ classification


def test_classification_perfect_scorer():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 7, size=200)
    scores = np.eye(7)[targets] * 10 + rng.normal(0, 0.1, size=(200, 7))
    m = classification_metrics(scores, targets, classnames=[f"c{i}" for i in range(7)])
    assert m["top1"] == m["top5"] == m["balanced_accuracy"] == 1.0
    assert set(m["per_class_recall"]) == {f"c{i}" for i in range(7)}
    assert all(v == 1.0 for v in m["per_class_recall"].values())
    cm = np.array(m["confusion"])
    assert cm.shape == (7, 7) and np.all(cm == np.diag(np.bincount(targets, minlength=7)))
    assert m["n"] == 200 and "auroc" not in m
    _assert_plain(m)


def test_binary_perfect_and_extras():
    targets = np.array([0, 1, 1, 0, 1])
    scores = np.stack([-targets, targets], axis=1).astype(float)
    m = classification_metrics(scores, targets)
    assert m["top5"] is None
    assert m["auroc"] == m["f1"] == m["precision"] == m["recall"] == m["top1"] == 1.0
    assert set(m["per_class_recall"]) == {"0", "1"}
    _assert_plain(m)


def test_random_scores_are_at_chance():
    rng = np.random.default_rng(1)
    n, c = 20000, 10
    m = classification_metrics(rng.normal(size=(n, c)), rng.integers(0, c, n))
    assert abs(m["top1"] - 0.1) < 0.015
    assert abs(m["top5"] - 0.5) < 0.02
    assert abs(m["balanced_accuracy"] - 0.1) < 0.015
    b = classification_metrics(rng.normal(size=(n, 2)), rng.integers(0, 2, n))
    assert abs(b["auroc"] - 0.5) < 0.02 and abs(b["top1"] - 0.5) < 0.02


def test_binary_auroc_hand_computed():
    # 4 positives, 4 negatives; exactly one (positive, negative) pair is mis-ordered: 0.4 < 0.5.
    pos, neg = [0.9, 0.8, 0.7, 0.4], [0.5, 0.3, 0.2, 0.1]
    s = np.array(pos + neg)
    targets = np.array([1] * 4 + [0] * 4)
    m = classification_metrics(np.stack([np.zeros_like(s), s], axis=1), targets)
    assert m["auroc"] == pytest.approx(15 / 16)
    # Argmax predicts class 1 for every sample (s > 0): precision 4/8, recall 1, f1 2/3.
    assert m["precision"] == 0.5 and m["recall"] == 1.0 and m["f1"] == pytest.approx(2 / 3)


def test_top5_none_below_five_classes_and_defined_at_five():
    rng = np.random.default_rng(2)
    assert classification_metrics(rng.normal(size=(10, 4)), rng.integers(0, 4, 10))["top5"] is None
    assert classification_metrics(rng.normal(size=(10, 5)), rng.integers(0, 5, 10))["top5"] == 1.0


def test_balanced_accuracy_matches_sklearn_and_differs_from_top1():
    targets = np.array([0] * 90 + [1] * 10)
    scores = np.tile([1.0, 0.0], (100, 1))  # always predicts class 0
    m = classification_metrics(scores, targets)
    assert m["top1"] == 0.9 and m["balanced_accuracy"] == 0.5
    assert m["per_class_recall"] == {"0": 1.0, "1": 0.0}
    rng = np.random.default_rng(3)
    t = rng.choice(4, size=300, p=[0.7, 0.2, 0.05, 0.05])
    s = rng.normal(size=(300, 4)) + np.eye(4)[t]
    m = classification_metrics(s, t)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(t, s.argmax(1)))
    assert m["balanced_accuracy"] != pytest.approx(m["top1"])


def test_class_missing_from_targets_has_no_recall():
    m = classification_metrics(np.eye(3)[[0, 1, 1]], np.array([0, 1, 1]))
    assert m["per_class_recall"]["2"] is None and m["balanced_accuracy"] == 1.0


def test_accuracy_equals_clip_benchmark():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(500, 12)).astype(np.float32)
    targets = rng.integers(0, 12, 500)
    top1, top5 = cb_cls.accuracy(torch.from_numpy(scores), torch.from_numpy(targets), topk=(1, 5))
    m = classification_metrics(scores, targets)
    assert m["top1"] == pytest.approx(top1) and m["top5"] == pytest.approx(top5)


def test_classification_errors():
    with pytest.raises(ValueError, match=r"\(3,\).*\(3, 4\).*\(2,\)"):
        classification_metrics(np.zeros((3, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="N == 0"):
        classification_metrics(np.zeros((0, 4)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        classification_metrics(np.zeros((2, 4)), np.array([0, 4]))
    with pytest.raises(ValueError, match="classnames"):
        classification_metrics(np.zeros((2, 4)), np.array([0, 1]), classnames=["a", "b"])


# ---------------------------------------------------------------------------------- multilabel


def test_multilabel_perfect_and_chance():
    rng = np.random.default_rng(5)
    t = rng.integers(0, 2, size=(400, 5))
    m = multilabel_metrics(t + rng.uniform(0, 0.5, size=t.shape), t, classnames=list("abcde"))
    assert m["macro_auroc"] == m["mean_average_precision"] == 1.0
    assert set(m["per_class_auroc"]) == set("abcde") and m["n"] == 400
    _assert_plain(m)
    t = rng.integers(0, 2, size=(20000, 3))
    m = multilabel_metrics(rng.normal(size=t.shape), t)
    assert abs(m["macro_auroc"] - 0.5) < 0.02
    assert abs(m["mean_average_precision"] - 0.5) < 0.02  # AP at chance = positive rate


def test_average_precision_hand_computed():
    # Ranked by score, the labels read 1, 0, 1, 1, 0: AP = (1/1 + 2/3 + 3/4) / 3 = 29/36.
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    t = np.array([[1], [0], [1], [1], [0]])
    m = multilabel_metrics(s, t)
    assert m["per_class_ap"]["0"] == pytest.approx(29 / 36)
    assert m["per_class_auroc"]["0"] == pytest.approx(4 / 6)  # pos 0.7, 0.6 rank below neg 0.8


def test_multilabel_masks_uncertain_targets():
    s = np.array([[0.9, 0.1], [0.8, 0.6], [0.1, 0.3], [0.2, 0.4], [0.95, 0.5]])
    t = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [-1, -1]])
    m = multilabel_metrics(s, t)
    # Row 4 is unknown: class 0 stays perfect although its score 0.95 would rank a negative first.
    assert m["per_class_auroc"]["0"] == 1.0
    assert m["per_class_auroc"]["1"] == 1.0
    unmasked = multilabel_metrics(s, np.where(t < 0, 0, t))
    assert unmasked["per_class_auroc"]["0"] < 1.0 and unmasked["per_class_auroc"]["1"] < 1.0
    assert multilabel_metrics(s, np.where(t < 0, np.nan, t)) == m  # NaN is also "unknown"


def test_multilabel_undefined_classes_are_none_and_skipped():
    s = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.3], [0.1, 0.3, 0.3]])
    t = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    m = multilabel_metrics(s, t)
    assert m["per_class_auroc"]["1"] is None and m["per_class_ap"]["1"] is None
    assert m["macro_auroc"] == 1.0 and m["mean_average_precision"] == 1.0
    _assert_plain(m)


def test_average_precision_equals_clip_benchmark():
    rng = np.random.default_rng(6)
    t = rng.integers(0, 2, size=(300, 6))
    s = rng.normal(size=t.shape) + t
    ref = cb_cls.average_precision_per_class(torch.from_numpy(s), torch.from_numpy(t)).numpy()
    m = multilabel_metrics(s, t)
    assert list(m["per_class_ap"].values()) == pytest.approx(ref.tolist(), abs=1e-6)


def test_multilabel_shape_error():
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 3\)"):
        multilabel_metrics(np.zeros((3, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="0, 1"):
        multilabel_metrics(np.zeros((2, 1)), np.array([[2], [0]]))


# ----------------------------------------------------------------------------------- retrieval


def _hand_retrieval():
    e = np.eye(3)
    texts = _l2n(np.stack([e[0], e[1] + 0.2 * e[0], e[0] + 0.5 * e[1], e[2], e[2] + 0.3 * e[1]]))
    return e, texts, np.array([0, 0, 1, 2, 2])


def test_retrieval_hand_made_several_texts_per_image():
    img, txt, t2i = _hand_retrieval()
    m = retrieval_metrics(img, txt, t2i, ks=(1, 2))
    # text->image: texts 1 and 2 rank the other image first -> 3/5 at k=1, all at k=2.
    assert m["image_retrieval_recall@1"] == pytest.approx(3 / 5)
    assert m["image_retrieval_recall@2"] == 1.0
    # image->text: image 1's nearest text (text 1) belongs to image 0 -> 2/3 at k=1.
    assert m["text_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert m["text_retrieval_recall@2"] == 1.0
    assert m["n_images"] == 3 and m["n_texts"] == 5
    assert summary_score("retrieval", m) == pytest.approx((3 / 5 + 2 / 3) / 2)
    _assert_plain(m)


def _clip_benchmark_retrieval(img, txt, t2i, ks, batch_size):
    scores = torch.from_numpy(txt) @ torch.from_numpy(img).T
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), torch.from_numpy(t2i)] = True
    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = (
            (cb_ret.batchify(cb_ret.recall_at_k, scores, positive, batch_size, "cpu", k=k) > 0)
            .float()
            .mean()
            .item()
        )
        out[f"text_retrieval_recall@{k}"] = (
            (cb_ret.batchify(cb_ret.recall_at_k, scores.T, positive.T, batch_size, "cpu", k=k) > 0)
            .float()
            .mean()
            .item()
        )
    return out


def test_retrieval_equals_clip_benchmark_on_random_data():
    rng = np.random.default_rng(7)
    n_img, d = 60, 16
    img = _l2n(rng.normal(size=(n_img, d))).astype(np.float32)
    t2i = np.repeat(np.arange(n_img), rng.integers(1, 4, n_img))
    txt = _l2n(img[t2i] + rng.normal(0, 0.35, size=(len(t2i), d))).astype(np.float32)
    ref = _clip_benchmark_retrieval(img, txt, t2i, (1, 5, 10), batch_size=16)
    m = retrieval_metrics(img, txt, t2i, ks=(1, 5, 10))
    for key, value in ref.items():
        assert m[key] == pytest.approx(value), key
    assert 0 < m["image_retrieval_recall@1"] < 1  # a non-trivial case


def test_retrieval_perfect_collapsed_and_large_k():
    rng = np.random.default_rng(8)
    img = _l2n(rng.normal(size=(10, 8)))
    t2i = np.repeat(np.arange(10), 2)
    m = retrieval_metrics(img, img[t2i], t2i, ks=(1, 50))
    assert all(v == 1.0 for k, v in m.items() if "recall" in k)
    # A collapsed model (all embeddings equal) must not get credit from ties.
    ones = np.ones((10, 8)) / np.sqrt(8)
    m = retrieval_metrics(ones, ones[t2i], t2i, ks=(1,))
    assert m["image_retrieval_recall@1"] == 0.0 and m["text_retrieval_recall@1"] == 0.0


def test_retrieval_image_without_text_is_only_a_distractor():
    img, txt, t2i = _hand_retrieval()
    img4 = np.vstack([img, _l2n(np.array([[1.0, 1.0, 1.0]]))])
    m = retrieval_metrics(img4, txt, t2i, ks=(1,))
    assert m["n_images"] == 4
    assert m["text_retrieval_recall@1"] == pytest.approx(2 / 3)


def test_retrieval_errors():
    img, txt, t2i = _hand_retrieval()
    with pytest.raises(ValueError, match=r"\(5,\).*\(4,\)"):
        retrieval_metrics(img, txt, t2i[:4])
    with pytest.raises(ValueError, match="dim"):
        retrieval_metrics(img[:, :2], txt, t2i)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        retrieval_metrics(img, txt, np.array([0, 0, 1, 2, 3]))
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(img[:0], txt, t2i)


# ---------------------------------------------------------------------------- class embeddings


class _FakeTextModel:
    """encode_text = row lookup in a fixed table; enough for CLIP_benchmark's zero_shot_classifier."""

    def __init__(self, table):
        self.table = table

    def encode_text(self, tokens):
        return self.table[tokens]


def test_class_embeddings_equal_clip_benchmark_zero_shot_classifier():
    rng = np.random.default_rng(9)
    classnames, templates = ["cat", "dog", "lung"], ["a {c}", "photo of {c}", "an x-ray of {c}", "{c}!"]
    prompts = [t.format(c=c) for c in classnames for t in templates]
    table = torch.from_numpy(rng.normal(size=(len(prompts), 32)).astype(np.float32)) * 3

    def tokenizer(texts):
        return torch.tensor([prompts.index(t) for t in texts])

    ref = cb_cls.zero_shot_classifier(
        _FakeTextModel(table), tokenizer, classnames, templates, "cpu", amp=False
    )
    per_class = [table.numpy()[i * 4 : (i + 1) * 4] for i in range(3)]
    ours = class_embeddings(per_class)
    assert ours.shape == (3, 32) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.numpy().T, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    # Prompt norms must not weight the mean: scaling one prompt changes nothing.
    scaled = [p.copy() for p in per_class]
    scaled[0][0] *= 100
    np.testing.assert_allclose(class_embeddings(scaled), ours, atol=1e-6)


def test_class_embeddings_errors():
    with pytest.raises(ValueError, match="dim"):
        class_embeddings([np.ones((2, 4)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="P >= 1"):
        class_embeddings([np.ones((0, 4))])
    with pytest.raises(ValueError, match="zeros"):
        class_embeddings([np.zeros((1, 4))])


# -------------------------------------------------------------------------------------- summary


def test_summary_score_per_task():
    assert summary_score("zeroshot", {"top1": 0.7, "balanced_accuracy": 0.5}) == 0.7
    assert summary_score("classification", {"macro_auroc": 0.8, "n": 3}) == 0.8  # multi-label zero-shot
    assert summary_score("multilabel", {"macro_auroc": 0.6}) == 0.6
    assert summary_score("linear_probe", {"accuracy": 0.9, "macro_auroc": 0.95}) == 0.9
    assert summary_score("linear_probe", {"macro_auroc": 0.95}) == 0.95
    assert summary_score("multilabel", {"macro_auroc": None}) is None
    with pytest.raises(ValueError, match="unknown task"):
        summary_score("segmentation", {"top1": 1.0})
    with pytest.raises(KeyError):
        summary_score("zeroshot", {"n": 3})


def test_binary_metrics_are_about_the_abnormal_class_whatever_the_order():
    scores = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    targets = np.array([0, 1, 1, 0])  # class 0 = "abnormal" (sorted first), predicted 0, 1, 0, 0
    m = classification_metrics(scores, targets, ["abnormal", "normal"])
    assert m["positive"] == "abnormal"
    assert (m["precision"], m["recall"]) == (pytest.approx(2 / 3), 1.0)
    assert m["auroc"] == pytest.approx(0.75)
    assert classification_metrics(scores, targets, ["benign", "malignant"])["positive"] == "malignant"
    assert positive_class(["cat", "dog"]) == 1 and positive_class(["no finding", "pneumonia"]) == 1


def test_retrieval_counts_identical_captions_as_the_same_text():
    """Template captions repeat across images: "a" belongs to images 0 and 1, so neither the text
    nor the images may lose to the other copy."""
    img = np.eye(3, dtype=np.float32)[[0, 0, 1]] + np.array(
        [[0, 0.1, 0], [0, 0, 0.1], [0, 0, 0]], dtype=np.float32
    )
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = np.eye(3, dtype=np.float32)[[0, 0, 1]]
    t2i = np.array([0, 1, 2])
    plain = retrieval_metrics(img, txt, t2i, ks=(1,))
    grouped = retrieval_metrics(img, txt, t2i, ks=(1,), text_groups=np.array([0, 0, 1]))
    assert plain["text_retrieval_recall@1"] < 1 and plain["image_retrieval_recall@1"] < 1
    assert grouped["text_retrieval_recall@1"] == grouped["image_retrieval_recall@1"] == 1.0
