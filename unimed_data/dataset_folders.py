"""Where a dataset's files are under the raw root: one rule for the build, `download`, `sources`
and `evalset`, so each looks in the folder the others read or fill.

Imports nothing of the package, so any module (the download fetchers included) can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unimed_data.manifest import Manifest


def dataset_root(manifest: Manifest, raw_root: Path) -> Path:
    """The dataset's folder under the raw root. Each folder name that is not there as written is
    matched without regard to case (`openI`, `OpenI` and `openi` are one source's spellings)."""
    return find_folder(raw_root, manifest.root or manifest.name).absolute()


def find_folder(base: Path, relative: str) -> Path:
    folder = base
    for name in Path(relative).parts:
        if not (folder / name).exists() and folder.is_dir():
            matches = [entry for entry in folder.iterdir() if entry.name.lower() == name.lower()]
            name = matches[0].name if len(matches) == 1 else name
        folder = folder / name
    return folder
