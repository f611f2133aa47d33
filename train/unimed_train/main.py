"""The training program: `torchrun --nproc_per_node=N -m unimed_train.main --config CFG.yaml [--key value]`.

The same command without torchrun runs one process. A loop a reader can hold in their head:
build the model and loss, read shards, step with warmup + cosine, log and checkpoint on rank 0,
resume exactly (model, optimizer, scaler, RNG states and data position).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from unimed_data.outputs import OutputError, claim_output, settle_output
from unimed_train.cli import UsageError, expected_failures
from unimed_train.config import TrainConfig, parse_config
from unimed_train.model import autocast_dtype
from unimed_train.progress import Progress

WRITES = ("checkpoints", "metrics.jsonl", "tensorboard")  # everything the trainer puts in --out
INTERRUPTED = (
    "stopped by Ctrl-C; the checkpoints saved so far are kept (latest.pt is the last): "
    "rerun with --resume latest to continue from it"
)


def init_distributed() -> tuple[int, int, torch.device]:
    """Rank, world size and device from torchrun's environment; NCCL on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def lr_at(step: int, config: TrainConfig, total: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, total - config.warmup)
    return 0.5 * config.lr * (1 + math.cos(math.pi * min(1.0, progress)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def autocast(config: TrainConfig, device: torch.device):
    dtype = autocast_dtype(config.precision)
    if dtype is None:
        return nullcontext()
    if device.type == "cpu":
        dtype = torch.bfloat16  # CPU autocast supports bf16 only
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(config: TrainConfig) -> list[dict]:
    """Run training; returns the logged metric rows of this process (rank 0 writes them)."""
    from unimed_train.data import check_shards, make_loader
    from unimed_train.model import build_model, param_groups
    from unimed_train.objective import Objective

    rank, world, device = init_distributed()
    out = Path(config.out)
    check_shards(config.train_data)
    resume = _resume_path(config, out)
    _claim(config, out, rank, world)
    seed_everything(config.seed)  # the same initial weights on every rank
    built = build_model(
        config.model,
        model_cfg=config.model_cfg,
        text_encoder=config.text_encoder,
        context_length=config.context_length,
        pretrained=config.pretrained,
        loss=config.loss,
        device=device,
        precision=config.precision,
        grad_checkpointing=config.grad_checkpointing,
        teacher_dims=config.teacher_dims,
    )
    model = built.model
    if config.lock_image:
        model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=True)
    extras = nn.ModuleDict(built.extra_modules())
    if world > 1 and "ssl_head" in extras:
        extras["ssl_head"] = nn.SyncBatchNorm.convert_sync_batchnorm(extras["ssl_head"])
    objective = Objective(config, model, extras, rank=rank, world_size=world).to(device)
    step_module = (
        nn.parallel.DistributedDataParallel(objective, find_unused_parameters=config.lock_image)
        if world > 1
        else objective
    )
    optimizer = torch.optim.AdamW(
        param_groups(model, dict(extras), config.wd),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
    )
    scaler = torch.amp.GradScaler(enabled=config.precision == "amp" and device.type == "cuda")
    loader = make_loader(
        config.train_data,
        preprocess=built.preprocess_train,
        tokenizer=built.tokenizer,
        batch_size=config.batch_size,
        workers=config.workers,
        seed=config.seed,
        epoch_samples=config.train_num_samples,
        resampled=config.resampled,
        rank=rank,
        world_size=world,
        views=_views(built) if config.loss == "slip" else None,
        teacher_keys=tuple(config.teachers),
        teacher_dims=config.teacher_dims,
    )
    per_epoch = max(1, loader.num_batches // config.accum_steps)
    total = config.steps or config.epochs * per_epoch

    step, position = 0, {"epoch": 0, "batches_done": 0}
    if resume is not None:
        checkpoint = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["state_dict"])
        extras.load_state_dict(checkpoint["extras"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        step, position = checkpoint["step"], {k: checkpoint[k] for k in position}

    progress = Progress(total, step, config.log_every, enabled=rank == 0)
    _announce(progress, config, out, built, loader, world, per_epoch, total, step, resume)
    rows: list[dict] = []
    metrics = _metrics_writer(out, rank)
    loader.set_epoch(position["epoch"])
    batches = iter(loader)
    for _ in range(position["batches_done"]):  # replay the data position (the pipeline is deterministic)
        next(batches)
    progress.restart_clock()  # the replay is no training: ETAs count from here
    if resume is not None:
        set_rng_state(checkpoint["rng"][rank] if rank < len(checkpoint["rng"]) else checkpoint["rng"][0])
    epochs = math.ceil(total / per_epoch)
    objective.train()
    started, seen = time.perf_counter(), 0
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config, total)
        parts_sum: dict[str, float] = {}
        for _ in range(config.accum_steps):
            try:
                batch = next(batches)
            except StopIteration:
                loader.set_epoch(loader.epoch + 1)
                batches = iter(loader)
                batch = next(batches)
            batch = {
                k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
            }
            with autocast(config, device):
                parts = step_module(batch)
            scaler.scale(parts["loss"] / config.accum_steps).backward()
            for name, value in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + float(value.detach()) / config.accum_steps
            seen += len(batch["key"]) * world
        if config.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(objective.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        row = {
            "step": step,
            **parts_sum,
            "lr": optimizer.param_groups[0]["lr"],
            "samples_per_s": seen / max(1e-9, time.perf_counter() - started),
        }
        rows.append(row)
        if rank == 0 and (step % config.log_every == 0 or step == total):
            metrics(row)
        progress.step(row, f"{loader.epoch + 1}/{epochs}")
        stopping = config.stop_after is not None and step >= config.stop_after
        if step % config.save_every == 0 or step == total or stopping:
            _save(out, rank, world, built, extras, optimizer, scaler, step, loader.state(), config)
        if stopping:
            break
    progress.close()
    progress.say(f"last checkpoint: {out / 'checkpoints' / 'latest.pt'} (step {step}/{total})")
    if rank == 0:
        settle_output(out)
    if world > 1:
        dist.barrier()
    return rows


def _views(built):
    """SLIP's two augmented views, at the model's image size and normalisation."""
    import open_clip

    from unimed_train.objective import slip_views

    cfg = open_clip.get_model_preprocess_cfg(built.model)
    size = cfg["size"][0] if isinstance(cfg["size"], tuple | list) else cfg["size"]
    return slip_views(size, cfg["mean"], cfg["std"])


def _claim(config: TrainConfig, out: Path, rank: int, world: int) -> None:
    """Rank 0 claims `out` (see `unimed_data.outputs`) and refuses to restart a run in it without
    --resume. Under torchrun every rank gets rank 0's outcome, so a refusal stops them all with its
    error instead of leaving them waiting for rank 0 in DDP."""
    failure = None
    if rank == 0:
        try:
            claim_output(out, "train", WRITES, force=config.force)
            _refuse_restart(config, out)
        except (UsageError, OutputError) as exc:
            failure = exc
    if world > 1:
        shared = [failure]
        dist.broadcast_object_list(shared, src=0)
        failure = shared[0]
    if failure is not None:
        raise failure


def _refuse_restart(config: TrainConfig, out: Path) -> None:
    """A rerun into a run folder without --resume would start over at step 0, appending to its
    metrics and overwriting latest.pt with earlier steps."""
    latest = out / "checkpoints" / "latest.pt"
    if config.resume is not None or not latest.is_file():
        return
    step = torch.load(latest, map_location="cpu", weights_only=False, mmap=True)["step"]
    raise UsageError(
        f"{out}: holds a run at step {step} ({latest}); pass --resume latest to continue it, "
        "or choose a new --out"
    )


def _resume_path(config: TrainConfig, out: Path) -> Path | None:
    if config.resume is None:
        return None
    path = out / "checkpoints" / "latest.pt" if config.resume == "latest" else Path(config.resume)
    if config.resume == "latest" and not path.is_file():
        return None  # nothing to resume yet: a first run (so one job script serves every restart)
    if not path.is_file():
        raise UsageError(f"--resume {config.resume}: no checkpoint at {path}")
    return path


def _announce(progress, config, out, built, loader, world, per_epoch, total, step, resume) -> None:
    """Where everything goes and how long the run is, before the first step."""
    params = sum(p.numel() for p in built.model.parameters())
    source = config.pretrained or "random initialisation"
    progress.say(f"model {config.model}: {params / 1e6:.1f}M parameters from {source}, {config.precision}")
    progress.say(_data_line(config, loader, world, per_epoch))
    progress.say(
        f"training: {total} steps ({total / per_epoch:.3g} epochs)"
        + (f", resuming at step {step} from {resume}" if resume else "")
    )
    progress.say(f"checkpoints: {out / 'checkpoints'}/ every {config.save_every} steps and at the end")
    progress.say(f"metrics: {out / 'metrics.jsonl'} every {config.log_every} steps")
    progress.say(f"tensorboard: tensorboard --logdir {out / 'tensorboard'}")


def _data_line(config, loader, world, per_epoch) -> str:
    """The epoch as the loader reads it: `loader.num_samples` is whole global batches, so it differs
    from the samples the epoch has (the last batch filled with repeats, or resampled draws)."""
    epoch = config.train_num_samples or loader.dataset_size
    batches = f"{loader.num_batches} batches of {config.batch_size} x {world} rank(s)"
    read = f"{loader.num_samples} {'drawn with replacement' if config.resampled else 'read'}"
    steps = f"{per_epoch} steps of {config.accum_steps} accumulated batch(es)"
    return f"data: {epoch} samples per epoch, as {batches} ({read}) = {steps}"


def _metrics_writer(out: Path, rank: int):
    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))

    def log(row: dict) -> None:
        with open(out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if writer is not None:
            for name, value in row.items():
                if name != "step":
                    writer.add_scalar(name, value, row["step"])
            writer.flush()

    return log


def _save(out, rank, world, built, extras, optimizer, scaler, step, position, config) -> None:
    """An open_clip-compatible `state_dict` plus everything needed to resume exactly.

    `model_cfg` holds the resolved architecture (not the path to its JSON), so the evaluator rebuilds
    the model from the checkpoint alone, on another machine too."""
    states = [None] * world
    if world > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states = [rng_state()]
    if rank != 0:
        return
    folder = out / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": built.model.state_dict(),
        "extras": extras.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        **position,  # the loader's {"epoch", "batches_done"}
        "rng": states,
        "config": vars(config),
        "model_cfg": built.model_cfg,
    }
    target = folder / f"step_{step:07d}.pt"
    tmp = folder / f".{target.name}.tmp"
    torch.save(checkpoint, tmp)
    os.replace(tmp, target)
    tmp_latest = folder / ".latest.pt.tmp"
    shutil.copyfile(target, tmp_latest)  # the same bytes, without pickling twice
    os.replace(tmp_latest, folder / "latest.pt")


def main(argv: list[str] | None = None) -> None:
    try:
        with expected_failures(INTERRUPTED):
            train(parse_config(argv))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
