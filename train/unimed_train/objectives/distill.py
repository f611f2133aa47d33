"""Distillation (MMKD-CLIP): CLIP plus feature distillation from per-sample teacher features.

Shards carry optional members `<teacher>.img.npy` (a `[D]` vector) and `<teacher>.txt.npy` (`[D]`,
the primary caption's embedding, or `[n_captions, D]`, one row per `json["captions"]` entry, the
chosen caption's row is used). Each sample gets one teacher among those it has both members of,
chosen by a hash of its key, so batches have one shape whatever the number of teachers:
`teacher_img`, `teacher_txt` `[B, D]` float32 with `D` the widest teacher's width (a narrower
teacher's features fill the first columns; zeros where a sample has no teacher),
`has_teacher` `BoolTensor[B]` and `teacher` `LongTensor[B]` (the index into the teacher list).
Each teacher is projected to the student width (`teacher_proj`) when the sizes differ.
`python -m unimed_train.teachers` writes such shards, and a `teachers.json` beside them with
each teacher's width (`TrainConfig.teacher_dims` reads it).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unimed_train.cli import UsageError
from unimed_train.losses import DistillLoss
from unimed_train.objectives.base import Objective


class Distill(Objective):
    def __init__(self, config, model: nn.Module, extras: nn.ModuleDict, *, rank: int, world_size: int):
        super().__init__(config, model, extras, rank=rank, world_size=world_size)
        self.teachers = list(config.teachers)
        self.widths = [int(config.teacher_dims[name]) for name in self.teachers]

    @classmethod
    def check_config(cls, config) -> None:
        """No `--teachers`: every teacher of the `teachers.json` beside the shards."""
        if not config.teachers:
            config.teachers = list(config.teacher_widths)
        if not config.teachers:
            raise UsageError(
                "--loss distill needs --teachers NAME[,NAME...] (or shards with a teachers.json "
                "beside them, as python -m unimed_train.teachers writes)"
            )

    @classmethod
    def extra_modules(cls, config, embed_dim: int) -> dict[str, nn.Module]:
        """`teacher_proj`, from `config.teacher_dims` (teacher name -> feature width)."""
        teacher_dims = getattr(config, "teacher_dims", None)
        if not teacher_dims:
            raise ValueError("loss='distill' needs teacher_dims, e.g. {'teacher': 768}")
        return {"teacher_proj": build_teacher_proj(teacher_dims, embed_dim)}

    def loader_members(self, built, config) -> list:
        """Every teacher's width is in the config: no shards to probe for one."""
        return [TeacherFeatures(tuple(config.teachers), config.teacher_dims, ())]

    def make_loss(self, config, rank: int, world_size: int) -> DistillLoss:
        return DistillLoss(w_fd=config.w_fd, w_cross=config.w_cross, rank=rank, world_size=world_size)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        image, text, scale = self.embed(batch)
        projections = [self.extras["teacher_proj"][_module_key(name)] for name in self.teachers]
        rows = torch.arange(len(batch["key"]), device=batch["teacher"].device)

        def projected(features: torch.Tensor) -> torch.Tensor:
            """Each sample's features through its own teacher's projection (each teacher's
            features are the first `width` columns)."""
            every = [p(features[:, :w].float()) for p, w in zip(projections, self.widths, strict=True)]
            return torch.stack(every)[batch["teacher"], rows]

        teacher_image, teacher_text = projected(batch["teacher_img"]), projected(batch["teacher_txt"])
        return self.loss(image, text, scale, teacher_image, teacher_text, batch["has_teacher"])


def build_teacher_proj(teacher_dims: Mapping[str, int], embed_dim: int) -> nn.ModuleDict:
    """One projection per teacher into the student space: a bias-free Linear when the widths
    differ, Identity when equal. ('.' cannot be in a ModuleDict key and becomes '_'.)"""
    mods = nn.ModuleDict()
    for name, dim in teacher_dims.items():
        mods[_module_key(name)] = (
            nn.Identity() if int(dim) == embed_dim else nn.Linear(int(dim), embed_dim, bias=False)
        )
    return mods


def _module_key(name: str) -> str:
    return str(name).replace(".", "_")


def teacher_name_problem(name: str) -> str | None:
    """Why `name` cannot name a teacher: its members are `<key>.<name>.img.npy`, and WebDataset
    splits a member's name at the first dot (None when it can)."""
    if not name or "." in name or "/" in name or name != name.lower() or name != name.strip():
        return "a teacher name is lower case, without dots, slashes or surrounding spaces"
    return None


class TeacherFeatures:
    """The loader's teacher members: decoded per sample, then one teacher per sample in a batch."""

    def __init__(self, teachers: Sequence[str], dims: Mapping[str, int] | None, urls: Sequence[str]):
        for t in teachers:
            if problem := teacher_name_problem(t):
                raise UsageError(f"teacher key {t!r}: {problem}")
        self.teachers = tuple(teachers)
        self.dims = {(t, i): int(dims[t]) for t in self.teachers if t in (dims or {}) for i in (0, 1)}
        missing = [t for t in self.teachers if (t, 0) not in self.dims]
        if missing:
            self.dims.update(probe_teacher_dims(urls, missing))

    def decode(self, sample: dict, image, caption: int | None, n_captions: int) -> dict:
        """`teacher:<name>`: the (image, text) feature vectors of a raw sample, None where absent."""
        out = {}
        for t in self.teachers:
            img, txt = sample.get(f"{t}.img.npy"), sample.get(f"{t}.txt.npy")
            img = decode_npy(img).reshape(-1) if img is not None else None
            if txt is not None:
                txt = decode_npy(txt)
                if txt.ndim == 2:
                    txt = txt[caption if caption is not None and txt.shape[0] == n_captions else 0]
                txt = txt.reshape(-1)
            out[f"teacher:{t}"] = (img, txt)
        return out

    def collate(self, samples: list[dict]) -> dict:
        images, texts, has = [], [], []
        for t in self.teachers:
            pairs = [s[f"teacher:{t}"] for s in samples]
            images.append(self._features(t, 0, pairs))
            texts.append(self._features(t, 1, pairs))
            has.append([a is not None and b is not None for a, b in pairs])
        for t, i, x in zip(self.teachers, images, texts, strict=True):
            if i.shape[1] != x.shape[1]:
                raise ValueError(f"teacher {t!r}: image and text features differ in size")
        width = max(i.shape[1] for i in images)
        images, texts = ([F.pad(f, (0, width - f.shape[1])) for f in fs] for fs in (images, texts))
        choice, mask = [], []
        for i, s in enumerate(samples):
            available = [t for t, flags in enumerate(has) if flags[i]]
            choice.append(available[_pick(s["key"], len(available))] if available else 0)
            mask.append(bool(available))
        teacher, rows = torch.tensor(choice), torch.arange(len(samples))
        return {
            "teacher_img": torch.stack(images)[teacher, rows],
            "teacher_txt": torch.stack(texts)[teacher, rows],
            "has_teacher": torch.tensor(mask, dtype=torch.bool),
            "teacher": teacher,
        }

    def _features(self, t: str, which: int, pairs: list) -> torch.Tensor:
        vals = [p[which] for p in pairs]
        dim = self.dims.get((t, which))
        if dim is None:  # no width given: the first features seen set it
            dim = next((v.shape[0] for v in vals if v is not None), None)
            if dim is not None:
                self.dims[(t, which)] = dim
        out = torch.zeros(len(vals), dim or 0, dtype=torch.float32)
        for i, v in enumerate(vals):
            if v is not None:
                if v.shape[0] != dim:
                    raise ValueError(
                        f"teacher {t!r}: features of width {v.shape[0]}, expected {dim} "
                        "(--teacher-dim, or the teachers.json beside the shards)"
                    )
                out[i] = torch.from_numpy(v)
        return out


def _pick(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % max(1, n)


def decode_npy(data: bytes) -> np.ndarray:
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float32)


def probe_teacher_dims(urls: Sequence[str], teachers: Sequence[str], max_shards: int = 4) -> dict:
    """Feature sizes of each teacher from the first local shards that hold them."""
    want = {f"{t}.{w}.npy": (t, i) for t in teachers for i, w in enumerate(("img", "txt"))}
    dims: dict = {}
    for url in list(urls)[:max_shards]:
        if not os.path.isfile(url):
            continue
        with tarfile.open(url, "r|*") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                suffix = base.split(".", 1)[1] if "." in base else ""
                if suffix in want and want[suffix] not in dims and member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        dims[want[suffix]] = int(decode_npy(f.read()).shape[-1])
                if len(dims) == len(want):
                    return dims
    return dims
