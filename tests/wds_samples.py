"""Test data in WebDataset form: a tar writer, class-coded shape images, CLIP_benchmark eval sets."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 200, 30), (200, 40, 200), (30, 200, 200)]
SHAPES = ["square", "circle", "triangle"]


def shape_image(cls: int, seed: int, size: int = 40, fmt: str = "png") -> bytes:
    """A coloured shape per class on a jittered background (deterministic for (cls, seed))."""
    rng = np.random.default_rng(seed * 101 + cls)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
    draw = ImageDraw.Draw(img)
    lo, hi = int(rng.integers(2, 10)), int(rng.integers(size - 10, size - 2))
    colour, shape = COLOURS[cls % len(COLOURS)], SHAPES[cls % len(SHAPES)]
    if shape == "square":
        draw.rectangle([lo, lo, hi, hi], fill=colour)
    elif shape == "circle":
        draw.ellipse([lo, lo, hi, hi], fill=colour)
    else:
        draw.polygon([(lo, hi), (hi, hi), ((lo + hi) // 2, lo)], fill=colour)
    buf = io.BytesIO()
    img.save(buf, format=fmt.upper().replace("JPG", "JPEG"))
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_tar(path: Path, samples: list[dict[str, bytes]]) -> None:
    """WebDataset samples (`__key__` plus extension -> bytes) as one tar, members in sample order."""
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            key = sample["__key__"]
            for ext, data in sample.items():
                if ext == "__key__":
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))


def write_evalset(
    root: Path,
    kind: str = "classification",
    n_classes: int = 5,
    splits: dict[str, int] | None = None,
    shard_size: int = 7,
    modality: str | None = "xray",
    prompts: bool = False,
    fmt: str = "png",
    unique_captions: bool = False,
) -> Path:
    """A CLIP_benchmark-layout eval set of shape images: `splits` maps split -> samples per class.

    kind: classification (.cls), multilabel (.npy over the classes; a few -1 uncertain labels),
    retrieval (.txt with two captions per image; the first repeats across a class unless
    `unique_captions`)."""
    splits = splits or {"test": 4}
    root.mkdir(parents=True, exist_ok=True)
    names = [f"{SHAPES[c % 3]} {c}" for c in range(n_classes)]
    for split, per_class in splits.items():
        samples = []
        for i in range(per_class * n_classes):
            cls, seed = i % n_classes, i + 1000 * len(split)
            sample = {"__key__": f"s{i:05d}", fmt: shape_image(cls, seed, fmt=fmt)}
            if kind == "classification":
                sample["cls"] = str(cls).encode()
            elif kind == "multilabel":
                vec = np.zeros(n_classes, dtype=np.float32)
                vec[cls] = 1
                vec[(cls + 1 + i) % n_classes] = -1 if i % 3 == 0 else 1
                sample["npy"] = npy_bytes(vec)
            else:
                first = f"a photo of a {names[cls]}" + (f" {i}" if unique_captions else "")
                sample["txt"] = f"{first}\nimage number {i}".encode()
            samples.append(sample)
        (root / split).mkdir(exist_ok=True)
        chunks = [samples[s : s + shard_size] for s in range(0, len(samples), shard_size)]
        for n, chunk in enumerate(chunks):
            write_tar(root / split / f"{n}.tar", chunk)
        (root / split / "nshards.txt").write_text(f"{len(chunks)}\n")
    if kind != "classification":
        (root / "dataset_type.txt").write_text(kind + "\n")
    if kind != "retrieval":
        (root / "classnames.txt").write_text("\n".join(names) + "\n")
        (root / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\nan image of {c}.\n")
    if prompts:
        (root / "prompts.json").write_text(json.dumps({n: [f"{n} on x-ray", f"x-ray: {n}"] for n in names}))
    if modality:
        info = {"name": root.name, "modality": modality, "task": kind, "classes": names, "splits": splits}
        (root / "info.json").write_text(json.dumps(info))
    return root
