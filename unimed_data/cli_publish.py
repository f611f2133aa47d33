"""`unimed-data publish`: parse, run `publish.py`, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unimed_data import terminal
from unimed_data.cli_common import fail


def publish(
    out: Annotated[Path, typer.Argument(help="The output folder of a finished build.")],
    dest: Annotated[
        str,
        typer.Argument(help="Where to: s3://bucket/prefix, gs://..., file://..., hf://datasets/org/name."),
    ],
    workers: Annotated[int, typer.Option("--workers", min=1, help="Parallel uploads.")] = 8,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be sent; send nothing.")
    ] = False,
) -> None:
    """Publish a build's shards, sizes, index, stats, errors, dedupe tables and card (never work/)."""
    from tqdm import tqdm

    from unimed_data.publish import PublishError, destination, published_files
    from unimed_data.publish import publish as send
    from unimed_data.publish_hub import hub_repo, is_hub

    try:
        out = out.resolve()
        hub_repo(dest) if is_hub(dest) else destination(dest, out)
        files = [(path.relative_to(out).as_posix(), path.stat().st_size) for path in published_files(out)]
        total = sum(size for _, size in files)
        if dry_run:
            for name, size in files:
                terminal.say(f"{size:>14,}  {name}")
            terminal.say(f"{len(files)} files, {total:,} bytes, plus SHA256SUMS, would go to {dest}")
            return
        with tqdm(total=total, unit="B", unit_scale=True, desc="publish", disable=None) as bar:
            report = send(out, dest, workers=workers, progress=bar.update)
    except PublishError as exc:
        fail(str(exc))
    terminal.say(f"{len(report.sent)} files sent, {len(report.kept)} already there; {dest} holds SHA256SUMS")
