"""Trainer throughput: our loop and data loader beside open_clip_train.main on the same shards.

CPU (default): a tiny ViT on the demo build's shards (run `unimed-data build --demo --out bench-demo
--shard-size 8` first: several shards, as the loader workers need), batch 16, fixed steps; prints training samples/s of `unimed_train.main` and of
`open_clip_train.main`, and data-loader samples/s of `unimed_train.data`.
GPU (`--gpu`, where one is lent): ViT-B-16 with a local BiomedBERT folder (`--text-encoder`),
batch 256, bf16: samples/s per GPU, peak memory and an MFU estimate. Prints; asserts nothing.

    uv run --all-extras python bench/train_bench.py --shards 'bench-demo/train/unimed-{000000..000007}.tar'
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def ours(shards: str, steps: int, batch: int, workdir: Path, extra: list[str]) -> tuple[float, float]:
    """(samples/s over the whole run with start-up, samples/s of the training loop at its end)."""
    from unimed_train.main import main

    out = workdir / "ours"
    start = time.perf_counter()
    args = ["--train-data", shards, "--batch-size", str(batch), "--steps", str(steps), "--workers", "1"]
    main([*args, "--log-every", str(steps), "--save-every", "100000", "--out", str(out), *extra])
    wall = steps * batch / (time.perf_counter() - start)
    loop = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["samples_per_s"]
    return wall, loop


def open_clip_reference(
    shards: str, batch: int, workdir: Path, model: str, samples: int
) -> tuple[float, float | None]:
    """(samples/s with start-up, the last samples/s open_clip logs for its loop)."""
    from open_clip_train.main import main

    start = time.perf_counter()
    args = [
        "--train-data",
        shards,
        "--dataset-type",
        "webdataset",
        "--batch-size",
        str(batch),
        "--epochs",
        "1",
    ]
    args += ["--train-num-samples", str(samples), "--workers", "1", "--model", model, "--lr", "5e-4"]
    args += ["--logs", str(workdir / "oc"), "--name", "bench", "--save-frequency", "0", "--device", "cpu"]
    main([*args, "--log-every-n-steps", "1"])
    wall = samples / (time.perf_counter() - start)
    logged = re.findall(r"([0-9.]+)/s/gpu", (workdir / "oc" / "bench" / "out.log").read_text())
    return wall, float(logged[-1]) if logged else None


def loader_rate(shards: str, batch: int, model_cfg: Path) -> float:
    from unimed_train.data import make_loader
    from unimed_train.model import build_model

    built = build_model("tiny", model_cfg=str(model_cfg))
    loader = make_loader(
        shards,
        preprocess=built.preprocess_train,
        tokenizer=built.tokenizer,
        batch_size=batch,
        workers=1,
        seed=0,
    )
    start, seen = time.perf_counter(), 0
    for batch_data in loader.dataloader:
        seen += len(batch_data["key"])
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--text-encoder", help="local BiomedBERT folder for the GPU variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.gpu:
            import torch

            extra = ["--model", "ViT-B-16", "--precision", "amp_bf16", "--grad-checkpointing", "true"]
            if args.text_encoder:
                extra += ["--text-encoder", args.text_encoder, "--context-length", "256"]
            torch.cuda.reset_peak_memory_stats()
            _, rate = ours(args.shards, args.steps, args.batch, workdir, extra)
            peak = torch.cuda.max_memory_allocated() / 2**30
            # ViT-B-16 image tower ~17.6 GFLOPs forward per image; x3 for forward+backward; text tower ignored
            mfu = rate * 3 * 17.6e9 / 989e12
            print(
                f"GPU: {rate:.1f} samples/s/GPU, peak memory {peak:.1f} GiB, MFU (image tower only) {mfu:.1%}"
            )
            return
        config = workdir / "tiny.json"
        config.write_text(json.dumps(TINY))
        # Both trainers import torch, torchvision and open_clip (seconds): import them before either
        # clock starts, or whichever runs first is charged for the other's imports too.
        import open_clip_train.main  # noqa: F401
        import unimed_train.main  # noqa: F401

        ours_wall, ours_loop = ours(
            args.shards, args.steps, args.batch, workdir, ["--model", "tiny", "--model-cfg", str(config)]
        )
        import open_clip

        (workdir / "cfg").mkdir()
        (workdir / "cfg" / "unimed-bench-tiny.json").write_text(json.dumps(TINY))
        open_clip.add_model_config(workdir / "cfg")
        oc_wall, oc_loop = open_clip_reference(
            args.shards, args.batch, workdir, "unimed-bench-tiny", args.steps * args.batch
        )
        rate_loader = loader_rate(args.shards, args.batch, config)
        print(f"{'what':<34} {'with start-up':>14} {'loop':>8}  (samples/s)")
        print(f"{'unimed_train.main (tiny ViT)':<34} {ours_wall:>14.1f} {ours_loop:>8.1f}")
        oc_loop_text = f"{oc_loop:>8.1f}" if oc_loop is not None else f"{'?':>8}"
        print(f"{'open_clip_train.main (same model)':<34} {oc_wall:>14.1f} {oc_loop_text}")
        print(f"{'unimed_train.data loader alone':<34} {rate_loader:>14.1f}")


if __name__ == "__main__":
    main()
