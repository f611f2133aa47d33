"""Model construction for the trainer: open_clip towers, an optional Hugging Face text tower, extra heads.

`build_model` wraps `open_clip.create_model_and_transforms` and adds what UniMed-CLIP-style training needs:

* ``model_name`` is any open_clip config name (``open_clip.list_models()``), a path to a JSON model config,
  a model-config dict (or pass ``model_cfg=`` to override the architecture outright), or an
  ``hf-hub:org/repo`` / ``local-dir:/path`` open_clip source (config and weights from there).
* ``text_encoder`` (a Hugging Face name or a LOCAL folder, e.g. BiomedBERT or MiniLM) replaces the text
  tower with open_clip's ``HFTextEncoder`` (``text_cfg.hf_model_name``); the tokenizer is then an
  ``open_clip.tokenizer.HFTokenizer`` on the same name/path. Its weights come from that name/path
  (``hf_model_pretrained=True``); nothing is fetched from a hub for a local folder.
* ``pretrained`` is an open_clip tag (e.g. ``openai``), an ``hf-hub:``/``local-dir:`` source, or a
  checkpoint FILE (ours, open_clip_train's or MetaCLIP's: a state dict, possibly nested under
  ``state_dict``/``model``, keys possibly prefixed ``module.``). Files (and tags when the architecture was
  changed, e.g. a new text tower) are loaded NON-strictly: matching keys load, shape mismatches are
  skipped, and a `LoadReport` lists loaded / missing / unexpected / shape-mismatched keys.
* ``loss="slip"`` adds ``ssl_head`` (SLIP's image MLP ``in->4096->4096->256``, BatchNorm1d+ReLU between),
  ``loss="distill"`` adds ``teacher_proj`` (one bias-free Linear per teacher whose dim differs from the
  student embed dim, Identity otherwise).

Precision: ``fp32``, ``amp`` and ``amp_bf16`` all keep the model weights in fp32 (open_clip casts only for
``fp16``/``bf16``/``pure_*``); for the amp modes wrap forward passes in
``torch.autocast(device_type, dtype=autocast_dtype(precision))``. ``fp16``/``bf16`` (open_clip's
low-precision weights, fp32 norms) and ``pure_fp16``/``pure_bf16`` are passed through as well.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unimed_train.cli import UsageError
from unimed_train.config import LOSSES

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "amp", "amp_bf16", "amp_bfloat16", "fp16", "bf16", "pure_fp16", "pure_bf16")
SCHEMA_PREFIXES = ("hf-hub:", "local-dir:")
DEFAULT_CONTEXT_LENGTH = 77


@dataclass
class LoadReport:
    """What a non-strict checkpoint load did. Keys are the model's own (after prefix stripping)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    mismatched_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.path}: loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        )


@dataclass
class Built:
    """Everything `build_model` makes. `ssl_head`/`teacher_proj` are None unless the loss needs them."""

    model: nn.Module
    preprocess_train: Callable
    preprocess_val: Callable
    tokenizer: Callable
    embed_dim: int
    context_length: int
    model_cfg: dict | None = None
    ssl_head: nn.Module | None = None
    teacher_proj: nn.ModuleDict | None = None
    load_report: LoadReport | None = None

    def extra_modules(self) -> dict[str, nn.Module]:
        """The trainable modules beside the model (for the optimizer, DDP and checkpoints)."""
        out: dict[str, nn.Module] = {}
        if self.ssl_head is not None:
            out["ssl_head"] = self.ssl_head
        if self.teacher_proj is not None:
            out["teacher_proj"] = self.teacher_proj
        return out


# ----------------------------------------------------------------------------------------------- heads


def build_ssl_head(in_dim: int, mlp_dim: int = 4096, out_dim: int = 256) -> nn.Sequential:
    """SLIP's image MLP: Linear-BN-ReLU-Linear-BN-ReLU-Linear (use SyncBatchNorm.convert_sync_batchnorm
    under DDP, as SLIP does). The input is the image embedding (``model.encode_image(x)``, unnormalised)."""
    return nn.Sequential(
        OrderedDict(
            [
                ("layer1", nn.Linear(in_dim, mlp_dim)),
                ("bn1", nn.BatchNorm1d(mlp_dim)),
                ("relu1", nn.ReLU(inplace=True)),
                ("layer2", nn.Linear(mlp_dim, mlp_dim)),
                ("bn2", nn.BatchNorm1d(mlp_dim)),
                ("relu2", nn.ReLU(inplace=True)),
                ("layer3", nn.Linear(mlp_dim, out_dim)),
            ]
        )
    )


def build_teacher_proj(teacher_dims: Mapping[str, int], embed_dim: int) -> nn.ModuleDict:
    """One projection per teacher into the student space: ``teacher_feat @ W`` -> embed_dim.

    ``nn.Linear(teacher_dim, embed_dim, bias=False)`` when the dims differ, ``nn.Identity()`` when equal.
    Teacher names become ModuleDict keys ('.' is not allowed there and is replaced by '_')."""
    mods = nn.ModuleDict()
    for name, dim in teacher_dims.items():
        key = str(name).replace(".", "_")
        mods[key] = nn.Identity() if int(dim) == embed_dim else nn.Linear(int(dim), embed_dim, bias=False)
    return mods


# ------------------------------------------------------------------------------------- configurations


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype a precision asks for (None: no autocast)."""
    if precision == "amp":
        return torch.float16
    if precision in ("amp_bf16", "amp_bfloat16"):
        return torch.bfloat16
    return None


def hf_text_cfg(text_encoder: str, context_length: int, proj_type: str = "mlp", pooler: str = "mean_pooler"):
    """An open_clip ``text_cfg`` for a Hugging Face text tower (name or local folder)."""
    return {
        "hf_model_name": str(text_encoder),
        "hf_tokenizer_name": str(text_encoder),
        "hf_proj_type": proj_type,
        "hf_pooler_type": pooler,
        "context_length": int(context_length),
    }


def _load_cfg(spec: dict | str | os.PathLike) -> dict:
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec))
    with open(spec, encoding="utf-8") as f:
        cfg = json.load(f)
    # an open_clip_config.json (hf-hub / local-dir layout) nests the architecture under model_cfg
    return cfg["model_cfg"] if "model_cfg" in cfg and "embed_dim" not in cfg else cfg


def _check_cfg(cfg: dict) -> dict:
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise UsageError(f"model config lacks {missing}; needs embed_dim, vision_cfg and text_cfg")
    return cfg


_CFG_DIR: Path | None = None


def _register_cfg(base: str, cfg: dict) -> str:
    """Register a config with open_clip under a unique, content-derived name, and return the name."""
    import open_clip

    global _CFG_DIR
    blob = json.dumps(cfg, sort_keys=True)
    name = f"unimed-{base.replace('/', '-')}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"
    if name in open_clip.list_models():
        return name
    if _CFG_DIR is None:
        _CFG_DIR = Path(tempfile.mkdtemp(prefix="unimed_oc_cfg_"))
    path = _CFG_DIR / f"{name}.json"
    path.write_text(blob, encoding="utf-8")
    open_clip.add_model_config(path)
    return name


# ------------------------------------------------------------------------------------- checkpoint load


def _strip_prefixes(sd: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sd.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def read_state_dict(path: str | os.PathLike, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat state dict (safetensors, torch pickles, TorchScript archives).

    Unwraps ``state_dict`` / ``model`` / ``state_dict_ema`` nesting and strips ``module.``/``_orig_mod.``."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        ckpt: Any = load_file(path, device="cpu")
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
        except RuntimeError as e:
            if "TorchScript" not in str(e) and "jit" not in str(e).lower():
                raise
            ckpt = torch.jit.load(path, map_location="cpu")  # OpenAI's released .pt files
    if isinstance(ckpt, torch.jit.ScriptModule):
        ckpt = ckpt.state_dict()
        for k in ("input_resolution", "context_length", "vocab_size"):
            ckpt.pop(k, None)
    if isinstance(ckpt, Mapping):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(ckpt.get(key), Mapping) and not isinstance(ckpt.get(key), torch.Tensor):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: not a state dict (got {type(ckpt).__name__})")
    return _strip_prefixes({k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)})


def load_checkpoint_nonstrict(
    model: nn.Module, path: str | os.PathLike, *, weights_only: bool = True
) -> LoadReport:
    """Load every checkpoint tensor whose key and shape fit ``model``; skip and report the rest.

    Applies open_clip's compatibility fixes first: third-party key conversion, CLIP -> CustomTextCLIP
    text-key moves (``transformer.*`` -> ``text.transformer.*``), logit_scale/bias reshapes, and image
    positional-embedding interpolation to the model's grid."""
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    sd = read_state_dict(path, weights_only=weights_only)
    try:
        from open_clip.convert import convert_state_dict

        sd = convert_state_dict(model, sd)
    except Exception as e:  # third-party converters are best effort only
        log.debug("convert_state_dict skipped: %s", e)
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    for key in ("logit_scale", "logit_bias"):
        target = getattr(model, key, None)
        if key in sd and isinstance(target, torch.Tensor) and sd[key].numel() == target.numel():
            sd[key] = sd[key].reshape(target.shape)
    try:
        resize_pos_embed(sd, model)
    except Exception as e:
        log.warning("image positional embedding not resized: %s", e)
    text_pos = getattr(model, "positional_embedding", None)
    if text_pos is None:
        text_pos = getattr(getattr(model, "text", None), "positional_embedding", None)
    if text_pos is not None:
        try:
            resize_text_pos_embed(sd, model)
        except Exception as e:
            log.warning("text positional embedding not resized: %s", e)

    own = model.state_dict()
    report = LoadReport(path=str(path))
    to_load = {}
    for k, v in sd.items():
        if k not in own:
            report.unexpected.append(k)
        elif tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append(k)
            report.mismatched_shapes[k] = (tuple(v.shape), tuple(own[k].shape))
        else:
            to_load[k] = v
            report.loaded.append(k)
    report.missing = [k for k in own if k not in sd]
    model.load_state_dict(to_load, strict=False)
    log.info("non-strict load %s", report.summary())
    return report


# ------------------------------------------------------------------------------------------ building


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _no_random_init_notice() -> Iterator[None]:
    """open_clip warns "No pretrained weights loaded ... initialized randomly" (on the root logger)
    when it builds a model without a tag, even when we load a checkpoint file into it right after;
    our callers say what was really loaded instead (the trainer's start lines, `load_model`)."""
    notice = _DropRandomInitNotice()
    logging.root.addFilter(notice)
    try:
        yield
    finally:
        logging.root.removeFilter(notice)


def _infer_embed_dim(model: nn.Module, cfg: dict | None) -> int:
    if cfg is not None and "embed_dim" in cfg:
        return int(cfg["embed_dim"])
    out = getattr(getattr(model, "visual", None), "output_dim", None)
    if isinstance(out, int):
        return out
    proj = getattr(model, "text_projection", None)
    if isinstance(proj, torch.Tensor):
        return int(proj.shape[-1])
    raise ValueError("cannot infer the embedding dim; give a model config")


def build_model(
    model_name: str | dict | os.PathLike,
    *,
    text_encoder: str | None = None,
    context_length: int | None = None,
    pretrained: str | None = None,
    loss: str = "clip",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    grad_checkpointing: bool = False,
    teacher_dims: dict[str, int] | None = None,
    model_cfg: dict | str | os.PathLike | None = None,
    ssl_mlp_dim: int = 4096,
    weights_only: bool = True,
    cache_dir: str | None = None,
) -> Built:
    """Build the CLIP model, its transforms and tokenizer, plus the loss's extra heads (see module doc).

    ``context_length`` (default: the config's, 77 for built-ins and HF towers) sets the tokenizer length
    and the text tower's positional table. ``loss`` is one of clip, siglip, slip, distill (siglip adds
    open_clip's ``init_logit_bias=-10`` and ``init_logit_scale=log(10)``); ``teacher_dims`` maps teacher
    names to feature dims and is required for distill.
    """
    import open_clip

    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r} not in {LOSSES}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {PRECISIONS}")
    if loss == "distill" and not teacher_dims:
        raise ValueError("loss='distill' needs teacher_dims, e.g. {'teacher': 768}")

    pretrained_file = pretrained if pretrained and os.path.isfile(pretrained) else None
    schema_source = None
    if pretrained and pretrained.startswith(SCHEMA_PREFIXES):
        schema_source = pretrained
    elif isinstance(model_name, str) and model_name.startswith(SCHEMA_PREFIXES):
        schema_source = model_name
    pretrained_tag = pretrained if pretrained and not pretrained_file and not schema_source else None

    model_kwargs: dict[str, Any] = {}
    if loss == "siglip":
        import math

        model_kwargs.update(init_logit_bias=-10.0, init_logit_scale=math.log(10))

    cfg: dict | None = None
    base_name = "custom"
    tag_pp: dict[str, Any] = {}  # a tag's own normalisation, when its weights load non-strictly
    if schema_source is not None:
        if text_encoder is not None or model_cfg is not None:
            raise UsageError(
                f"{schema_source}: text_encoder/model_cfg cannot be combined with an hf-hub:/local-dir: "
                "source; use a model name or config and pretrained=<checkpoint file>"
            )
        oc_name = schema_source
        oc_pretrained = None
    else:
        if model_cfg is not None:
            cfg = _check_cfg(_load_cfg(model_cfg))
            base_name = str(model_name) if isinstance(model_name, str) else "custom"
        elif isinstance(model_name, Mapping):
            cfg = _check_cfg(_load_cfg(model_name))
        elif str(model_name).endswith(".json") or os.path.isfile(str(model_name)):
            cfg = _check_cfg(_load_cfg(model_name))
            base_name = Path(model_name).stem
        else:
            base_name = str(model_name).replace("/", "-")
            builtin = open_clip.get_model_config(base_name)
            if builtin is None:
                raise UsageError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
            cfg = copy.deepcopy(builtin)
        custom = not (isinstance(model_name, str) and cfg == open_clip.get_model_config(base_name))
        if text_encoder is not None:
            cl = context_length or DEFAULT_CONTEXT_LENGTH
            cfg["text_cfg"] = hf_text_cfg(text_encoder, cl)
            custom = True
        if context_length is not None:
            cfg["text_cfg"]["context_length"] = int(context_length)
        oc_name = _register_cfg(base_name, cfg) if custom else base_name
        # tags only map onto their own architecture; for a changed one resolve the file and load non-strictly
        oc_pretrained = pretrained_tag if (pretrained_tag and not custom) else None
        if pretrained_tag and custom:
            tag_cfg = open_clip.get_pretrained_cfg(base_name, pretrained_tag)
            if not tag_cfg:
                raise UsageError(f"pretrained tag {pretrained_tag!r} unknown for {base_name!r}")
            pretrained_file = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
            tag_pp = {k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg}

    with _no_random_init_notice():
        model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            oc_name,
            pretrained=oc_pretrained,
            precision=precision,
            device=device,
            force_context_length=context_length if schema_source else None,
            image_mean=tag_pp.get("mean"),
            image_std=tag_pp.get("std"),
            cache_dir=cache_dir,
            **model_kwargs,
        )

    report = None
    if pretrained_file:
        report = load_checkpoint_nonstrict(model, pretrained_file, weights_only=weights_only)
        model.to(device)

    # a text_encoder's registered text_cfg names it as hf_tokenizer_name: open_clip builds an HFTokenizer
    tokenizer = open_clip.get_tokenizer(oc_name, context_length=context_length, cache_dir=cache_dir)
    ctx = int(getattr(tokenizer, "context_length", None) or context_length or DEFAULT_CONTEXT_LENGTH)

    if grad_checkpointing:
        model.set_grad_checkpointing(True)

    embed_dim = _infer_embed_dim(model, cfg)
    built = Built(
        model=model,
        preprocess_train=preprocess_train,
        preprocess_val=preprocess_val,
        tokenizer=tokenizer,
        embed_dim=embed_dim,
        context_length=ctx,
        model_cfg=cfg,
        load_report=report,
    )
    head_dtype = {"pure_fp16": torch.float16, "pure_bf16": torch.bfloat16}.get(precision, torch.float32)
    if loss == "slip":
        built.ssl_head = build_ssl_head(embed_dim, ssl_mlp_dim).to(device=device, dtype=head_dtype)
    if loss == "distill":
        built.teacher_proj = build_teacher_proj(teacher_dims or {}, embed_dim).to(
            device=device, dtype=head_dtype
        )
    return built


# ------------------------------------------------------------------------------------ optimizer groups


def _no_decay(name: str, p: torch.Tensor) -> bool:
    """open_clip_train's rule: gains, biases, norms, logit_scale/bias and other <2-dim params."""
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def param_groups(
    model: nn.Module,
    extra_modules: Mapping[str, nn.Module] | Iterable[nn.Module] | None = None,
    weight_decay: float = 0.2,
) -> list[dict[str, Any]]:
    """Two AdamW groups over ``model`` and ``extra_modules`` (e.g. ``Built.extra_modules()``):
    ``[{"params": no-decay, "weight_decay": 0.0, "name": "no_decay"},
    {"params": rest, "weight_decay": weight_decay, "name": "decay"}]``. Frozen params are left out;
    a parameter shared between modules is counted once."""
    named: list[tuple[str, nn.Parameter]] = list(model.named_parameters())
    if extra_modules is not None:
        items = (
            extra_modules.items()
            if isinstance(extra_modules, Mapping)
            else ((f"extra{i}", m) for i, m in enumerate(extra_modules))
        )
        for prefix, mod in items:
            if mod is None:
                continue
            named.extend((f"{prefix}.{n}", p) for n, p in mod.named_parameters())
    seen: set[int] = set()
    no_decay, decay = [], []
    for n, p in named:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if _no_decay(n, p) else decay).append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
    ]


__all__ = [
    "PRECISIONS",
    "Built",
    "LoadReport",
    "autocast_dtype",
    "build_model",
    "build_ssl_head",
    "build_teacher_proj",
    "hf_text_cfg",
    "load_checkpoint_nonstrict",
    "param_groups",
    "read_state_dict",
]
