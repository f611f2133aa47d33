"""The run: shards split between ranks, each shard encoded by every teacher and written out; OUT's
`teachers.json` and `sizes.json` by rank 0."""

from __future__ import annotations

import json
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import braceexpand
import torch
import torch.distributed as dist
from tqdm import tqdm

from unimed_data.outputs import claim_output, settle_output
from unimed_data.tables import atomic_write_bytes, atomic_write_text
from unimed_train.cli import UsageError
from unimed_train.data.remote import reason
from unimed_train.data.spec import missing_shards
from unimed_train.main import init_distributed, rank0_verdict
from unimed_train.teachers.config import FIELDS, TeacherSpec, read_teachers
from unimed_train.teachers.models import Teacher, load_teacher
from unimed_train.teachers.shards import Sample, ShardWriter, prepare, read_samples

KIND = "teachers"
OWN = ("sizes.json", "teachers.json", "errors")  # besides the shards


@dataclass
class Options:
    teachers: Path
    shards: str
    out: Path
    batch_size: int
    workers: int
    force: bool


def list_shards(pattern: str) -> list[Path]:
    """The local shards of a brace pattern, all in one folder (their names are kept under OUT)."""
    paths = [Path(p) for p in braceexpand.braceexpand(pattern)]
    if not paths or not pattern.strip():
        raise UsageError(f"--shards {pattern!r}: names no shards")
    if any(":" in str(p).split("/", 1)[0] for p in paths):
        raise UsageError(f"--shards {pattern}: only local shards are read (copy remote ones first)")
    if problem := missing_shards([str(p) for p in paths], len(paths), pattern):
        raise UsageError(problem)
    if len({p.parent for p in paths}) > 1 or len({p.name for p in paths}) < len(paths):
        raise UsageError(f"--shards {pattern}: shards of one folder, each once (run once per folder)")
    return paths


def extract(options: Options) -> None:
    """Teacher features for every sample of the shards, resumable shard by shard (see the package doc)."""
    specs = read_teachers(options.teachers)
    shards = list_shards(options.shards)
    if options.batch_size < 1 or options.workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1")
    rank, world, device = init_distributed()
    out = options.out
    _claim(options, specs, [p.name for p in shards], rank, world)
    teachers = [load_teacher(spec, device, str(options.teachers)) for spec in specs]
    if rank == 0:
        _describe(out, teachers, shards[0].parent)
    mine = shards[rank::world]
    todo = [p for p in mine if not (out / p.name).exists()]
    started = time.perf_counter()
    with ThreadPoolExecutor(options.workers) as pool:
        done = _run(todo, out, teachers, pool, options.batch_size, rank, world)
    counts = torch.tensor([float(done), float(len(mine) - len(todo))], device=device)
    seconds = torch.tensor([time.perf_counter() - started], device=device)
    if world > 1:
        dist.all_reduce(counts)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    if rank == 0:
        settle_output(out)
        samples, skipped, took = int(counts[0]), int(counts[1]), float(seconds[0])
        print(
            f"teachers: {samples} samples in {took:.1f} s ({samples / max(took, 1e-9):.1f} samples/s) "
            f"on {world} rank(s), {skipped} finished shard(s) skipped; output {out}",
            file=sys.stderr,
        )


def _run(
    todo: list[Path], out: Path, teachers, pool: Executor, batch_size: int, rank: int, world: int
) -> int:
    """This rank's shards; returns the samples encoded."""
    sizes = _sizes(todo[0].parent) if todo else {}
    total = sum(sizes.get(p.name, 0) for p in todo) if all(p.name in sizes for p in todo) else None
    shown = rank == 0 and sys.stderr.isatty()
    prefix = f"rank {rank}/{world}: " if world > 1 else ""
    done = 0
    with tqdm(total=total, unit="sample", disable=not shown, file=sys.stderr) as bar:
        for path in todo:
            writer = ShardWriter(out / path.name, out / "errors")
            for chunk in _chunks(_read(path), batch_size):
                chunk = list(pool.map(prepare, chunk))
                for teacher in teachers:
                    _apply(teacher, chunk, writer, pool, batch_size)
                for sample in chunk:
                    writer.write(sample)
                bar.update(len(chunk))
            writer.finish()
            done += writer.samples
            if not shown:
                print(
                    f"{prefix}{path.name}: {writer.samples} samples, {len(writer.rows)} errors",
                    file=sys.stderr,
                )
    return done


def _apply(
    teacher: Teacher, chunk: list[Sample], writer: ShardWriter, pool: Executor, batch_size: int
) -> None:
    """One teacher on the samples of a chunk it reads (its modalities); failures become error rows."""
    name = teacher.spec.name
    readable = [s for s in chunk if teacher.spec.reads(s.modality)]
    for sample in readable:
        if sample.problem:
            writer.error(sample.key, name, sample.problem)
    good = [s for s in readable if not s.problem]
    for sample, result in zip(good, teacher.encode(good, pool, batch_size) if good else [], strict=True):
        if isinstance(result, str):
            writer.error(sample.key, name, result)
        else:
            sample.add(name, *result)


def _read(path: Path) -> Iterator[Sample]:
    """The samples of an input shard; a shard that cannot be read stops the run (the finished
    shards are kept: a rerun goes on from there)."""
    try:
        yield from read_samples(path)
    except (OSError, EOFError, tarfile.TarError) as exc:  # not a tar, a cut file
        raise UsageError(f"{path}: cannot read this shard ({reason(exc)})") from None


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sizes(folder: Path) -> dict:
    path = folder / "sizes.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _claim(options: Options, specs: list[TeacherSpec], names: list[str], rank: int, world: int) -> None:
    """Rank 0 claims OUT and refuses one whose shards hold other teachers (a resume would mix
    them); every rank stops with rank 0's refusal."""

    def check() -> None:
        claim_output(options.out, KIND, [*names, *OWN], force=options.force)
        _check_same_teachers(options.out / "teachers.json", specs)

    rank0_verdict(check, rank, world)


def _check_same_teachers(path: Path, specs: list[TeacherSpec]) -> None:
    if not path.is_file():
        return
    held = [{k: t.get(k) for k in FIELDS} for t in _teachers(path)]
    wanted = [json.loads(json.dumps({"name": s.name, **s.source()})) for s in specs]
    if held != wanted:
        raise UsageError(
            f"{path.parent}: holds the features of other teachers ({', '.join(t['name'] for t in held)}); "
            "choose a new --out"
        )


def _teachers(path: Path) -> list[dict]:
    try:
        return list(json.loads(path.read_text())["teachers"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: cannot read ({reason(exc)})") from None


def _describe(out: Path, teachers: list[Teacher], folder: Path) -> None:
    """`teachers.json` (what the trainer reads the widths from) and a copy of `sizes.json`."""
    text = json.dumps({"teachers": [t.describe() for t in teachers]}, indent=2) + "\n"
    atomic_write_text(out / "teachers.json", text)
    if (folder / "sizes.json").is_file():
        atomic_write_bytes(out / "sizes.json", (folder / "sizes.json").read_bytes())
    else:
        print(
            f"note: no sizes.json beside the shards in {folder}; train with --train-num-samples",
            file=sys.stderr,
        )
