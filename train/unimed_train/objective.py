"""What one training step computes: features from the model, then the chosen loss.

One `nn.Module` holds the model, the SLIP head or teacher projections and the loss, so DDP wraps
a single forward and synchronises every trained parameter.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from unimed_train.config import TrainConfig
from unimed_train.losses import ClipLoss, DistillLoss, SigLipLoss, SlipLoss


class Objective(nn.Module):
    def __init__(
        self, config: TrainConfig, model: nn.Module, extras: nn.ModuleDict, *, rank: int, world_size: int
    ):
        super().__init__()
        self.kind = config.loss
        self.model = model
        self.extras = extras
        self.teachers = list(config.teachers)
        if self.kind == "clip":
            self.loss = ClipLoss(rank, world_size)
        elif self.kind == "siglip":
            self.loss = SigLipLoss(rank, world_size)
        elif self.kind == "slip":
            self.loss = SlipLoss(config.ssl_scale, rank=rank, world_size=world_size)
        else:
            self.loss = DistillLoss(
                w_fd=config.w_fd, w_cross=config.w_cross, rank=rank, world_size=world_size
            )

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        image = self.model.encode_image(batch["image"], normalize=True)
        text = self.model.encode_text(batch["text"], normalize=True)
        scale = self.model.logit_scale.exp()
        if self.kind == "clip":
            return self.loss(image, text, scale)
        if self.kind == "siglip":
            return self.loss(image, text, scale, self.model.logit_bias)
        if self.kind == "slip":
            head = self.extras["ssl_head"]
            aug1 = head(self.model.encode_image(batch["view1"]))
            aug2 = head(self.model.encode_image(batch["view2"]))
            return self.loss(image, text, scale, aug1, aug2)
        teacher_image, teacher_text, has = self._teacher_features(batch)
        return self.loss(image, text, scale, teacher_image, teacher_text, has)

    def _teacher_features(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One teacher per sample among those it has (chosen by a hash of its key), projected to
        the student width."""
        projections = self.extras["teacher_proj"]
        images_all, texts_all, has_all = [], [], []
        for name in self.teachers:
            images, texts, has = (
                batch[k] if isinstance(batch[k], torch.Tensor) else batch[k][name]
                for k in ("teacher_img", "teacher_txt", "has_teacher")
            )
            projection = projections[name.replace(".", "_")]
            images_all.append(projection(images.float()))
            texts_all.append(projection(texts.float()))
            has_all.append(has.bool().tolist())  # one host copy per teacher
        choice, mask = [], []
        for i, key in enumerate(batch["key"]):
            available = [t for t, has in enumerate(has_all) if has[i]]
            choice.append(available[_pick(key, len(available))] if available else 0)
            mask.append(bool(available))
        device = images_all[0].device
        teacher = torch.tensor(choice, device=device)
        rows = torch.arange(len(choice), device=device)
        image = torch.stack(images_all)[teacher, rows]
        text = torch.stack(texts_all)[teacher, rows]
        return image, text, torch.tensor(mask, device=device)


def _pick(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % max(1, n)


def slip_views(image_size: int, mean, std):
    """SLIP's two augmented views of an RGB PIL image (SimCLR augmentations; `data._ToSample` passes
    the converted image)."""
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
