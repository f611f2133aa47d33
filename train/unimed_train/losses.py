"""Contrastive, self-supervised and distillation losses for CLIP-style pretraining.

Every loss is a plain ``nn.Module`` whose ``forward`` returns ``dict[str, Tensor]`` with the total
under ``"loss"`` and its named parts (for logging). They run in one process or under
``torch.distributed`` (gloo or nccl) with the *local loss* scheme: each rank computes the loss of its
own rows (local samples) against the columns of the whole global batch (features gathered from all
ranks), with labels ``rank * local_batch + arange(local_batch)``.

Distributed conventions (all ranks must have the same local batch size):

* **Value**: the mean over ranks of the per-rank ``"loss"`` equals the one-process loss on the
  concatenated global batch (rank 0's samples first).
* **Gradients** (with ``gather_with_grad=True``, the default of the losses): the gradient each rank
  gets for its *local input features* equals ``world_size`` times the one-process gradient for those
  samples, i.e. ``grad_rank / world_size == grad_one_process[slice]``. This is the same convention as
  DDP, which averages parameter gradients over ranks; so after DDP's averaging the parameter gradients
  equal those of one process on the global batch. Gradients for shared scalars (``logit_scale``,
  ``logit_bias``) averaged over ranks (what DDP does) equal the one-process gradient.
* With ``gather_with_grad=False`` (the scheme of :func:`gather_features` by default: all_gather, then
  this rank's slice replaced by the local tensor), the values are the same but each rank's input
  gradients lack the terms where its samples appear as *columns* of other ranks' losses; cheaper,
  but only an approximation of the one-process gradient.

Features given to :class:`ClipLoss` / :class:`SigLipLoss` / the ``clip`` part of the other losses
are used as given (open_clip models return L2-normalised features); :class:`SimClrLoss` and the
``fd``/``cross`` terms of :class:`DistillLoss` normalise their inputs themselves.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClipLoss",
    "DistillLoss",
    "SigLipLoss",
    "SimClrLoss",
    "SlipLoss",
    "all_gather",
    "gather_features",
]


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Fill in ``rank``/``world_size`` from the default process group when left as ``None``."""
    initialized = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if world_size is None:
        world_size = dist.get_world_size() if initialized else 1
    return rank, world_size


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradients of all ranks for the local slice.

    Backward uses all_reduce (supported by gloo and nccl) rather than reduce_scatter (not on gloo).
    """

    @staticmethod
    def forward(ctx, x: Tensor, rank: int, world_size: int) -> Tensor:
        ctx.rank, ctx.n = rank, x.shape[0]
        x = x.contiguous()
        out = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(out, x)
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n], None, None


def all_gather(x: Tensor, *, rank: int, world_size: int, with_grad: bool = False) -> Tensor:
    """Concatenate ``x`` (same shape on every rank) from all ranks along dim 0, rank order.

    ``with_grad=False``: gathered without autograd, then this rank's slice is replaced by ``x`` itself,
    so the gradient flows to the local shard only. ``with_grad=True``: fully differentiable; the
    backward sums over ranks the gradients flowing to each rank's slice.
    ``world_size == 1`` returns ``x`` unchanged.
    """
    if world_size == 1:
        return x
    if with_grad:
        return _AllGatherWithGrad.apply(x, rank, world_size)
    with torch.no_grad():
        x_ = x.detach().contiguous()
        parts = [torch.empty_like(x_) for _ in range(world_size)]
        dist.all_gather(parts, x_)
    parts[rank] = x
    return torch.cat(parts, dim=0)


def gather_features(
    image: Tensor, text: Tensor, *, rank: int, world_size: int, gather_with_grad: bool = False
) -> tuple[Tensor, Tensor]:
    """Gather image and text features from all ranks -> ``(all_image, all_text)``.

    Default (``gather_with_grad=False``): all_gather, then this rank's slice replaced by the local
    tensors so their gradient flows (gradient to the local shard only). See :func:`all_gather`.
    """
    return (
        all_gather(image, rank=rank, world_size=world_size, with_grad=gather_with_grad),
        all_gather(text, rank=rank, world_size=world_size, with_grad=gather_with_grad),
    )


def _local_labels(n: int, rank: int, device: torch.device) -> Tensor:
    return torch.arange(n, device=device) + rank * n


class ClipLoss(nn.Module):
    """InfoNCE (CLIP) loss with a learnable temperature, local loss against gathered features.

    ``forward(image_features, text_features, logit_scale)`` with ``logit_scale`` the *exponentiated*
    scale (``model.logit_scale.exp()``). Returns ``{"loss", "i2t", "t2i"}``; ``loss = (i2t + t2i) / 2``.
    ``rank``/``world_size`` default to the default process group (or 0/1 without one).
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None, gather_with_grad: bool = True):
        super().__init__()
        self.rank, self.world_size = _dist_info(rank, world_size)
        self.gather_with_grad = gather_with_grad

    def forward(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor
    ) -> dict[str, Tensor]:
        all_image, all_text = gather_features(
            image_features,
            text_features,
            rank=self.rank,
            world_size=self.world_size,
            gather_with_grad=self.gather_with_grad,
        )
        labels = _local_labels(image_features.shape[0], self.rank, image_features.device)
        i2t = F.cross_entropy(logit_scale * image_features @ all_text.T, labels)
        t2i = F.cross_entropy(logit_scale * text_features @ all_image.T, labels)
        return {"loss": (i2t + t2i) / 2, "i2t": i2t, "t2i": t2i}


class SigLipLoss(nn.Module):
    """Sigmoid loss (SigLIP), wrapping ``open_clip.loss.SigLipLoss``.

    ``forward(image_features, text_features, logit_scale, logit_bias)`` -> ``{"loss", "siglip"}``.
    As in open_clip, each rank's loss is summed over all global negatives and divided by the local
    batch size (with open_clip's default distributed exchange, ``"bidir"``).
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None):
        super().__init__()
        # imported here: importing open_clip costs seconds (torchvision), and the other losses need none of it
        from open_clip.loss import SigLipLoss as _OpenClipSigLipLoss

        self.rank, self.world_size = _dist_info(rank, world_size)
        self.inner = _OpenClipSigLipLoss(rank=self.rank, world_size=self.world_size)

    def forward(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor
    ) -> dict[str, Tensor]:
        loss = self.inner(image_features, text_features, logit_scale, logit_bias)
        return {"loss": loss, "siglip": loss}


class SimClrLoss(nn.Module):
    """NT-Xent (SimCLR) loss on two augmented views, as in SLIP's ``SIMCLRLoss``.

    ``forward(aug1_embed, aug2_embed)`` (after the SLIP MLP head; L2-normalised here), gathered across
    ranks; for each local sample the positive is its other view, negatives are every other view of
    every global sample (self-similarity masked out). Returns ``{"loss", "simclr", "acc"}`` (``acc`` =
    fraction of local view-a samples whose top logit is the positive; no gradient).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        rank: int | None = None,
        world_size: int | None = None,
        gather_with_grad: bool = True,
    ):
        super().__init__()
        self.temperature = temperature
        self.rank, self.world_size = _dist_info(rank, world_size)
        self.gather_with_grad = gather_with_grad

    def forward(self, aug1_embed: Tensor, aug2_embed: Tensor) -> dict[str, Tensor]:
        q_a = F.normalize(aug1_embed, dim=-1)
        q_b = F.normalize(aug2_embed, dim=-1)
        k_a, k_b = gather_features(
            q_a, q_b, rank=self.rank, world_size=self.world_size, gather_with_grad=self.gather_with_grad
        )
        n = q_a.shape[0]
        labels = _local_labels(n, self.rank, q_a.device)
        self_mask = F.one_hot(labels, k_a.shape[0]).bool()
        neg = torch.finfo(q_a.dtype).min
        logits_aa = (q_a @ k_a.T / self.temperature).masked_fill(self_mask, neg)
        logits_bb = (q_b @ k_b.T / self.temperature).masked_fill(self_mask, neg)
        logits_ab = q_a @ k_b.T / self.temperature
        logits_ba = q_b @ k_a.T / self.temperature
        logits_a = torch.cat([logits_ab, logits_aa], dim=1)
        loss_a = F.cross_entropy(logits_a, labels)
        loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], dim=1), labels)
        loss = (loss_a + loss_b) / 2
        with torch.no_grad():
            acc = (logits_a.argmax(dim=1) == labels).float().mean()
        return {"loss": loss, "simclr": loss, "acc": acc}


class SlipLoss(nn.Module):
    """SLIP: ``clip + ssl_scale * simclr``.

    ``forward(image_features, text_features, logit_scale, aug1_embed, aug2_embed)`` ->
    ``{"loss", "clip", "ssl"}`` (``ssl`` is the unscaled SimCLR loss).
    """

    def __init__(
        self,
        ssl_scale: float = 1.0,
        ssl_temperature: float = 0.1,
        rank: int | None = None,
        world_size: int | None = None,
        gather_with_grad: bool = True,
    ):
        super().__init__()
        self.ssl_scale = ssl_scale
        self.clip = ClipLoss(rank, world_size, gather_with_grad)
        self.simclr = SimClrLoss(ssl_temperature, rank, world_size, gather_with_grad)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        aug1_embed: Tensor,
        aug2_embed: Tensor,
    ) -> dict[str, Tensor]:
        clip = self.clip(image_features, text_features, logit_scale)["loss"]
        ssl = self.simclr(aug1_embed, aug2_embed)["loss"]
        return {"loss": clip + self.ssl_scale * ssl, "clip": clip, "ssl": ssl}


class DistillLoss(nn.Module):
    """MMKD-CLIP style distillation: ``clip + w_fd * fd + w_cross * cross``.

    ``forward(image_features, text_features, logit_scale, teacher_image, teacher_text, has_teacher)``:

    * ``image_features``/``text_features``: the student's (used as given for ``clip``);
    * ``teacher_image``/``teacher_text``: ``(B, D)`` teacher features already projected to the student
      width (rows of samples without a teacher may hold anything, e.g. zeros);
    * ``has_teacher``: ``(B,)`` bool; samples without teacher features are excluded from ``fd`` and
      ``cross`` (rows and columns). ``None`` means all true.

    Student and teacher features are L2-normalised for ``fd`` and ``cross``:

    * ``fd = MSE(s_img, t_img) + MSE(s_txt, t_txt)``, each the mean over the teacher samples and dims;
    * ``cross = InfoNCE(s_img, t_txt) + InfoNCE(s_txt, t_img)``, each symmetric (mean of both
      directions) with ``logit_scale``, over the global teacher samples (teacher columns gathered).

    Both are means over the *global* set of teacher samples, so the rank-mean convention of the module
    docstring holds even when ranks hold different numbers of teacher samples. With no teacher sample
    in the global batch, ``fd`` and ``cross`` are 0 and ``loss == clip``.
    Returns ``{"loss", "clip", "fd", "cross"}``.
    """

    def __init__(
        self,
        w_fd: float = 1.0,
        w_cross: float = 1.0,
        rank: int | None = None,
        world_size: int | None = None,
        gather_with_grad: bool = True,
    ):
        super().__init__()
        self.w_fd, self.w_cross = w_fd, w_cross
        self.rank, self.world_size = _dist_info(rank, world_size)
        self.gather_with_grad = gather_with_grad
        self.clip = ClipLoss(self.rank, self.world_size, gather_with_grad)

    def _gather(self, x: Tensor, with_grad: bool) -> Tensor:
        return all_gather(x, rank=self.rank, world_size=self.world_size, with_grad=with_grad)

    def _cross_rows(self, rows: Tensor, cols_all: Tensor, scale: Tensor, mask: Tensor, mask_all: Tensor):
        """Sum over the local teacher rows of the CE of ``rows`` against the teacher columns."""
        logits = (scale * rows @ cols_all.T).masked_fill(~mask_all[None, :], torch.finfo(rows.dtype).min)
        labels = _local_labels(rows.shape[0], self.rank, rows.device)
        return F.cross_entropy(logits[mask], labels[mask], reduction="sum")

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        teacher_image: Tensor,
        teacher_text: Tensor,
        has_teacher: Tensor | None = None,
    ) -> dict[str, Tensor]:
        clip = self.clip(image_features, text_features, logit_scale)["loss"]
        n = image_features.shape[0]
        if has_teacher is None:
            has_teacher = torch.ones(n, dtype=torch.bool, device=image_features.device)
        mask = has_teacher.to(device=image_features.device, dtype=torch.bool)
        mask_all = self._gather(mask.to(torch.uint8), with_grad=False).bool()
        n_teacher = int(mask_all.sum())
        if n_teacher == 0:
            zero = (image_features.sum() + text_features.sum()) * 0.0
            return {"loss": clip + zero, "clip": clip, "fd": zero, "cross": zero}

        s_img = F.normalize(image_features, dim=-1)
        s_txt = F.normalize(text_features, dim=-1)
        t_img = F.normalize(teacher_image.to(s_img.dtype), dim=-1).masked_fill(~mask[:, None], 0.0)
        t_txt = F.normalize(teacher_text.to(s_txt.dtype), dim=-1).masked_fill(~mask[:, None], 0.0)
        # local sums scaled so that the mean over ranks is the mean over the global teacher samples
        scale_mean = self.world_size / n_teacher
        dim = s_img.shape[-1]
        sq_img = ((s_img - t_img) ** 2).sum(dim=-1)[mask].sum()
        sq_txt = ((s_txt - t_txt) ** 2).sum(dim=-1)[mask].sum()
        fd = (sq_img + sq_txt) * scale_mean / dim

        # teacher features may carry gradient (the model's projection to the student width)
        t_img_all, t_txt_all, s_img_all, s_txt_all = (
            self._gather(x, with_grad=self.gather_with_grad) for x in (t_img, t_txt, s_img, s_txt)
        )
        ce = (
            self._cross_rows(s_img, t_txt_all, logit_scale, mask, mask_all)
            + self._cross_rows(t_txt, s_img_all, logit_scale, mask, mask_all)
            + self._cross_rows(s_txt, t_img_all, logit_scale, mask, mask_all)
            + self._cross_rows(t_img, s_txt_all, logit_scale, mask, mask_all)
        )
        cross = ce * scale_mean / 2
        return {
            "loss": clip + self.w_fd * fd + self.w_cross * cross,
            "clip": clip,
            "fd": fd,
            "cross": cross,
        }
