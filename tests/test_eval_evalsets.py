"""Reading CLIP_benchmark-layout eval sets: metadata, prompt fallbacks, batches in order, clear errors."""

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.eval.evalsets import EvalSetError, iter_batches, load_evalset

from tests.wds_samples import write_evalset


def test_metadata_prompts_and_fallbacks(tmp_path: Path):
    ev = load_evalset(write_evalset(tmp_path / "a", splits={"test": 2, "train": 3}, prompts=True))
    assert (ev.name, ev.modality, ev.kind) == ("a", "xray", "classification")
    assert ev.splits == {"train": 3, "test": 2}  # 15 and 10 samples at 7 per shard
    assert ev.prompt_ensembles()[0] == ["square 0 on x-ray", "x-ray: square 0"]
    bare = load_evalset(write_evalset(tmp_path / "b", n_classes=2, modality=None))
    assert (bare.name, bare.modality) == ("b", "unknown")
    assert bare.prompt_ensembles()[1] == ["a photo of a circle 1.", "an image of circle 1."]


def _targets(evalset, workers: int = 0, batch_size: int = 4) -> list:
    import torchvision.transforms as T

    to_tensor = T.Compose([T.Resize((16, 16)), T.ToTensor()])
    return [t for _, ts in iter_batches(evalset, "test", to_tensor, batch_size, workers) for t in ts]


def test_batches_come_in_shard_order_with_keys_and_labels(tmp_path: Path):
    import torchvision.transforms as T

    cls = load_evalset(write_evalset(tmp_path / "c", n_classes=3, splits={"test": 5}))
    targets = _targets(cls)
    assert [t.value for t in targets] == [i % 3 for i in range(15)]
    assert [t.key for t in targets] == [f"s{i:05d}" for i in range(15)]
    images, _ = next(iter(iter_batches(cls, "test", T.Compose([T.Resize((16, 16)), T.ToTensor()]), 4)))
    assert images.shape == (4, 3, 16, 16)
    ml = load_evalset(write_evalset(tmp_path / "m", kind="multilabel", n_classes=4, fmt="jpg"))
    vectors = [t.value for t in _targets(ml, batch_size=5)]
    assert len(vectors) == 16 and vectors[0].tolist() == [1, -1, 0, 0]
    rt = load_evalset(write_evalset(tmp_path / "r", kind="retrieval", n_classes=2, fmt="webp"))
    captions = [t.value for t in _targets(rt, batch_size=3)]
    assert rt.kind == "retrieval" and captions[1] == ["a photo of a circle 1", "image number 1"]


def test_workers_change_the_order_but_not_the_key_label_pairs(tmp_path: Path):
    ev = load_evalset(write_evalset(tmp_path / "c", n_classes=3, splits={"test": 5}, shard_size=4))
    alone = [(t.key, t.value) for t in _targets(ev)]
    dealt = [(t.key, t.value) for t in _targets(ev, workers=2)]
    assert sorted(dealt) == alone and len(set(dealt)) == 15


def test_uncertain_labels_listed_in_the_json_become_minus_one(tmp_path: Path):
    """Our sets store an uncertain finding as 0 (CLIP_benchmark's reading: negative) and name it in
    the sample json; the evaluator masks it."""
    import numpy as np

    from tests.wds_samples import npy_bytes, shape_image, write_tar

    root = write_evalset(tmp_path / "m", kind="multilabel", n_classes=3, splits={"test": 1})
    names = (root / "classnames.txt").read_text().splitlines()
    sample = {
        "__key__": "u0",
        "png": shape_image(0, 0),
        "npy": npy_bytes(np.array([1, 0, 0], dtype=np.float32)),
        "json": json.dumps({"labels": [names[0]], "uncertain_labels": [names[2]]}).encode(),
    }
    write_tar(root / "test" / "0.tar", [sample])
    (root / "test" / "nshards.txt").write_text("1\n")
    (target,) = _targets(load_evalset(root))
    assert target.value.tolist() == [1, 0, -1]


def test_a_bad_sample_names_its_shard_and_key(tmp_path: Path):
    from tests.wds_samples import shape_image, write_tar

    root = write_evalset(tmp_path / "c", n_classes=2, splits={"test": 1})
    write_tar(root / "test" / "0.tar", [{"__key__": "k7", "png": shape_image(0, 0), "cls": b"5"}])
    (root / "test" / "nshards.txt").write_text("1\n")
    with pytest.raises(EvalSetError, match=r"0\.tar: sample k7: class id 5 outside classnames.txt"):
        _targets(load_evalset(root))


def test_an_emptied_split_folder_is_no_split(tmp_path: Path):
    root = write_evalset(tmp_path / "c", n_classes=2, splits={"test": 2})
    (root / "train").mkdir()  # what an older run may leave behind
    assert set(load_evalset(root).splits) == {"test"}


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (lambda r: (r / "test" / "nshards.txt").unlink(), "missing test/nshards.txt"),
        (lambda r: (r / "classnames.txt").unlink(), "missing classnames.txt"),
        (lambda r: (r / "test" / "0.tar").unlink(), "shards are missing"),
        (lambda r: (r / "dataset_type.txt").write_text("segmentation"), "dataset_type.txt says"),
        (lambda r: (r / "test" / "nshards.txt").write_text("0"), "the split has no shards"),
        (lambda r: (r / "classnames.txt").write_bytes(b"caf\xe9\n"), "not UTF-8"),
        (lambda r: (r / "classnames.txt").write_text("a\na\n"), "repeats a class name"),
        (lambda r: (r / "prompts.json").write_text('{"a": "one prompt"}'), "prompts.json must map"),
    ],
)
def test_unreadable_sets_name_the_path_and_reason(tmp_path: Path, breakage, reason):
    root = write_evalset(tmp_path / "broken", n_classes=2)
    breakage(root)
    with pytest.raises(EvalSetError, match=reason) as info:
        load_evalset(root)
    assert str(root) in str(info.value)
