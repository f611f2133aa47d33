"""The training program: `torchrun --nproc_per_node=N -m unimed_train.main --config CFG.yaml [--key value]`.

The same command without torchrun runs one process. A loop a reader can hold in their head:
build the model and loss, read shards, step with warmup + cosine, log and checkpoint on rank 0,
resume exactly (model, optimizer, scaler, RNG states and data position).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from unimed_data.outputs import OutputError, claim_output, settle_output
from unimed_train import checkpoints
from unimed_train.cli import UsageError, expected_failures
from unimed_train.config import TrainConfig, parse_config
from unimed_train.data import Loader, check_shards, make_loader
from unimed_train.model import Built, build_model, param_groups
from unimed_train.objectives import objective_class
from unimed_train.precision import autocast
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


@dataclass
class Run:
    """What the loop works with, built once (before any resume)."""

    built: Built
    objective: nn.Module
    step_module: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loader: Loader


def train(config: TrainConfig) -> list[dict]:
    """Run training; returns the logged metric rows of this process (rank 0 writes them)."""
    rank, world, device = init_distributed()
    out = Path(config.out)
    check_shards(config.train_data)
    resume = checkpoints.resume_path(config.resume, out)
    checkpoint = checkpoints.load(resume, legacy=config.legacy_resume) if resume is not None else None
    _claim(config, out, rank, world)
    run = _build(config, rank, world, device)
    loader, optimizer = run.loader, run.optimizer
    per_epoch = max(1, loader.num_batches // config.accum_steps)
    total = config.steps or config.epochs * per_epoch
    step, position, rng = 0, {"epoch": 0, "batches_done": 0}, None
    if checkpoint is not None:
        step, position, rng = _restore(run, checkpoint, rank)
    progress = Progress(total, step, config.log_every, enabled=rank == 0)
    _announce(progress, config, out, run.built, loader, world, per_epoch, total, step, resume)
    rows: list[dict] = []
    metrics = _metrics_writer(out, rank)
    loader.set_epoch(position["epoch"])
    batches = iter(loader)
    for _ in range(position["batches_done"]):  # replay the data position (the pipeline is deterministic)
        next(batches)
    progress.restart_clock()  # the replay is no training: ETAs count from here
    if rng is not None:
        checkpoints.set_rng_state(rng)
    epochs = math.ceil(total / per_epoch)
    run.objective.train()
    started, seen = time.perf_counter(), 0
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config, total)
        parts, batches, samples = _accumulate(run, batches, config, device)
        seen += samples * world
        _optimizer_step(run, config)
        step += 1
        row = {"step": step, **parts, "lr": optimizer.param_groups[0]["lr"]}
        row["samples_per_s"] = seen / max(1e-9, time.perf_counter() - started)
        rows.append(row)
        if rank == 0 and (step % config.log_every == 0 or step == total):
            metrics(row)
        progress.step(row, f"{loader.epoch + 1}/{epochs}")
        stopping = config.stop_after is not None and step >= config.stop_after
        if step % config.save_every == 0 or step == total or stopping:
            checkpoints.save(out, rank, world, _contents(run, step, config))
        if stopping:
            break
    progress.close()
    progress.say(f"last checkpoint: {out / 'checkpoints' / 'latest.pt'} (step {step}/{total})")
    if rank == 0:
        settle_output(out)
    if world > 1:
        dist.barrier()
    return rows


def _build(config: TrainConfig, rank: int, world: int, device: torch.device) -> Run:
    """The model and its objective (the same initial weights on every rank), the optimizer, the
    loss scaler and the loader with the sample members the objective reads."""
    checkpoints.seed_everything(config.seed)
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
        config=config,
    )
    if config.lock_image:
        built.model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=True)
    extras = nn.ModuleDict(built.extra_modules())
    objective = objective_class(config.loss)(config, built.model, extras, rank=rank, world_size=world)
    objective.to(device)
    step_module = (
        nn.parallel.DistributedDataParallel(objective, find_unused_parameters=config.lock_image)
        if world > 1
        else objective
    )
    optimizer = torch.optim.AdamW(
        param_groups(built.model, dict(objective.extras), config.wd),
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
        members=objective.loader_members(built, config),
    )
    return Run(built, objective, step_module, optimizer, scaler, loader)


def _accumulate(run: Run, batches, config: TrainConfig, device: torch.device):
    """Forward and backward `accum_steps` batches (into the next epoch when this one ends); returns
    the mean loss parts, the batch iterator and the samples this rank read."""
    parts_sum: dict[str, float] = {}
    samples = 0
    for _ in range(config.accum_steps):
        try:
            batch = next(batches)
        except StopIteration:
            run.loader.set_epoch(run.loader.epoch + 1)
            batches = iter(run.loader)
            batch = next(batches)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast(config.precision, device):
            parts = run.step_module(batch)
        run.scaler.scale(parts["loss"] / config.accum_steps).backward()
        for name, value in parts.items():
            parts_sum[name] = parts_sum.get(name, 0.0) + float(value.detach()) / config.accum_steps
        samples += len(batch["key"])
    return parts_sum, batches, samples


def _optimizer_step(run: Run, config: TrainConfig) -> None:
    """Clip, step, reset the gradients, and keep the logit scale at most 100 (as CLIP does)."""
    if config.grad_clip:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.objective.parameters(), config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        run.built.model.logit_scale.clamp_(0, math.log(100))


def _contents(run: Run, step: int, config: TrainConfig) -> dict:
    """An open_clip-compatible `state_dict` plus everything needed to resume exactly (but the RNG
    states, which `checkpoints.save` gathers). `model_cfg` holds the resolved architecture (not the
    path to its JSON), so the evaluator rebuilds the model from the checkpoint alone."""
    return {
        "state_dict": run.built.model.state_dict(),
        "extras": run.objective.extras.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "step": step,
        **run.loader.state(),  # {"epoch", "batches_done"}
        "config": vars(config),
        "model_cfg": run.built.model_cfg,
    }


def _restore(run: Run, checkpoint: dict, rank: int) -> tuple[int, dict, dict]:
    """Load the weights, optimizer and scaler; return the step, data position and this rank's RNG
    states (set after the data replay, as they were when saved)."""
    run.built.model.load_state_dict(checkpoint["state_dict"])
    run.objective.extras.load_state_dict(checkpoint["extras"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    position = {k: checkpoint[k] for k in ("epoch", "batches_done")}
    states = checkpoint["rng"]
    return checkpoint["step"], position, states[rank] if rank < len(states) else states[0]


def _claim(config: TrainConfig, out: Path, rank: int, world: int) -> None:
    """Rank 0 claims `out` (see `unimed_data.outputs`) and refuses to restart a run in it without
    --resume."""

    def check() -> None:
        claim_output(out, "train", WRITES, force=config.force)
        _refuse_restart(config, out)

    rank0_verdict(check, rank, world)


def rank0_verdict(check: Callable[[], None], rank: int, world: int) -> None:
    """Run `check` on rank 0 only and raise its UsageError or OutputError on every rank: under
    torchrun a refusal then stops them all with its message, instead of leaving the others waiting
    for rank 0."""
    failure = None
    if rank == 0:
        try:
            check()
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
    try:
        held = f"a run at step {checkpoints.load(latest, legacy=config.legacy_resume, mmap=True)['step']}"
    except UsageError:
        held = "a run of an older trainer"
    raise UsageError(
        f"{out}: holds {held} ({latest}); pass --resume latest to continue it, or choose a new --out"
    )


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


def main(argv: list[str] | None = None) -> None:
    try:
        with expected_failures(INTERRUPTED):
            train(parse_config(argv))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
