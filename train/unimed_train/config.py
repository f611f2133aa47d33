"""Training options in one place: defaults here, a YAML file over them, `--key value` over both."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LOSSES = ("clip", "siglip", "slip", "distill")
PRECISIONS = ("fp32", "amp", "amp_bf16")


@dataclass
class TrainConfig:
    train_data: str = ""  # brace patterns; sources joined with `::`, each optionally `pattern@weight`
    train_num_samples: int | None = None  # default: from sizes.json
    resampled: bool = False
    model: str = "ViT-B-16"
    model_cfg: str | None = None  # a JSON model config file (e.g. a tiny test model)
    text_encoder: str | None = None  # Hugging Face name or local path (BiomedBERT, MiniLM, ...)
    context_length: int | None = None  # 77 for CLIP BPE, 256 for BiomedBERT
    pretrained: str | None = None  # open_clip tag, hf-hub:/local-dir:, or a checkpoint file
    loss: str = "clip"
    ssl_scale: float = 1.0  # slip
    w_fd: float = 1.0  # distill: feature distillation weight
    w_cross: float = 1.0  # distill: cross-modal InfoNCE weight
    teachers: list[str] = field(default_factory=list)  # distill: teacher names in the shards
    teacher_dim: int = 512
    batch_size: int = 64
    steps: int | None = None
    epochs: int = 1
    lr: float = 5e-4
    wd: float = 0.2
    warmup: int = 100
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float | None = 1.0
    accum_steps: int = 1
    precision: str = "fp32"
    grad_checkpointing: bool = False
    lock_image: bool = False
    workers: int = 2
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    out: str = "runs/unimed"
    resume: str | None = None  # a checkpoint file, or "latest" for OUT/checkpoints/latest.pt
    stop_after: int | None = None  # stop (with a checkpoint) after this step, e.g. to split a job

    @property
    def teacher_dims(self) -> dict[str, int]:
        """Feature width of each distillation teacher (all `teacher_dim` wide)."""
        return {name: self.teacher_dim for name in self.teachers}

    def check(self) -> TrainConfig:
        if not self.train_data:
            raise SystemExit("--train-data is required")
        if self.loss not in LOSSES:
            raise SystemExit(f"--loss must be one of {LOSSES}, not {self.loss!r}")
        if self.precision not in PRECISIONS:
            raise SystemExit(f"--precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.loss == "distill" and not self.teachers:
            raise SystemExit("--loss distill needs --teachers NAME[,NAME...]")
        if self.accum_steps < 1 or self.batch_size < 1:
            raise SystemExit("--batch-size and --accum-steps must be at least 1")
        return self


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """`--config FILE` then `--key value` overrides (dashes or underscores), validated."""
    parser = argparse.ArgumentParser(
        prog="unimed_train.main", description="Contrastive training on unimed shards"
    )
    parser.add_argument("--config", type=Path)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, type=_boolean, nargs="?", const=True, default=None)
        elif f.name == "teachers":
            parser.add_argument(
                flag, dest=f.name, type=lambda v: [t for t in v.split(",") if t], default=None
            )
        else:
            parser.add_argument(flag, dest=f.name, type=_caster(f.type), default=None)
    args = parser.parse_args(argv)
    values = yaml.safe_load(args.config.read_text()) if args.config else {}
    unknown = set(values or {}) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise SystemExit(f"{args.config}: unknown option(s) {sorted(unknown)}")
    config = TrainConfig(**(values or {}))
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            setattr(config, f.name, value)
    return config.check()


def _boolean(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _caster(annotation):
    text = str(annotation)
    if "int" in text:
        return int
    if "float" in text:
        return float
    return str
