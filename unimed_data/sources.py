"""The source registry: one row per bundled manifest (modality, role, access, licence, size, fetchers)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from unimed_data.manifest import bundled_manifest_paths, load_manifest
from unimed_data.terminal import print_table


def source_rows(paths: Iterable[str | os.PathLike] | None = None) -> list[dict]:
    """One dict per manifest: name, modality, role, access, license, homepage, expected_images, fetchers."""
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
                "homepage": manifest.homepage,
                "expected_images": manifest.expected_images,
                "fetchers": [entry.fetcher for entry in manifest.download],
            }
        )
    return rows


def render_sources(rows: list[dict], console: Console, *, long: bool = False) -> None:
    """The rows sorted by role, then modality, then name, as a table of one short line per source,
    so the registry fits a terminal. `long` prints each source as a block instead, its licence,
    homepage and fetchers on lines of their own that the terminal folds: in table columns that
    narrow they would be cut or squeezed to a few characters a line."""
    rows = sorted(rows, key=lambda r: (r["role"], r["modality"], r["name"]))
    if not long:
        table = Table(title="Sources")
        for column in ("name", "modality", "role", "access"):
            table.add_column(column, no_wrap=True, overflow="fold")
        table.add_column("images", justify="right", no_wrap=True, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in _summary(row)))  # Text: `[...]` is not markup
        print_table(console, table)
        return
    for row in rows:
        fetchers = ", ".join(row["fetchers"]) or "none (`download` says what to do)"
        lines = [
            Text("  ".join(_summary(row)), style="bold"),
            Text(f"  licence: {row['license']}"),
            Text(f"  homepage: {row['homepage'] or '-'}"),
            Text(f"  fetchers: {fetchers}"),
        ]
        for line in lines:
            console.print(line, soft_wrap=True)  # the terminal folds it; Rich must not break or cut it


def _summary(row: dict) -> list[str]:
    images = row["expected_images"]
    return [
        row["name"],
        row["modality"],
        row["role"],
        row["access"],
        "?" if images is None else f"{images:,}",
    ]
