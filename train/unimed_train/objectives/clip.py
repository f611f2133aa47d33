"""CLIP: the symmetric InfoNCE over image-text pairs of the global batch."""

from __future__ import annotations

import torch

from unimed_train.losses import ClipLoss
from unimed_train.objectives.base import Objective


class Clip(Objective):
    def make_loss(self, config, rank: int, world_size: int) -> ClipLoss:
        return ClipLoss(rank, world_size)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.loss(*self.embed(batch))
