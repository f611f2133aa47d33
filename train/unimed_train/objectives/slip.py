"""SLIP: CLIP plus SimCLR between two augmented views of each image, through an MLP head."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from unimed_train.losses import SlipLoss
from unimed_train.objectives.base import Objective


class Slip(Objective):
    def __init__(self, config, model: nn.Module, extras: nn.ModuleDict, *, rank: int, world_size: int):
        if world_size > 1:  # SLIP's head normalises over the global batch
            extras["ssl_head"] = nn.SyncBatchNorm.convert_sync_batchnorm(extras["ssl_head"])
        super().__init__(config, model, extras, rank=rank, world_size=world_size)

    @classmethod
    def extra_modules(cls, config, embed_dim: int) -> dict[str, nn.Module]:
        """`ssl_head`, `config.ssl_mlp_dim` wide where the config has one (TrainConfig has not: 4096)."""
        return {"ssl_head": build_ssl_head(embed_dim, getattr(config, "ssl_mlp_dim", 4096))}

    def loader_members(self, built, config) -> list:
        """The two augmented views, at the model's image size and normalisation."""
        import open_clip

        cfg = open_clip.get_model_preprocess_cfg(built.model)
        size = cfg["size"][0] if isinstance(cfg["size"], tuple | list) else cfg["size"]
        return [SlipViews(slip_views(size, cfg["mean"], cfg["std"]))]

    def make_loss(self, config, rank: int, world_size: int) -> SlipLoss:
        return SlipLoss(config.ssl_scale, rank=rank, world_size=world_size)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        image, text, scale = self.embed(batch)
        head = self.extras["ssl_head"]
        aug1 = head(self.model.encode_image(batch["view1"]))
        aug2 = head(self.model.encode_image(batch["view2"]))
        return self.loss(image, text, scale, aug1, aug2)


def build_ssl_head(in_dim: int, mlp_dim: int = 4096, out_dim: int = 256) -> nn.Sequential:
    """SLIP's image MLP: Linear-BN-ReLU-Linear-BN-ReLU-Linear, on the unnormalised image embedding."""
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


class SlipViews:
    """The loader's `view1`, `view2` members: `views(pil_image) -> (Tensor, Tensor)` per sample."""

    def __init__(self, views):
        self.views = views

    def decode(self, sample: dict, image, caption: int | None, n_captions: int) -> dict:
        view1, view2 = self.views(image)
        return {"view1": view1, "view2": view2}

    def collate(self, samples: list[dict]) -> dict:
        return {k: torch.stack([s[k] for s in samples]) for k in ("view1", "view2")}


def slip_views(image_size: int, mean, std):
    """SLIP's two SimCLR-augmented views of an RGB PIL image."""
    from torchvision import transforms as T

    augment = T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(0.08, 1.0)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(kernel_size=max(3, image_size // 10 * 2 + 1))], p=0.5),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean=mean, std=std),
        ]
    )

    def views(image):
        return augment(image), augment(image)

    return views
