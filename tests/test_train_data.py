"""unimed_train.data: spec parsing, sizes.json counts, caption sampling, rank/worker splits,
weighted resampling, teacher features, batch shapes and resume."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")

import torch
from unimed_train.data import caption_index, make_loader, parse_spec
from unimed_train.objectives.distill import TeacherFeatures
from unimed_train.objectives.slip import SlipViews

from tests.wds_samples import npy_bytes, write_tar

N_CAPTIONS = 6
TEACHER_DIM = 8


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    rgb = np.random.default_rng(seed).integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


def _make_source(folder: Path, name: str, n_shards: int, per_shard: int, *, plain=False, teacher=False):
    """Shards `name-00000i.tar` in `folder` with sizes.json; returns the brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for s in range(n_shards):
        samples = []
        for i in range(per_shard):
            key = f"{name}_{s:02d}{i:03d}"
            sample = {"__key__": key, "jpg": _jpeg(s * 1000 + i), "txt": f"{key} primary".encode()}
            if not plain:
                if i % 5 == 4:  # json without captions: falls back to txt
                    meta = {"captions": [], "dataset": name}
                else:
                    meta = {"captions": [f"{key} caption {c}" for c in range(N_CAPTIONS)], "dataset": name}
                sample["json"] = json.dumps(meta).encode()
            if teacher and i % 2 == 0:
                idx = s * 1000 + i
                sample["biomedclip.img.npy"] = npy_bytes(np.full(TEACHER_DIM, idx, dtype=np.float32))
                sample["biomedclip.txt.npy"] = npy_bytes(-np.full(TEACHER_DIM, idx, dtype=np.float32))
            samples.append(sample)
        fname = f"{name}-{s:06d}.tar"
        write_tar(folder / fname, samples)
        sizes[fname] = per_shard
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return str(folder / f"{name}-{{{0:06d}..{n_shards - 1:06d}}}.tar")


def _raw_tokenizer(text):
    return [text]


def _small_image(im):
    return torch.zeros(3, 4, 4)


def _loader(spec, **kw):
    args = {
        "preprocess": _small_image,
        "tokenizer": _raw_tokenizer,
        "batch_size": 4,
        "workers": 0,
        "seed": 7,
        "shuffle_buffer": 16,
    }
    args.update(kw)
    return make_loader(spec, **args)


def _epoch_texts(loader) -> dict[str, str]:
    out = {}
    for batch in loader:
        out.update(zip(batch["key"], batch["text"], strict=True))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return {
        "a": _make_source(root / "a", "a", 4, 10, teacher=True),
        "b": _make_source(root / "b", "b", 2, 10),
        "plain": _make_source(root / "plain", "plain", 2, 6, plain=True),
        "root": root,
    }


def test_parse_spec_weights_and_braces():
    srcs = parse_spec("x/t-{000000..000002}.tar@2::y/u-000000.tar::z/v-{0..1}.tar@0.5")
    assert [s.weight for s in srcs] == [2.0, 1.0, 0.5]
    assert srcs[0].urls == ("x/t-000000.tar", "x/t-000001.tar", "x/t-000002.tar")
    assert srcs[1].urls == ("y/u-000000.tar",)
    with pytest.raises(ValueError):
        parse_spec("x/t.tar@0")
    with pytest.raises(ValueError):
        parse_spec("x/t.tar::")


def test_sizes_json_is_found_beside_shards_named_without_a_folder(corpus, monkeypatch):
    from unimed_train.data.spec import dataset_size

    pattern = corpus["a"]
    monkeypatch.chdir(Path(pattern).parent)  # run from inside the shard folder
    assert dataset_size(parse_spec(Path(pattern).name)) == dataset_size(parse_spec(pattern))


def test_counts_from_sizes_json(corpus, tmp_path):
    loader = _loader(corpus["a"] + "::" + corpus["b"])
    assert loader.dataset_size == 60
    assert loader.num_batches == 15 and loader.num_samples == 60
    # only the shards named count
    sub = corpus["a"].replace("{000000..000003}", "{000000..000001}")
    assert _loader(sub).dataset_size == 20
    # world_size 2: ceil(60 / 8) batches per rank
    two = _loader(corpus["a"] + "::" + corpus["b"], rank=1, world_size=2)
    assert two.num_batches == 8 and two.num_samples == 64
    # no sizes.json: needs epoch_samples
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "x-000000.tar").write_bytes((corpus["root"] / "b" / "b-000000.tar").read_bytes())
    with pytest.raises(ValueError, match="epoch_samples"):
        _loader(str(bare / "x-000000.tar"))
    assert _loader(str(bare / "x-000000.tar"), epoch_samples=8).num_batches == 2


def test_caption_choice_deterministic_per_epoch(corpus):
    spec = corpus["a"] + "::" + corpus["b"]
    first = _epoch_texts(_loader(spec))
    again = _epoch_texts(_loader(spec))
    assert first == again and len(first) == 60
    loader = _loader(spec)
    per_key: dict[str, set[str]] = {}
    epochs = []
    for epoch in range(5):
        loader.set_epoch(epoch)
        texts = _epoch_texts(loader)
        epochs.append(texts)
        for k, t in texts.items():
            per_key.setdefault(k, set()).add(t)
    assert epochs[0] == first
    assert epochs[1] != epochs[0]
    for key, texts in epochs[2].items():
        i = int(key[-3:])
        if i % 5 == 4:
            assert texts == f"{key} primary"  # empty captions list -> txt
        else:
            n = caption_index(7, 2, key, N_CAPTIONS)
            assert texts == f"{key} caption {n}"
    with_json = [k for k in per_key if int(k[-3:]) % 5 != 4]
    assert np.mean([len(per_key[k]) for k in with_json]) > 2.5
    used = Counter(t.rsplit(" ", 1)[1] for e in epochs for k, t in e.items() if k in with_json)
    assert set(used) == {str(c) for c in range(N_CAPTIONS)}
    # another seed chooses differently
    assert _epoch_texts(_loader(spec, seed=8)) != first


def test_plain_open_clip_shards_use_txt(corpus):
    texts = _epoch_texts(_loader(corpus["plain"], batch_size=3))
    assert len(texts) == 12
    assert all(t == f"{k} primary" for k, t in texts.items())


def test_ranks_disjoint_and_covering(corpus):
    spec = corpus["a"] + "::" + corpus["b"]
    seen = []
    for rank in range(2):
        loader = _loader(spec, rank=rank, world_size=2, batch_size=5, epoch_samples=60)
        assert loader.num_batches == 6
        batches = list(loader)
        assert len(batches) == 6
        seen.append({k for b in batches for k in b["key"]})
    shards = [{k.rsplit("_", 1)[0] + k[-5:-3] for k in keys} for keys in seen]
    assert not shards[0] & shards[1]
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 60
    # the shard assignment changes with the epoch but stays a partition
    loader0 = _loader(spec, rank=0, world_size=2, batch_size=5)
    loader0.set_epoch(3)
    loader1 = _loader(spec, rank=1, world_size=2, batch_size=5, epoch=3)
    k0 = {k for b in loader0 for k in b["key"]}
    k1 = {k for b in loader1 for k in b["key"]}
    assert not k0 & k1 and len(k0 | k1) == 60


def test_workers_split_and_match_sequential(corpus):
    spec = corpus["a"] + "::" + corpus["b"]
    loader = _loader(spec, workers=2, batch_size=5)
    keys = [k for b in loader for k in b["key"]]
    assert len(keys) == 60 and len(set(keys)) == 60
    assert loader.state() == {"epoch": 0, "batches_done": 12}
    again = [k for b in loader for k in b["key"]]  # persistent workers, same epoch
    assert again == keys


def test_more_workers_than_shards_are_cut_to_what_the_shards_feed(corpus, caplog):
    loader = _loader(corpus["b"], workers=4, batch_size=5)  # 2 shards
    keys = [k for b in loader for k in b["key"]]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 20
    assert "using 2 workers per rank" in caplog.text


def test_fewer_shards_than_ranks_split_their_samples_between_ranks_and_workers(corpus, caplog):
    """2 shards of 10 for 3 ranks x 2 workers: every reader keeps every 6th sample from its own
    offset, so the ranks read disjoint samples that together cover the epoch (issue 12: this was
    "2 shards cannot be split between 3 ranks")."""
    per_rank = []
    for rank in range(3):
        loader = _loader(corpus["b"], rank=rank, world_size=3, workers=2, batch_size=2)
        assert loader.num_batches == 4  # ceil(20 / (2 x 3))
        per_rank.append([k for b in loader for k in b["key"]])
        assert per_rank[-1] == [k for b in loader for k in b["key"]]  # deterministic
    assert all(len(keys) == 8 for keys in per_rank)
    shares = [set(keys) for keys in per_rank]
    assert len(set.union(*shares)) == 20 and sum(len(s) for s in shares) == 20
    assert "--shard-size" in caplog.text and "--resampled" in caplog.text


def test_weighted_resampling(corpus):
    spec = f"{corpus['a']}@3::{corpus['b']}@1"
    # 1600 samples = 160 shard draws of 10 samples: the share of `a` has sd ~0.034 around 0.75
    loader = _loader(spec, resampled=True, epoch_samples=1600, batch_size=16)
    assert loader.num_batches == 100
    keys = [k for b in loader for k in b["key"]]
    assert len(keys) == 1600
    share = sum(k.startswith("a_") for k in keys) / len(keys)
    assert 0.64 < share < 0.86, share
    # every shard of both sources is drawn (uniformly within a source)
    assert {k[:4] for k in keys} == {f"a_0{s}" for s in range(4)} | {f"b_0{s}" for s in range(2)}
    # deterministic for (seed, epoch), different for another epoch
    assert [k for b in loader for k in b["key"]] == keys
    loader.set_epoch(1)
    assert [k for b in loader for k in b["key"]] != keys
    # world_size divides the epoch
    assert _loader(spec, resampled=True, epoch_samples=1600, batch_size=16, world_size=2).num_batches == 50


def test_teacher_features_and_mask(corpus):
    spec = corpus["a"] + "::" + corpus["b"]
    urls = [u for s in parse_spec(spec) for u in s.urls]
    loader = _loader(spec, members=[TeacherFeatures(("biomedclip",), None, urls)], batch_size=6)
    n_with = 0
    for batch in loader:
        assert batch["teacher_img"].shape == (6, TEACHER_DIM)
        assert batch["teacher_txt"].shape == (6, TEACHER_DIM)
        assert batch["has_teacher"].dtype == torch.bool
        for j, key in enumerate(batch["key"]):
            expect = key.startswith("a_") and int(key[-3:]) % 2 == 0
            assert bool(batch["has_teacher"][j]) == expect
            if expect:
                idx = int(key[-5:-3]) * 1000 + int(key[-3:])
                assert torch.all(batch["teacher_img"][j] == idx)
                assert torch.all(batch["teacher_txt"][j] == -idx)
                n_with += 1
            else:
                assert not batch["teacher_img"][j].any() and not batch["teacher_txt"][j].any()
    assert n_with == 20
    # a source without any teacher member still gives [B, D] zeros
    only_b = _loader(corpus["b"], members=[TeacherFeatures(("biomedclip",), {"biomedclip": TEACHER_DIM}, ())])
    batch = next(iter(only_b))
    assert batch["teacher_img"].shape == (4, TEACHER_DIM) and not batch["has_teacher"].any()


def test_batch_shapes_with_open_clip(corpus):
    import open_clip

    tokenizer = open_clip.get_tokenizer("RN50")
    preprocess = open_clip.image_transform(32, is_train=True)
    views = open_clip.image_transform(24, is_train=True)

    loader = make_loader(
        corpus["a"] + "::" + corpus["plain"],
        preprocess=preprocess,
        tokenizer=tokenizer,
        batch_size=4,
        workers=0,
        seed=0,
        members=[SlipViews(lambda im: (views(im), views(im)))],
    )
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["text"].shape == (4, 77) and batch["text"].dtype == torch.long
    assert batch["view1"].shape == (4, 3, 24, 24) and batch["view2"].shape == (4, 3, 24, 24)
    assert len(batch["key"]) == 4 and all(isinstance(k, str) for k in batch["key"])


def test_resume_skips_batches(corpus):
    spec = corpus["a"] + "::" + corpus["b"]
    loader = _loader(spec)
    loader.set_epoch(2)
    full = [b["key"] for b in loader]
    it = iter(loader)
    for _ in range(5):
        next(it)
    state = loader.state()
    assert state == {"epoch": 2, "batches_done": 5}
    resumed = _loader(spec)
    resumed.load_state(json.loads(json.dumps(state)))
    rest = [b["key"] for b in resumed]
    assert rest == full[5:]
    assert resumed.state() == {"epoch": 2, "batches_done": len(full)}


def test_check_shards_names_missing_local_files_and_leaves_pipes_alone(tmp_path):
    from unimed_train.cli import UsageError
    from unimed_train.data import check_shards

    (tmp_path / "s-000001.tar").write_bytes(b"")
    with pytest.raises(
        UsageError, match=r"2 of the 3 shards of .* do not exist: .*s-000000.tar, .*s-000002.tar$"
    ):
        check_shards(str(tmp_path / "s-{000000..000002}.tar"))
    assert len(check_shards("pipe:curl -s x/s-{0..3}.tar")[0].urls) == 4  # URLs: tests/test_train_remote.py
