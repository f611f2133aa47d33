"""LLM captioning: throughput against a loopback endpoint, and calls per unit versus per image.

1. Calls per second of the `openai` backend against the test suite's OpenAI-compatible server on
   127.0.0.1 with a fixed 200 ms latency, at concurrency 1, 8, 32 and 64, beside the ideal
   (concurrency / latency).
2. The number of LLM calls for a CheXpert-like label table of 200k rows (14 observations with
   CheXpert-like prevalences, uncertain labels kept) versus one call per image.
Prints; asserts nothing. Run it as a module from the repository root, so that `tests.llm_server`
imports as a package:

    uv run --all-extras python -m bench.llm_bench
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.llm_server import FakeOpenAI
from unimed_data.captions.base import CaptionUnit
from unimed_data.captions.openai_backend import OpenAICaptioner
from unimed_data.config import LLMConfig

CHEXPERT = {  # observation: (positive rate, uncertain rate), roughly as in CheXpert's training set
    "No Finding": (0.10, 0.0),
    "Enlarged Cardiomediastinum": (0.05, 0.06),
    "Cardiomegaly": (0.12, 0.04),
    "Lung Opacity": (0.47, 0.02),
    "Lung Lesion": (0.04, 0.01),
    "Edema": (0.23, 0.06),
    "Consolidation": (0.07, 0.12),
    "Pneumonia": (0.03, 0.08),
    "Atelectasis": (0.15, 0.15),
    "Pneumothorax": (0.09, 0.01),
    "Pleural Effusion": (0.39, 0.05),
    "Pleural Other": (0.02, 0.01),
    "Fracture": (0.04, 0.003),
    "Support Devices": (0.52, 0.005),
}


def chexpert_like_units(rows: int, seed: int = 0) -> set[CaptionUnit]:
    rng = np.random.default_rng(seed)
    names = list(CHEXPERT)
    draws = rng.random((rows, len(names)))
    positive = np.array([p for p, _ in CHEXPERT.values()])
    uncertain = positive + np.array([u for _, u in CHEXPERT.values()])
    units = set()
    for row in draws:
        labels = tuple(n for n, d, p in zip(names, row, positive, strict=True) if d < p)
        unsure = tuple(n for n, d, p, u in zip(names, row, positive, uncertain, strict=True) if p <= d < u)
        units.add(CaptionUnit("chexpert", "xray", tuple(sorted(labels + unsure)), unsure))
    return units


def throughput(concurrency: int, units: list[CaptionUnit], latency: float) -> float:
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(latency=latency) as server:
        settings = LLMConfig(
            model="bench", base_url=server.base_url, concurrency=concurrency, tokenizer="words"
        )
        captioner = OpenAICaptioner(settings, cache_path=Path(tmp) / "cache.sqlite", per_record=5)
        start = time.perf_counter()
        answers = captioner.caption(units)
        wall = time.perf_counter() - start
        assert all(isinstance(a, list) for a in answers.values()), "the bench server refused some units"
        return len(units) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "bench-key")

    units = sorted(chexpert_like_units(args.rows), key=repr)
    print(
        f"CheXpert-like table: {args.rows} rows -> {len(units)} caption units "
        f"({args.rows / len(units):.0f}x fewer calls than one per image)"
    )
    print(f"\n{'concurrency':>11} {'units':>6} {'calls/s':>9} {'ideal':>7} {'of ideal':>9}")
    for concurrency in (1, 8, 32, 64):
        sample = units[: max(16, min(len(units), concurrency * 6))]
        rate = throughput(concurrency, sample, args.latency)
        ideal = concurrency / args.latency
        print(f"{concurrency:>11} {len(sample):>6} {rate:>9.1f} {ideal:>7.1f} {rate / ideal:>8.0%}")


if __name__ == "__main__":
    main()
