"""A loaded teacher: its model with its own preprocessing and tokenizer, encoding a chunk of samples
into L2-normalised float16 features, one failing sample never costing the others theirs."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unimed_train.cli import UsageError
from unimed_train.data.remote import reason
from unimed_train.eval.encode import ModelSpec, load_model
from unimed_train.model import Built
from unimed_train.precision import autocast
from unimed_train.teachers.config import TeacherSpec
from unimed_train.teachers.shards import Sample

Features = tuple[np.ndarray, np.ndarray]  # image [D], text [n_captions, D], float16


@dataclass
class Teacher:
    """A teacher model loaded once per process and used on every shard of its rank."""

    spec: TeacherSpec
    built: Built
    device: torch.device

    @property
    def precision(self) -> str:
        """bf16 autocast on GPUs, as the trainer runs; exact fp32 on CPUs."""
        return "amp_bf16" if self.device.type == "cuda" else "fp32"

    def describe(self) -> dict:
        """Its `teachers.json` entry: name, source, width and preprocessing."""
        visual = self.built.model.visual
        preprocess = dict(getattr(visual, "preprocess_cfg", None) or {})
        preprocess.setdefault("size", getattr(visual, "image_size", None))
        return {
            "name": self.spec.name,
            **self.spec.source(),
            "width": self.width,
            "preprocess": preprocess,
            "tokenizer": {
                "type": type(self.built.tokenizer).__name__,
                "context_length": self.built.context_length,
            },
        }

    @property
    def width(self) -> int:
        return int(self.built.embed_dim)

    def encode(self, samples: list[Sample], pool: Executor, batch_size: int) -> list[Features | str]:
        """Features of each sample, or why it failed: a batch that raises is retried sample by sample."""
        try:
            return self._encode(samples, pool, batch_size)
        except Exception as exc:  # the teacher's model, preprocessing or tokenizer on some sample
            if len(samples) == 1:
                return [reason(exc)]
            return [self.encode([sample], pool, batch_size)[0] for sample in samples]

    @torch.no_grad()
    def _encode(self, samples: list[Sample], pool: Executor, batch_size: int) -> list[Features | str]:
        model, device = self.built.model, self.device
        pixels = torch.stack(list(pool.map(self.built.preprocess_val, [s.image for s in samples])))
        with autocast(self.precision, device):
            images = model.encode_image(pixels.to(device))
        images = F.normalize(images.float(), dim=-1).cpu().numpy()
        texts = [t for s in samples for t in s.texts]
        rows = []
        for start in range(0, len(texts), batch_size):
            tokens = self.built.tokenizer(texts[start : start + batch_size]).to(device)
            with autocast(self.precision, device):
                out = model.encode_text(tokens)
            rows.append(F.normalize(out.float(), dim=-1).cpu().numpy())
        texts_out = np.concatenate(rows)
        bounds = np.cumsum([0] + [len(s.texts) for s in samples])
        return [_checked(images[i], texts_out[bounds[i] : bounds[i + 1]]) for i in range(len(samples))]


def _checked(image: np.ndarray, text: np.ndarray) -> Features | str:
    """float16 features, or a reason when the model gave NaN or infinity (a diverged checkpoint,
    an overflow under bf16): such rows would turn the student's loss into NaN."""
    if not (np.isfinite(image).all() and np.isfinite(text).all()):
        return "non-finite features"
    return image.astype(np.float16), text.astype(np.float16)


def load_teacher(spec: TeacherSpec, device: torch.device, source: str) -> Teacher:
    """The teacher in eval mode on `device`; a UsageError naming `source` (teachers.yaml) when
    its model cannot be loaded (unknown name, missing file or folder, not a CLIP model)."""
    try:
        built = load_model(ModelSpec(spec.name, model=spec.model, pretrained=spec.pretrained), str(device))
    except UsageError as exc:
        raise UsageError(f"{source}: teacher {spec.name}: {exc}") from None
    except Exception as exc:  # whatever open_clip or torch raise for a model that is not what was said
        raise UsageError(f"{source}: teacher {spec.name}: cannot load ({reason(exc)})") from None
    return Teacher(spec, built, device)
