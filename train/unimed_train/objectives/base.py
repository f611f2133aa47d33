"""What every objective shares: the model, its extra modules and its loss in one `nn.Module`, so
DDP wraps a single forward and synchronises every trained parameter."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class Objective(nn.Module):
    """One training objective. Subclasses set `make_loss` and may add extra modules (`extra_modules`,
    built with the model), model options (`model_kwargs`) and loader options (`loader_options`)."""

    model_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, config, model: nn.Module, extras: nn.ModuleDict, *, rank: int, world_size: int):
        super().__init__()
        self.model = model
        self.extras = extras
        self.loss = self.make_loss(config, rank, world_size)

    @classmethod
    def extra_modules(cls, embed_dim: int, **options) -> dict[str, nn.Module]:
        """The trainable modules beside the model (for the optimizer, DDP and checkpoints)."""
        return {}

    def loader_options(self, built, config) -> dict[str, Any]:
        """Extra `make_loader` arguments: the sample members this objective reads."""
        return {}

    def make_loss(self, config, rank: int, world_size: int) -> nn.Module:
        raise NotImplementedError

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image and text embeddings and the logit scale."""
        image = self.model.encode_image(batch["image"], normalize=True)
        text = self.model.encode_text(batch["text"], normalize=True)
        return image, text, self.model.logit_scale.exp()
