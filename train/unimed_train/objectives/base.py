"""What every objective shares: the model, its extra modules and its loss in one `nn.Module`, so
DDP wraps a single forward and synchronises every trained parameter."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class Objective(nn.Module):
    """One training objective. Subclasses set `make_loss` and may add a config check (`check_config`),
    extra modules (`extra_modules`, built with the model), model options (`model_kwargs`) and sample
    members (`loader_members`)."""

    model_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, config, model: nn.Module, extras: nn.ModuleDict, *, rank: int, world_size: int):
        super().__init__()
        self.model = model
        self.extras = extras
        self.loss = self.make_loss(config, rank, world_size)

    @classmethod
    def check_config(cls, config) -> None:
        """Raise UsageError for training options this objective cannot work with."""

    @classmethod
    def extra_modules(cls, config, embed_dim: int) -> dict[str, nn.Module]:
        """The trainable modules beside the model (for the optimizer, DDP and checkpoints), from the
        options in `config` (None: the objective's defaults)."""
        return {}

    def loader_members(self, built, config) -> list:
        """The `make_loader` members (`decode`, `collate`) giving the batch entries this objective reads."""
        return []

    def make_loss(self, config, rank: int, world_size: int) -> nn.Module:
        raise NotImplementedError

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image and text embeddings and the logit scale."""
        image = self.model.encode_image(batch["image"], normalize=True)
        text = self.model.encode_text(batch["text"], normalize=True)
        return image, text, self.model.logit_scale.exp()
