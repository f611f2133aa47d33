"""What the trainer tells the person watching it (rank 0 only): a tqdm bar on a terminal, plain
lines otherwise (log files, CI), so a long run is never silent and a log shows how it went."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO

from tqdm import tqdm

NOT_LOSSES = ("step", "lr", "samples_per_s")


class Progress:
    """Progress of steps `start`..`total`, reported every `every` steps (and at the last)."""

    def __init__(self, total: int, start: int, every: int, *, enabled: bool, stream: TextIO | None = None):
        self.total, self.start, self.every, self.enabled = total, start, max(1, every), enabled
        self.stream = stream or sys.stderr
        self.began = time.perf_counter()
        tty = enabled and self.stream.isatty()
        self.bar = tqdm(total=total, initial=start, file=self.stream, unit="step") if tty else None

    def restart_clock(self) -> None:
        """Count ETAs from now: time spent before the first step (a resume replaying its data
        position) would make the first ones too long."""
        self.began = time.perf_counter()
        if self.bar is not None:
            self.bar.unpause()

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def step(self, row: dict, epoch: str) -> None:
        """After each optimizer step, with its metrics row and the epoch as `e/E`."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        step = row["step"]
        if step % self.every and step != self.total:
            return
        losses = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in NOT_LOSSES)
        speed = f"lr {row['lr']:.2e} {row['samples_per_s']:.1f} samples/s"
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch {epoch} {losses} {speed}", refresh=False)
            return
        elapsed = time.perf_counter() - self.began
        eta = timedelta(seconds=round(elapsed / (step - self.start) * (self.total - step)))
        self.say(f"step {step}/{self.total} epoch {epoch} {losses} {speed} ETA {eta}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
