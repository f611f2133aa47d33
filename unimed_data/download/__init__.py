"""Download stage: fetchers, verification and safe extraction of public sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from unimed_data.dataset_folders import dataset_root
from unimed_data.download.extract import ExtractError, extract_archive
from unimed_data.download.fetchers import (
    ManualDownloadRequired,
    MissingCredentials,
    _run_entry,
    download_entry,
    mirror_url,
)
from unimed_data.download.guide import in_place, no_fetcher_guide
from unimed_data.download.http import (
    AuthError,
    ChecksumError,
    DownloadError,
    NotFoundError,
    download_file,
    redact_url,
)

__all__ = [
    "AuthError",
    "ChecksumError",
    "DownloadError",
    "DownloadReport",
    "ExtractError",
    "ManualDownloadRequired",
    "MissingCredentials",
    "NotFoundError",
    "download_dataset",
    "download_entry",
    "download_file",
    "extract_archive",
    "mirror_url",
    "redact_url",
]


@dataclass
class DownloadReport:
    dataset: str
    files: list[Path] = field(default_factory=list)
    skipped: bool = False  # True when everything was already in place (nothing fetched or unpacked)


def download_dataset(manifest, raw_root: Path, *, mirror: str | None = None, from_file: Path | None = None):
    """Run every `download:` entry of `manifest` into `raw_root / (root or name) / entry.target`.

    A manifest without entries is complete once its files are in place; until then this raises
    `ManualDownloadRequired` saying where to get them and where they go.

    `from_file` (an archive or file fetched by hand) replaces the download of one entry: the only
    entry, or the one whose file name (http `filename`/URL name, manual `expect` name) matches it.
    """
    dataset_dir = dataset_root(manifest, Path(raw_root))  # the folder a build reads, whatever its case
    entries = list(manifest.download)
    if not entries:
        if from_file is None and in_place(manifest, dataset_dir):
            return DownloadReport(manifest.name, skipped=True)
        raise ManualDownloadRequired(no_fetcher_guide(manifest, dataset_dir))
    chosen = _entry_for_file(manifest.name, entries, Path(from_file)) if from_file is not None else None
    report = DownloadReport(manifest.name)
    changed = False
    for i, entry in enumerate(entries):
        if chosen is not None and i != chosen:
            continue
        paths, entry_changed = _run_entry(
            entry, dataset_dir, mirror=mirror, from_file=from_file if chosen == i else None
        )
        report.files.extend(paths)
        changed |= entry_changed
    report.skipped = not changed
    return report


def _entry_for_file(dataset: str, entries: list, src: Path) -> int:
    if len(entries) == 1:
        return 0
    for i, e in enumerate(entries):
        names = []
        if e.fetcher == "http":
            names.append(e.file_name)
        elif e.fetcher == "manual":
            names += [Path(f.name).name for f in e.expect]
        if src.name in names:
            return i
    raise DownloadError(
        f"{dataset}: --from-file {src.name} matches none of the {len(entries)} download entries"
    )
