"""Evaluation throughput: writing an eval set, and zero-shot scoring beside CLIP_benchmark's own loop.

Makes a folder-per-class tree of N synthetic PNGs (5 classes), turns it into an eval set with
`unimed-data evalset --from-folder` (images/s), then scores one tiny open_clip model on it with
`unimed_train.eval` and with `clip_benchmark.metrics.zeroshot_classification.evaluate` on the
same weights, batch size and loader workers (images/s, and whether top-1 agrees). Prints; asserts
nothing.

    uv run --all-extras python bench/eval_bench.py --images 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CLASSES = ["cardiomegaly", "edema", "no finding", "pneumonia", "pneumothorax"]


def class_tree(root: Path, n: int) -> Path:
    """n noisy 256x256 greyscale PNGs spread over the classes (a radiograph-sized decode each)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / CLASSES[i % len(CLASSES)].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (256, 256), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")
    return root


def tiny_local_dir(path: Path) -> str:
    """The tiny model, seeded, in open_clip's local-dir layout (loadable by both evaluators)."""
    import torch
    from unimed_train.export import save_local_dir
    from unimed_train.model import build_model

    torch.manual_seed(0)
    return save_local_dir(build_model(TINY).model, TINY, path)


def ours(evalset: Path, pretrained: str, batch: int, workers: int) -> tuple[float, float]:
    from unimed_train.eval.encode import ModelSpec
    from unimed_train.eval.runner import run

    start = time.perf_counter()
    (entry,) = run(
        [ModelSpec("tiny", pretrained=pretrained)],
        [evalset],
        tasks=["zeroshot"],
        batch_size=batch,
        workers=workers,
    )
    return entry["n"] / (time.perf_counter() - start), entry["metrics"]["top1"]


def clip_benchmark(evalset: Path, pretrained: str, batch: int, workers: int) -> tuple[float, float]:
    import torch
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification
    from unimed_train.eval.encode import ModelSpec, load_model

    start = time.perf_counter()
    built = load_model(ModelSpec("tiny", pretrained=pretrained))
    dataset = build_dataset(
        f"wds/{evalset.name}", root=str(evalset), transform=built.preprocess_val, split="test"
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers)
    result = zeroshot_classification.evaluate(
        built.model, loader, built.tokenizer, dataset.classes, dataset.templates, device="cpu", amp=False
    )
    seen = sum(json.loads((evalset / "info.json").read_text())["splits"].values())
    return seen / (time.perf_counter() - start), result["acc1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from typer.testing import CliRunner

    from unimed_data.cli import app

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = class_tree(tmp / "tree", args.images)
        evalset = tmp / "chest-bench"
        start = time.perf_counter()
        result = CliRunner().invoke(
            app, ["evalset", "--from-folder", str(tree), "--modality", "xray", "--out", str(evalset)]
        )
        if result.exit_code != 0:
            raise SystemExit(result.output)
        write_rate = args.images / (time.perf_counter() - start)
        # The set has no prompts.json class definitions, so both score the same template prompts.
        pretrained = tiny_local_dir(tmp / "model")
        ours_rate, ours_top1 = ours(evalset, pretrained, args.batch, args.workers)
        theirs_rate, theirs_top1 = clip_benchmark(evalset, pretrained, args.batch, args.workers)
    print(f"{'what':<46} {'images/s':>9}")
    print(f"{'unimed-data evalset --from-folder (PNG->JPEG)':<46} {write_rate:>9.1f}")
    print(f"{'unimed_train.eval zero-shot':<46} {ours_rate:>9.1f}   top-1 {ours_top1:.4f}")
    print(f"{'clip_benchmark zero-shot (same model)':<46} {theirs_rate:>9.1f}   top-1 {theirs_top1:.4f}")


if __name__ == "__main__":
    main()
