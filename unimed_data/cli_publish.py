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
        bool, typer.Option("--dry-run", help="List the files to publish and their total size; send nothing.")
    ] = False,
) -> None:
    """Publish a build's shards, sizes, index, stats, errors, dedupe tables and card (never work/)."""
    from tqdm import tqdm

    from unimed_data.download.http import redact_url
    from unimed_data.publish import PublishError, destination, published_files
    from unimed_data.publish import publish as send
    from unimed_data.publish_hub import hub_repo, is_hub

    shown = redact_url(dest)
    try:
        out = out.resolve()
        if is_hub(dest):
            folder = hub_repo(dest).folder
        else:
            destination(dest, out)
            folder = ""
        files = [(path.relative_to(out).as_posix(), path.stat().st_size) for path in published_files(out)]
        total = sum(size for _, size in files)
        if dry_run:
            for name, size in files:
                terminal.say(f"{size:>14,}  {name}")
            terminal.say(
                f"{len(files)} files, {total:,} bytes, plus SHA256SUMS, to publish to {shown} "
                "(what it already holds with the same digest is skipped when sent)"
            )
            return
        with tqdm(total=total, unit="B", unit_scale=True, desc="publish", disable=None) as bar:
            report = send(out, dest, workers=workers, progress=bar.update)
    except PublishError as exc:
        fail(str(exc))
    terminal.say(f"{len(report.sent)} files sent, {len(report.kept)} already there; {shown} holds SHA256SUMS")
    if folder:
        terminal.say(
            f"note: the Hub reads only the repo's root README.md; copy {folder}/README.md there to make "
            "load_dataset(ORG/NAME) load this folder"
        )
