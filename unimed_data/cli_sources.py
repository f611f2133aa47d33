"""`unimed-data download` and `unimed-data sources`: the registry of bundled source manifests, and
fetching, verifying and unpacking what they describe."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from unimed_data import terminal
from unimed_data.cli_common import OFF, os_problem
from unimed_data.manifest import ManifestError


def download(
    names: Annotated[list[str], typer.Argument(help="Bundled manifest names or manifest YAML paths.")],
    root: Annotated[Path, typer.Option("--root", help="Raw data root; each source goes to ROOT/<name>/.")],
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            help="Base URL of an institutional mirror serving the same paths.",
            show_default="none",
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", help="Verify and unpack an archive fetched by hand.", show_default="none"
        ),
    ] = None,
) -> None:
    """Fetch sources (HTTP, Zenodo, Figshare, Hugging Face, Kaggle, PhysioNet), verify and unpack them.

    A source that cannot be fetched automatically gets its homepage, access terms and the layout
    its files must have, and exit status 1 until they are in place.
    """
    from unimed_data.dataset_folders import dataset_root
    from unimed_data.download import DownloadError, ManualDownloadRequired, download_dataset
    from unimed_data.manifest import find_manifest, load_manifest

    failed = 0
    for name in names:
        try:
            manifest = load_manifest(find_manifest(name))
            report = download_dataset(manifest, root, mirror=mirror, from_file=from_file)
        except ManualDownloadRequired as exc:
            terminal.say((f"{name}:", "yellow"), " ", str(exc))
            failed += 1
            continue
        except ManifestError as exc:  # names the manifest itself
            terminal.error(str(exc))
            failed += 1
            continue
        except (DownloadError, ValueError) as exc:
            terminal.error(f"{name}: {exc}")
            failed += 1
            continue
        except OSError as exc:
            terminal.error(f"{name}: {os_problem(exc)}")
            failed += 1
            continue
        state = "already complete" if report.skipped else f"{len(report.files)} file(s)"
        terminal.say(f"{name}: {state} in {dataset_root(manifest, root)}")
    if failed:
        raise typer.Exit(1)


def sources(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (every field) instead of a table.", show_default=OFF)
    ] = False,
    long: Annotated[
        bool,
        typer.Option("--long", help="Add licence, homepage and fetchers to the table.", show_default=OFF),
    ] = False,
) -> None:
    """Every bundled source: modality, role (pretrain/eval), access, expected images; --long adds licences."""
    from unimed_data.sources import render_sources, source_rows

    rows = source_rows()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        render_sources(rows, terminal.console(), long=long)
