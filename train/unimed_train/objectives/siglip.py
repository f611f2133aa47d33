"""SigLIP: a sigmoid loss per image-text pair, with a learned bias (open_clip's initial
logit bias -10 and scale log 10)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from unimed_train.losses import SigLipLoss
from unimed_train.objectives.base import Objective


class SigLip(Objective):
    model_kwargs: ClassVar[dict] = {"init_logit_bias": -10.0, "init_logit_scale": math.log(10)}

    def make_loss(self, config, rank: int, world_size: int) -> SigLipLoss:
        return SigLipLoss(rank, world_size)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.loss(*self.embed(batch), self.model.logit_bias)
