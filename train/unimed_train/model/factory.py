"""Model construction for the trainer: open_clip towers, an optional Hugging Face text tower, and the
objective's extra modules.

`build_model` wraps `open_clip.create_model_and_transforms` and adds what UniMed-CLIP-style training needs:

* ``model_name`` is any open_clip config name (``open_clip.list_models()``), a path to a JSON model config,
  a model-config dict (or pass ``model_cfg=`` to override the architecture outright), or an
  ``hf-hub:org/repo`` / ``local-dir:/path`` open_clip source (config and weights from there).
* ``text_encoder`` (a Hugging Face name or a LOCAL folder, e.g. BiomedBERT or MiniLM) replaces the text
  tower with open_clip's ``HFTextEncoder`` (``text_cfg.hf_model_name``); the tokenizer is then an
  ``open_clip.tokenizer.HFTokenizer`` on the same name/path. Nothing is fetched for a local folder.
* ``pretrained`` is an open_clip tag (e.g. ``openai``), an ``hf-hub:``/``local-dir:`` source, or a
  checkpoint FILE, loaded non-strictly (`model.pretrained`); so are tags when the architecture was
  changed (e.g. a new text tower).
* ``loss`` names the objective (`unimed_train.objectives`): its model options (SigLIP's logit bias) and
  extra modules (SLIP's ``ssl_head``, distillation's ``teacher_proj``, built from ``config``) come from
  there.

Precision: see `unimed_train.precision`; open_clip's low-precision weight modes are passed through.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unimed_train.cli import UsageError
from unimed_train.model.pretrained import LoadReport, load_checkpoint_nonstrict
from unimed_train.objectives import objective_class
from unimed_train.precision import MODEL_PRECISIONS

SCHEMA_PREFIXES = ("hf-hub:", "local-dir:")
DEFAULT_CONTEXT_LENGTH = 77
EXTRA_MODULES = ("ssl_head", "teacher_proj")


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
        return {name: getattr(self, name) for name in EXTRA_MODULES if getattr(self, name) is not None}


@dataclass
class _Source:
    """Where `create_model_and_transforms` takes the model from, and what is loaded after it."""

    name: str
    tag: str | None = None
    file: str | None = None
    cfg: dict | None = None
    schema: bool = False
    tag_pp: dict | None = None  # a tag's own normalisation, when its weights load non-strictly


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


def _schema_cfg(source: _Source, cache_dir: str | None) -> dict | None:
    """The architecture in an hf-hub:/local-dir: source's open_clip_config.json (open_clip has just
    read it, so a hub file comes from its cache); None for other sources."""
    if not source.schema:
        return None
    if source.name.startswith("local-dir:"):
        path = Path(source.name.removeprefix("local-dir:")) / "open_clip_config.json"
    else:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(
            source.name.removeprefix("hf-hub:"), "open_clip_config.json", cache_dir=cache_dir
        )
    return _load_cfg(path)


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
    config=None,
    model_cfg: dict | str | os.PathLike | None = None,
    weights_only: bool = True,
    cache_dir: str | None = None,
) -> Built:
    """Build the CLIP model, its transforms and tokenizer, plus the loss's extra modules (see module doc).

    ``context_length`` (default: the config's, 77 for built-ins and HF towers) sets the tokenizer length
    and the text tower's positional table. ``config`` holds the options the objective builds its extra
    modules from (the TrainConfig when training; see `Objective.extra_modules`).
    """
    import open_clip

    objective = objective_class(loss)
    if precision not in MODEL_PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {MODEL_PRECISIONS}")
    source = _source(model_name, pretrained, text_encoder, model_cfg, context_length, cache_dir)
    tag_pp = source.tag_pp or {}
    with _no_random_init_notice():
        model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            source.name,
            pretrained=source.tag,
            precision=precision,
            device=device,
            force_context_length=context_length if source.schema else None,
            image_mean=tag_pp.get("mean"),
            image_std=tag_pp.get("std"),
            cache_dir=cache_dir,
            **objective.model_kwargs,
        )
    report = None
    if source.file:
        report = load_checkpoint_nonstrict(model, source.file, weights_only=weights_only)
        model.to(device)
    # a text_encoder's registered text_cfg names it as hf_tokenizer_name: open_clip builds an HFTokenizer
    tokenizer = open_clip.get_tokenizer(source.name, context_length=context_length, cache_dir=cache_dir)
    ctx = int(getattr(tokenizer, "context_length", None) or context_length or DEFAULT_CONTEXT_LENGTH)
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    embed_dim = _infer_embed_dim(model, source.cfg or _schema_cfg(source, cache_dir))
    built = Built(
        model, preprocess_train, preprocess_val, tokenizer, embed_dim, ctx, source.cfg, load_report=report
    )
    head_dtype = {"pure_fp16": torch.float16, "pure_bf16": torch.bfloat16}.get(precision, torch.float32)
    extras = objective.extra_modules(config, embed_dim)
    for name, module in extras.items():
        setattr(built, name, module.to(device=device, dtype=head_dtype))
    return built


def _source(model_name, pretrained, text_encoder, model_cfg, context_length, cache_dir) -> _Source:
    """Resolve the model and weights: an hf-hub:/local-dir: source, or a config (registered with
    open_clip when changed) with a tag, a file, or a tag's file loaded non-strictly."""
    import open_clip

    pretrained_file = pretrained if pretrained and os.path.isfile(pretrained) else None
    schema = next(
        (s for s in (pretrained, model_name) if isinstance(s, str) and s.startswith(SCHEMA_PREFIXES)), None
    )
    if schema is not None:
        if text_encoder is not None or model_cfg is not None:
            raise UsageError(
                f"{schema}: text_encoder/model_cfg cannot be combined with an hf-hub:/local-dir: "
                "source; use a model name or config and pretrained=<checkpoint file>"
            )
        return _Source(schema, file=pretrained_file, schema=True)
    tag = pretrained if pretrained and not pretrained_file else None
    base_name, cfg = _architecture(model_name, model_cfg)
    custom = not (isinstance(model_name, str) and cfg == open_clip.get_model_config(base_name))
    if text_encoder is not None:
        cfg["text_cfg"] = hf_text_cfg(text_encoder, context_length or DEFAULT_CONTEXT_LENGTH)
        custom = True
    if context_length is not None:
        cfg["text_cfg"]["context_length"] = int(context_length)
    name = _register_cfg(base_name, cfg) if custom else base_name
    if not (tag and custom):
        return _Source(name, tag=tag, file=pretrained_file, cfg=cfg)
    # tags only map onto their own architecture; for a changed one resolve the file and load non-strictly
    tag_cfg = open_clip.get_pretrained_cfg(base_name, tag)
    if not tag_cfg:
        raise UsageError(f"pretrained tag {tag!r} unknown for {base_name!r}")
    file = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    return _Source(name, file=file, cfg=cfg, tag_pp={k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg})


def _architecture(model_name, model_cfg) -> tuple[str, dict]:
    """The base name and a copy of the model config: `model_cfg`, a dict, a JSON file or a built-in."""
    import open_clip

    if model_cfg is not None:
        return (str(model_name) if isinstance(model_name, str) else "custom"), _check_cfg(
            _load_cfg(model_cfg)
        )
    if isinstance(model_name, Mapping):
        return "custom", _check_cfg(_load_cfg(model_name))
    if str(model_name).endswith(".json") or os.path.isfile(str(model_name)):
        return Path(model_name).stem, _check_cfg(_load_cfg(model_name))
    base_name = str(model_name).replace("/", "-")
    builtin = open_clip.get_model_config(base_name)
    if builtin is None:
        raise UsageError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    return base_name, copy.deepcopy(builtin)
