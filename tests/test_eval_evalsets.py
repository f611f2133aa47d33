"""Reading CLIP_benchmark-layout eval sets: metadata, prompt fallbacks, batches in order, clear errors."""

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


def test_batches_come_in_shard_order_with_labels(tmp_path: Path):
    import torchvision.transforms as T

    to_tensor = T.Compose([T.Resize((16, 16)), T.ToTensor()])
    cls = load_evalset(write_evalset(tmp_path / "c", n_classes=3, splits={"test": 5}))
    labels = [y for _, ys in iter_batches(cls, "test", to_tensor, batch_size=4) for y in ys]
    assert labels == [i % 3 for i in range(15)]
    images, _ = next(iter(iter_batches(cls, "test", to_tensor, batch_size=4)))
    assert images.shape == (4, 3, 16, 16)
    ml = load_evalset(write_evalset(tmp_path / "m", kind="multilabel", n_classes=4, fmt="jpg"))
    vectors = [y for _, ys in iter_batches(ml, "test", to_tensor, batch_size=5) for y in ys]
    assert len(vectors) == 16 and vectors[0].tolist() == [1, -1, 0, 0]
    rt = load_evalset(write_evalset(tmp_path / "r", kind="retrieval", n_classes=2, fmt="webp"))
    captions = [y for _, ys in iter_batches(rt, "test", to_tensor, batch_size=3) for y in ys]
    assert rt.kind == "retrieval" and captions[1] == ["a photo of a circle 1", "image number 1"]


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (lambda r: (r / "test" / "nshards.txt").unlink(), "missing test/nshards.txt"),
        (lambda r: (r / "classnames.txt").unlink(), "missing classnames.txt"),
        (lambda r: (r / "test" / "0.tar").unlink(), "shards are missing"),
        (lambda r: (r / "dataset_type.txt").write_text("segmentation"), "dataset_type.txt says"),
    ],
)
def test_unreadable_sets_name_the_path_and_reason(tmp_path: Path, breakage, reason):
    root = write_evalset(tmp_path / "broken", n_classes=2)
    breakage(root)
    with pytest.raises(EvalSetError, match=reason) as info:
        load_evalset(root)
    assert str(root) in str(info.value)
