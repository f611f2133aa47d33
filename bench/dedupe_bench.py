"""Dedupe/decontamination matching: recall on planted copies, false positives, lookup speed, cost.

Eval images (the samples, the biomedica demo JPEGs, pydicom's bundled 16-bit DICOMs and non-blank
tiles of the larger samples) are fingerprinted as the capped original plus 18 crop variants. The
pool holds planted copies (JPEG re-encode, resize, crop, brightness/contrast, DICOM re-windowing,
PNG<->JPEG) and mirrored/rotated distractors; a copy is recalled when it matches its own source.
False positives are counted on look-alike distinct pairs (frames of one series, tiles of one
slide, different chest X-rays). `HashIndex` is timed on 1M synthetic hashes against a brute-force
numpy popcount; fingerprinting is timed against `convert_file` alone. Prints; asserts nothing.

    uv run python -m bench.dedupe_bench [--quick]
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageEnhance
from pydicom.data import get_testdata_files

from unimed_data.config import DedupeConfig
from unimed_data.hash_index import HashIndex
from unimed_data.imaging import ConvertOptions, convert_file
from unimed_data.imaging.encode import capped
from unimed_data.imaging.fingerprint import Fingerprint, fingerprint
from unimed_data.imaging.thumb_compare import thumb_difference
from unimed_data.protect_fingerprint import crop_variants

DEFAULTS = DedupeConfig()
RADIUS, MAX_THUMB_DIFFERENCE = DEFAULTS.radius, DEFAULTS.max_thumb_difference
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = 13
KINDS = ("jpeg", "resize", "crop", "brightness", "png<->jpeg")
warnings.filterwarnings("ignore")  # pydicom's test files are deliberately odd


def cap(image: Image.Image) -> Image.Image:
    return capped(image, ConvertOptions().max_side)


def variants(image: Image.Image) -> list[Fingerprint]:
    """The capped eval image and its crop variants, as the eval side fingerprints them."""
    return [fingerprint(variant) for variant in crop_variants(cap(image))]


def close(a: Fingerprint, b: Fingerprint) -> bool:
    bits = ((a.phash ^ b.phash) & (2**64 - 1)).bit_count()
    return bits <= RADIUS and thumb_difference(a.thumb, b.thumb) <= MAX_THUMB_DIFFERENCE


def matches(eval_side: list[Fingerprint], pool: Fingerprint) -> bool:
    return eval_side[0].pixels == pool.pixels or any(close(v, pool) for v in eval_side)


def dicom_window(path: str, rng: np.random.Generator | None = None, pct=(0, 100)) -> Image.Image:
    """A 16-bit DICOM to uint8 under a percentile window, or (rng given) under its header window
    moved by up to 10% of the width and widened or narrowed by up to 15%."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float64)
    arr = arr[len(arr) // 2] if arr.ndim == 3 else arr
    arr = arr * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    lo, hi = np.percentile(arr, pct)
    if rng is not None:
        first = [float(np.ravel([ds[k].value])[0]) for k in ("WindowCenter", "WindowWidth")]
        centre, width = first[0] + first[1] * rng.uniform(-0.1, 0.1), first[1] * rng.uniform(0.85, 1.15)
        lo, hi = centre - width / 2, centre + width / 2
    return Image.fromarray((np.clip((arr - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8))


def load_dicoms() -> dict[str, tuple[str, Image.Image]]:
    """Distinct 2-D greyscale 16-bit test DICOMs -> (path, the converter's own output image)."""
    found, seen = {}, []
    for path in sorted(get_testdata_files()):
        try:
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
            ok = ds.get("BitsAllocated") == 16 and ds.get("SamplesPerPixel", 1) == 1
            if not ok or arr.ndim != 2 or min(arr.shape) < 64:
                continue
            image = Image.open(io.BytesIO(convert_file(Path(path), ConvertOptions()).jpeg))
        except Exception:
            continue
        key = fingerprint(cap(dicom_window(path)))
        if not any(close(key, other) for other in seen):  # one image in two transfer syntaxes
            seen.append(key)
            found[f"dicom:{Path(path).name}"] = (path, image.convert("L"))
    return found


def tiles(image: Image.Image, side: int) -> dict[tuple[int, int], Image.Image]:
    out = {}
    for y in range(0, image.height - side + 1, side):
        for x in range(0, image.width - side + 1, side):
            tile = image.crop((x, y, x + side, y + side))
            if np.asarray(tile.convert("L")).std() >= 8:  # blank background is not an image
                out[(x // side, y // side)] = tile
    return out


def eval_images(quick: bool) -> tuple[dict[str, Image.Image], dict[str, str]]:
    images = {p.name: Image.open(p) for p in sorted((DATA / "samples").iterdir())}
    images = {k: v.convert("L" if v.mode in ("L", "I;16", "I") else "RGB") for k, v in images.items()}
    demo = sorted((DATA / "biomedica_demo").rglob("*.jpg"))
    images |= {f"demo{i}": Image.open(p).convert("RGB") for i, p in enumerate(demo)}
    big = ("retina_glaucoma.jpg", "tumor_histo_pathology.jpg", "brain_MRI.jpg", "xray_pneumonia.png")
    for name in big:
        for side in (256,) if quick else (256, 160):
            images |= {f"{name}@{side}{xy}": t for xy, t in tiles(images[name], side).items()}
    dicoms = load_dicoms()
    return images | {k: im for k, (_, im) in dicoms.items()}, {k: p for k, (p, _) in dicoms.items()}


def transform(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    def roundtrip(im: Image.Image, fmt: str, **kw) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return Image.open(io.BytesIO(buf.getvalue())).convert(im.mode)

    w, h = image.size
    if kind == "jpeg":
        return roundtrip(image, "JPEG", quality=int(rng.integers(60, 96)))
    if kind == "resize":
        s = rng.uniform(0.5, 2.0)
        return image.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.BICUBIC)
    if kind == "crop":
        cw, ch = rng.uniform(0, 0.05) * w, rng.uniform(0, 0.05) * h
        left, top = rng.uniform(0, cw), rng.uniform(0, ch)
        return image.crop((round(left), round(top), round(w - (cw - left)), round(h - (ch - top))))
    if kind == "brightness":
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
        return ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))
    return roundtrip(roundtrip(image, "JPEG", quality=90), "PNG")  # PNG<->JPEG: either way round


def plant(images, dicom_paths, quick: bool, rng) -> list[tuple[str, str, Fingerprint]]:
    names, planted = list(images), []
    order = rng.permutation(len(names))
    for k in range(100 if quick else 500):
        name, kind = names[order[k % len(names)]], KINDS[k % len(KINDS)]
        planted.append((name, kind, fingerprint(cap(transform(images[name], kind, rng)))))
    for name, path in dicom_paths.items():
        for pct in ((2, 98), (0, 100)):
            planted.append((name, "dicom pct window", fingerprint(cap(dicom_window(path, pct=pct)))))
        if "WindowCenter" in pydicom.dcmread(path, stop_before_pixels=True):
            for _ in range(2):
                planted.append((name, "dicom header wnd~", fingerprint(cap(dicom_window(path, rng)))))
    return planted


def pool_matches(evals: dict[str, list[Fingerprint]], pool: list[Fingerprint]) -> set[tuple[str, int]]:
    """(eval name, pool position) of every match, found through the index as the stage would."""
    owner, var = zip(*[(n, v) for n, vs in evals.items() for v in vs], strict=True)
    found = set()
    index = HashIndex(np.array([p.phash for p in pool], np.int64))
    for q, h, _ in index.search(np.array([v.phash for v in var], np.int64), RADIUS):
        for qi, hi in zip(q.tolist(), h.tolist(), strict=True):
            if thumb_difference(var[qi].thumb, pool[hi].thumb) <= MAX_THUMB_DIFFERENCE:
                found.add((owner[qi], hi))
    by_digest = {vs[0].pixels: n for n, vs in evals.items()}
    return found | {(by_digest[p.pixels], i) for i, p in enumerate(pool) if p.pixels in by_digest}


def cross_matches(evals: dict[str, list[Fingerprint]]) -> None:
    """Every eval image against every other (as pool), except overlapping tiles of one source."""
    names = list(evals)
    found = pool_matches(evals, [evals[n][0] for n in names])

    def distinct(a: str, b: str) -> bool:
        same_source, grid = a.split("@")[0] == b.split("@")[0], a.split("(")[0] == b.split("(")[0]
        return a != b and (not same_source or grid)

    pairs = sum(distinct(a, b) for a, b in combinations(names, 2))
    hits = {tuple(sorted((a, names[i]))) for a, i in found if distinct(a, names[i])}
    print(
        f"distinct eval images matching each other: {len(hits)} of {pairs:,} pairs "
        f"({len(hits) / pairs * 1e5:.0f} per 100k): " + ", ".join(f"{a} ~ {b}" for a, b in sorted(hits)[:8])
    )


def recall(quick: bool) -> None:
    rng = np.random.default_rng(SEED)
    images, dicom_paths = eval_images(quick)
    evals = {n: variants(im) for n, im in images.items()}
    planted = plant(images, dicom_paths, quick, rng)
    flips = (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90)
    distract = [
        (f"{op.name} of {n}", fingerprint(cap(images[n].transpose(op))))
        for n in list(images)[:: 3 if quick else 1]
        for op in flips
    ]
    labels = [f"{k} of {n}" for n, k, _ in planted] + [d[0] for d in distract]
    found = pool_matches(evals, [p[2] for p in planted] + [d[1] for d in distract])
    total, hit = (
        Counter(k for _, k, _ in planted),
        Counter(k for i, (n, k, _) in enumerate(planted) if (n, i) in found),
    )
    print(
        f"\n1. Recall: {len(evals)} eval images x {len(next(iter(evals.values())))} fingerprints; pool "
        f"{len(labels)} ({len(planted)} planted, {len(distract)} mirrored/rotated distractors)"
    )
    print(f"{'transformation':<20}{'planted':>8}{'recalled':>10}{'recall':>9}")
    for kind in total:
        print(f"{kind:<20}{total[kind]:>8}{hit[kind]:>10}{hit[kind] / total[kind]:>9.1%}")
    print(f"{'overall':<20}{len(planted):>8}{hit.total():>10}{hit.total() / len(planted):>9.1%}")
    misses = Counter(f"{k} of {n}" for i, (n, k, _) in enumerate(planted) if (n, i) not in found)
    print("missed:", ", ".join(f"{m} x{c}" for m, c in misses.items()) or "none")
    wrong = Counter(f"{n} ~ {labels[i]}" for n, i in found if i >= len(planted) or planted[i][0] != n)
    print(f"matches other than to its own source: {wrong.total()}")
    for pair, count in wrong.most_common(6):
        print(f"  {pair} x{count}")
    cross_matches(evals)


def false_positives(quick: bool) -> None:
    groups: dict[str, list[tuple[str, Image.Image, Image.Image]]] = {}
    for path in get_testdata_files():
        name = Path(path).name
        if name in ("examples_ybr_color.dcm", "rtdose.dcm", "SC_rgb_rle_2frame.dcm"):
            arr = pydicom.dcmread(path).pixel_array.astype(np.float64)
            arr = (arr - arr.min()) / max(arr.max() - arr.min(), 1e-9) * 255
            frames = [Image.fromarray(f.astype(np.uint8)) for f in arr]
            groups.setdefault("frames of one series", []).extend(
                (name, a, b) for a, b in combinations(frames, 2)
            )
    samples = DATA / "samples"
    for slide in ("tumor_histo_pathology.jpg", "retina_glaucoma.jpg"):
        grid = tiles(Image.open(samples / slide).convert("RGB"), 256)
        for (a, ta), (b, tb) in combinations(grid.items(), 2):
            near = abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1
            kind = "neighbouring tiles" if near else "other tiles, one slide"
            groups.setdefault(kind, []).append((slide, ta, tb))
    xrays = [Image.open(samples / n).convert("L") for n in ("xray_cardiomegaly.jpg", "xray_pneumonia.png")]
    groups["different chest X-rays"] = [("xray", xrays[0], xrays[1])]
    print("\n2. False positives (a pair counts when either image, as eval side, matches the other)")
    print(f"{'kind':<24}{'pairs':>8}{'false pos.':>12}{'per 100k':>10}  where")
    for kind, pairs in groups.items():
        fps = Counter()
        for src, a, b in pairs:
            fa, fb = variants(a), variants(b)
            fps[src] += matches(fa, fb[0]) or matches(fb, fa[0])
        n = sum(fps.values())
        where = ", ".join(f"{s}: {c}" for s, c in fps.items() if c)
        print(f"{kind:<24}{len(pairs):>8}{n:>12}{n / len(pairs) * 1e5:>10.0f}  {where}")


def throughput(quick: bool) -> None:
    rng = np.random.default_rng(SEED)
    size, n_query = (100_000, 10_000) if quick else (1_000_000, 100_000)
    hashes, queries = (rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64) for n in (size, n_query))
    near = rng.choice(size, n_query // 10, replace=False)  # a tenth are true near copies (<= RADIUS bits)
    flips = np.bitwise_or.reduce(np.uint64(1) << rng.integers(0, 64, (RADIUS, len(near)), dtype=np.uint64))
    queries[: len(near)] = (hashes[near].view(np.uint64) ^ flips).view(np.int64)
    start = time.perf_counter()
    index = HashIndex(hashes)
    print(f"\n3. HashIndex, {size:,} hashes, radius {RADIUS}: build {time.perf_counter() - start:.2f} s")
    print(f"{'queries':>12}{'search s':>10}{'queries/s':>12}{'pairs':>9}{'brute s (est)':>15}{'ratio':>8}")
    sample, start = queries[:1000].view(np.uint64), time.perf_counter()
    for i in range(0, len(sample), 16):
        (np.bitwise_count(sample[i : i + 16, None] ^ index.hashes[None, :]) <= RADIUS).nonzero()
    brute_per_query = (time.perf_counter() - start) / len(sample)
    for reps in (1,) if quick else (1, 19):  # x19: every eval image's crop variants
        batch, start = np.tile(queries, reps), time.perf_counter()
        pairs = sum(len(q) for q, _, _ in index.search(batch, RADIUS))
        took, brute = time.perf_counter() - start, brute_per_query * len(batch)
        print(
            f"{len(batch):>12,}{took:>10.2f}{len(batch) / took:>12,.0f}{pairs:>9,}{brute:>15.1f}{brute / took:>7.1f}x"
        )


def conversion_cost(quick: bool) -> None:
    paths = sorted((DATA / "samples").iterdir()) + [Path(p) for p, _ in load_dicoms().values()]
    capped = [Image.open(io.BytesIO(convert_file(p).jpeg)).copy() for p in paths]
    for image in capped:
        fingerprint(image)  # warm
    convert_s = fp_s = 0.0
    for _ in range(2 if quick else 5):
        for path, image in zip(paths, capped, strict=True):
            start = time.perf_counter()
            convert_file(path, ConvertOptions())
            mid = time.perf_counter()
            fingerprint(image)
            convert_s, fp_s = convert_s + mid - start, fp_s + time.perf_counter() - mid
    print(
        f"\n4. Conversion cost, {len(paths)} files (samples + DICOMs) x {2 if quick else 5} passes: convert_file "
        f"{convert_s:.3f} s, fingerprint {fp_s:.3f} s more: ratio {(convert_s + fp_s) / convert_s:.3f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tiles, plants and hashes")
    args = parser.parse_args()
    start = time.perf_counter()
    recall(args.quick)
    false_positives(args.quick)
    throughput(args.quick)
    conversion_cost(args.quick)
    print(f"\nwall {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
