"""Agreement with CLIP_benchmark itself: the same weights on the same wds eval set give the same numbers."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")
pytest.importorskip("clip_benchmark")

import torch
from clip_benchmark.datasets.builder import build_dataset, image_captions_collate_fn
from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
from unimed_train.eval.encode import ModelSpec, encode_texts, load_model
from unimed_train.eval.evalsets import load_evalset
from unimed_train.eval.metrics import class_embeddings
from unimed_train.eval.runner import run

from tests.tiny_models import tiny_local_dir
from tests.wds_samples import write_evalset


def _loader(root: Path, preprocess, collate=None, task="zeroshot_classification"):
    dataset = build_dataset(f"wds/{root.name}", root=str(root), transform=preprocess, split="test", task=task)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=0, collate_fn=collate)
    return dataset, loader


def test_zeroshot_classification_matches_clip_benchmark(tmp_path: Path):
    root = write_evalset(tmp_path / "shapes6", n_classes=6, splits={"test": 5}, shard_size=11)
    spec = ModelSpec("tiny", pretrained=tiny_local_dir(tmp_path / "model"))
    built = load_model(spec)
    dataset, loader = _loader(root, built.preprocess_val)
    ref = zeroshot_classification.evaluate(
        built.model, loader, built.tokenizer, dataset.classes, dataset.templates, device="cpu", amp=False
    )

    # the classifier (prompt-ensemble means) is the same up to float rounding
    ensembles = load_evalset(root).prompt_ensembles()
    ours_text = [encode_texts(built, p, "cpu", "fp32").numpy() for p in ensembles]
    theirs = zeroshot_classification.zero_shot_classifier(
        built.model, built.tokenizer, dataset.classes, dataset.templates, "cpu", amp=False
    )
    np.testing.assert_allclose(class_embeddings(ours_text), theirs.T.numpy(), atol=1e-6)

    (entry,) = run([spec], [root], tasks=["zeroshot"])
    metrics = entry["metrics"]
    assert entry["status"] == "ok" and metrics["n"] == 30
    assert metrics["top1"] == pytest.approx(ref["acc1"], abs=1e-6)
    assert metrics["top5"] == pytest.approx(ref["acc5"], abs=1e-6)
    assert metrics["balanced_accuracy"] == pytest.approx(ref["mean_per_class_recall"], abs=1e-6)
    assert 0 < ref["acc5"] < 1  # a non-trivial comparison


def test_zeroshot_retrieval_matches_clip_benchmark(tmp_path: Path):
    """On distinct captions. Where a caption string repeats across images we count every copy as
    the same text (CLIP_benchmark counts the copies as misses); test_eval_metrics specifies that."""
    root = write_evalset(
        tmp_path / "captions", kind="retrieval", n_classes=6, splits={"test": 3}, unique_captions=True
    )
    spec = ModelSpec("tiny", pretrained=tiny_local_dir(tmp_path / "model", seed=3))
    built = load_model(spec)
    _, loader = _loader(root, built.preprocess_val, image_captions_collate_fn, "zeroshot_retrieval")
    ref = zeroshot_retrieval.evaluate(
        built.model, loader, built.tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10]
    )
    (entry,) = run([spec], [root], tasks=["retrieval"])
    assert entry["status"] == "ok" and entry["metrics"]["n_texts"] == 36
    for key, value in ref.items():
        assert entry["metrics"][key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # its 8 export workers
def test_a_set_written_by_clip_benchmarks_exporter(tmp_path: Path):
    from clip_benchmark.webdataset_builder import PIL_to_bytes, convert_dataset
    from PIL import Image

    class Shapes(list):
        """A list of (image, label) with the attributes convert_dataset saves as metadata."""

    colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220)]
    shapes = Shapes((Image.new("RGB", (24, 24), colours[i % 3]), i % 3) for i in range(9))
    shapes.classes, shapes.templates = ["red", "green", "blue"], ["a {c} picture."]
    root = tmp_path / "exported"
    convert_dataset(
        shapes, "test", str(root), transform=PIL_to_bytes("png"), image_format="png", verbose=False
    )
    spec = ModelSpec("tiny", pretrained=tiny_local_dir(tmp_path / "model"))
    (entry,) = run([spec], [root], tasks=["zeroshot"])
    assert entry["status"] == "ok" and entry["n"] == 9 and entry["modality"] == "unknown"
    assert entry["dataset"] == "exported" and sum(map(sum, entry["metrics"]["confusion"])) == 9
