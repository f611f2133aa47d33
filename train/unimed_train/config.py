"""Training options in one place: defaults here, a YAML file over them, `--key value` over both."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unimed_train.cli import Parser, UsageError
from unimed_train.objectives import OBJECTIVES, objective_class
from unimed_train.precision import PRECISIONS

LOSSES = tuple(OBJECTIVES)


def opt(default, help: str, choices: tuple[str, ...] | None = None):
    """A TrainConfig field with its `--help` line (and allowed values) kept beside its default."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    train_data: str = opt(
        "", "shard brace patterns joined with ::, each optionally PATTERN@WEIGHT (required)"
    )
    train_num_samples: int | None = opt(None, "samples per epoch (default: the sizes.json total)")
    resampled: bool = opt(False, "draw shards with replacement by source weight instead of epochs")
    model: str = opt("ViT-B-16", "open_clip model name (or a name for --model-cfg)")
    model_cfg: str | None = opt(None, "a JSON model config file (e.g. a tiny test model)")
    text_encoder: str | None = opt(None, "Hugging Face text tower: a hub name or a local folder")
    context_length: int | None = opt(None, "text tokens (77 for CLIP BPE, 256 for BiomedBERT)")
    pretrained: str | None = opt(None, "open_clip tag, hf-hub:/local-dir: source, or a checkpoint file")
    loss: str = opt("clip", "training objective", choices=LOSSES)
    ssl_scale: float = opt(1.0, "slip: weight of the SimCLR loss")
    w_fd: float = opt(1.0, "distill: feature distillation weight")
    w_cross: float = opt(1.0, "distill: cross-modal InfoNCE weight")
    teachers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "distill: comma list of teacher names in the shards (default: those of the "
            "teachers.json beside them)",
            "choices": None,
        },
    )
    teacher_dim: int = opt(
        512, "distill: feature width of teachers that no teachers.json beside the shards lists"
    )
    batch_size: int = opt(64, "samples per rank per step (before accumulation)")
    steps: int | None = opt(None, "optimizer steps (default: --epochs worth)")
    epochs: int = opt(1, "passes over the data when --steps is not given")
    lr: float = opt(5e-4, "peak learning rate")
    wd: float = opt(0.2, "AdamW weight decay (not on gains, biases, logit scale)")
    warmup: int = opt(100, "linear warmup steps before the cosine decay")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.98, "AdamW beta2")
    eps: float = opt(1e-6, "AdamW epsilon")
    grad_clip: float | None = opt(1.0, "gradient norm clip (0: off)")
    accum_steps: int = opt(1, "batches accumulated per optimizer step")
    precision: str = opt("fp32", "numeric precision", choices=PRECISIONS)
    grad_checkpointing: bool = opt(False, "recompute activations to save memory")
    lock_image: bool = opt(False, "freeze the image tower")
    workers: int = opt(2, "data loader processes per rank")
    seed: int = opt(0, "seed of weights, shuffles and caption choice")
    log_every: int = opt(10, "steps between progress lines and metrics.jsonl rows")
    save_every: int = opt(500, "steps between checkpoints (one is also saved at the end)")
    out: str = opt("runs/unimed", "run folder: checkpoints/, metrics.jsonl, tensorboard/")
    force: bool = opt(False, "write into a non-empty --out folder that is not a run (its files are kept)")
    resume: str | None = opt(None, "a checkpoint file, or latest for OUT/checkpoints/latest.pt")
    legacy_resume: bool = opt(
        False,
        "resume a checkpoint of an older trainer (loads it with weights_only=False: trusted files only)",
    )
    stop_after: int | None = opt(None, "stop (with a checkpoint) after this step, e.g. to split a job")

    @property
    def teacher_dims(self) -> dict[str, int]:
        """Feature width of each distillation teacher: from the `teachers.json` beside the shards
        (which `python -m unimed_train.teachers` writes), else `teacher_dim`."""
        widths = self.teacher_widths
        return {name: widths.get(name, self.teacher_dim) for name in self.teachers}

    @functools.cached_property
    def teacher_widths(self) -> dict[str, int]:
        """Teacher name -> width, from the `teachers.json` files beside the shards of `train_data`
        (read once: they may be remote)."""
        from unimed_train.data.spec import teacher_widths  # imports torch: not for --help

        return teacher_widths(self.train_data)

    def check(self) -> TrainConfig:
        """Raise UsageError for option values that cannot work together."""
        if not self.train_data:
            raise UsageError("--train-data is required")
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                raise UsageError(
                    f"--{_flag(f.name)} must be one of {', '.join(choices)}, not {getattr(self, f.name)!r}"
                )
        objective_class(self.loss).check_config(self)
        if self.accum_steps < 1 or self.batch_size < 1:
            raise UsageError("--batch-size and --accum-steps must be at least 1")
        check_model_files(self.model_cfg, self.text_encoder)
        return self


def check_model_files(model_cfg: str | None, text_encoder: str | None) -> None:
    """A missing `--model-cfg` file, or a `--text-encoder` that can only be a local folder (absolute,
    `./`, `../`, or more than one `/`: a hub name is `org/name`) and is none, as a UsageError before
    anything is built rather than a traceback from deep inside open_clip or transformers."""
    if model_cfg is not None and not os.path.isfile(model_cfg):
        raise UsageError(f"--model-cfg {model_cfg}: no such file")
    if text_encoder is None or os.path.isdir(text_encoder):
        return
    local = os.path.isabs(text_encoder) or text_encoder.startswith(("./", "../"))
    if local or text_encoder.count("/") > 1:
        raise UsageError(f"--text-encoder {text_encoder}: no such folder (a hub name is org/name)")


def parser() -> Parser:
    """Every TrainConfig field as a `--flag`; defaults are None so that only given flags override."""
    p = Parser(prog="python -m unimed_train.main", description="Contrastive training on unimed shards.")
    p.add_argument("--config", type=Path, help="YAML file of options (flags given win over it)")
    for f in dataclasses.fields(TrainConfig):
        kw = {"dest": f.name, "default": None, "help": _help(f), "type": _caster(f)}
        if f.type in ("bool", bool):
            kw.update(nargs="?", const=True, metavar="BOOL")
        elif f.name == "teachers":
            kw.update(metavar="NAMES")
        else:
            kw.update(choices=f.metadata["choices"])
        p.add_argument("--" + _flag(f.name), **kw)
    return p


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """`--config FILE` then `--key value` overrides (dashes or underscores), validated."""
    args = parser().parse_args(argv)
    values = _read_yaml(args.config) if args.config else {}
    config = TrainConfig(**values)
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            setattr(config, f.name, value)
    return config.check()


def _read_yaml(path: Path) -> dict:
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the config ({' '.join(str(exc).split())})") from exc
    if values is not None and not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of option: value")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = set(values or {}) - set(fields)
    if unknown:
        raise UsageError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}")
    return {name: _from_yaml(path, fields[name], value) for name, value in (values or {}).items()}


def _from_yaml(path: Path, f: dataclasses.Field, value):
    """A YAML value through its flag's caster, so `lr: abc` or `steps: [1]` is an error naming the
    file and option, not a TypeError deep in torch (and `lr: 5e-4`, a string to YAML, is a float)."""
    if f.name == "teachers" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if value is None and "None" in str(f.type):
        return None
    wrong = UsageError(f"{path}: {f.name}: expected {_KINDS[_caster(f)]}, not {value!r}")
    if value is None or isinstance(value, list | dict):
        raise wrong
    try:
        return _caster(f)(str(value))
    except (ValueError, argparse.ArgumentTypeError):
        raise wrong from None


def _help(f: dataclasses.Field) -> str:
    """The field's help with its default, unless the help already says it (or that it is required)."""
    text = f.metadata["help"]
    if "default:" in text or "required" in text:
        return text
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    shown = "none" if default in (None, []) else default
    return f"{text} (default: {shown})"


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _boolean(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _caster(f: dataclasses.Field):
    """What turns a flag's text (or a YAML scalar, as text) into the field's value."""
    if f.type in ("bool", bool):
        return _boolean
    if f.name == "teachers":
        return _names
    if "int" in str(f.type):
        return int
    if "float" in str(f.type):
        return float
    return str


_KINDS = {
    _boolean: "true or false",
    _names: "a list of names",
    int: "an integer",
    float: "a number",
    str: "a single value",
}
