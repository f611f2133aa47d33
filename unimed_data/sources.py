"""The source registry: one row per bundled manifest (modality, role, access, licence, size, fetchers)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.resources.abc import Traversable

from rich.console import Console
from rich.table import Table

from unimed_data.manifest import bundled_manifest_paths, load_manifest


def source_rows(paths: Iterable[str | os.PathLike | Traversable] | None = None) -> list[dict]:
    """One dict per manifest: name, modality, role, access, license, expected_images, fetchers."""
    rows = []
    for path in bundled_manifest_paths() if paths is None else paths:
        manifest = load_manifest(path)
        rows.append(
            {
                "name": manifest.name,
                "modality": manifest.modality,
                "role": manifest.role,
                "access": manifest.access,
                "license": manifest.license,
                "expected_images": manifest.expected_images,
                "fetchers": [entry.fetcher for entry in manifest.download],
            }
        )
    return rows


def render_sources(rows: list[dict], console: Console) -> None:
    """A table of the rows, sorted by role, then modality, then name (fetchers: see `--json`)."""
    table = Table(title="Sources")
    table.add_column("name", no_wrap=True, min_width=max(len(r["name"]) for r in rows) if rows else 4)
    for column in ("modality", "role", "access"):
        table.add_column(column, no_wrap=True)
    table.add_column("images", justify="right", no_wrap=True)
    table.add_column("license", overflow="fold", min_width=16)  # the long one wraps; names never hide
    for row in sorted(rows, key=lambda r: (r["role"], r["modality"], r["name"])):
        images = row["expected_images"]
        table.add_row(
            row["name"],
            row["modality"],
            row["role"],
            row["access"],
            "?" if images is None else f"{images:,}",
            row["license"],
        )
    console.print(table)
