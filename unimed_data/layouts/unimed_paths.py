"""Where an image named in a UniMed annotation file lives under the dataset root.

UniMed's scripts join each file's image path onto a `--parent_dataset_path` given on the command
line, and that folder is not always the one holding the annotation file: CheXpert paths repeat the
root's own folder name (`CheXpert-v1.0-small/train/...`), and UniMed-DATA.md puts MIMIC-CXR's CSV
in `mimic-cxr-jpg/2.0.0/files/` while passing `mimic-cxr-jpg` as the parent, so a MIMIC path may be
written relative to the CSV's folder (`p10/...`), to the root (`2.0.0/files/p10/...`), or from a
folder that ends the CSV's folder (`files/p10/...`). So a path is tried in these forms, in order:

1. under `image_root` without a leading folder that repeats the root's name (in any case), when
   it has one;
2. under `image_root` as written;
3. under the annotation file's folder without its leading folders that repeat the end of that
   folder's path (in any case), when they do (`files/p10/...` beside `2.0.0/files/` becomes
   `2.0.0/files/p10/...`);
4. under the annotation file's folder as written.

The first that exists wins; when none does (images not downloaded yet), the first form is kept and
the convert stage reports the missing file there. Only `stat` is used, never an open, and whether
a folder exists is remembered, so a form under a missing folder costs no `stat` on later rows.

`CAPTION_SOURCE` is the caption source of every item the UniMed layouts make.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from unimed_data.layouts.item import relative_path

CAPTION_SOURCE = "unimed"
_FOLDER_CACHE = 65536  # folders remembered; rows come grouped by folder, so this bounds memory, not hits


def _join(folder: str, path: str) -> str:
    return f"{folder}/{path}" if folder else path


def _folder(path: str) -> str:
    """A configured folder, normalised; "" for the dataset root."""
    return relative_path(path) if path not in ("", ".") else ""


class PathResolver:
    """Resolves raw image paths for one annotation file; caches whether folders exist, so a candidate
    under a missing folder costs no `stat` per row (RadImageNet has a million rows)."""

    def __init__(self, dataset_root: Path, annotation_dir: str, image_root: str = ""):
        self._root = os.fspath(dataset_root)  # plain strings: pathlib costs more than the stat here
        self._root_name = dataset_root.name.casefold()
        self._annotation_dir = _folder(annotation_dir)
        self._annotation_parts = self._annotation_dir.casefold().split("/") if self._annotation_dir else []
        self._image_root = _folder(image_root)
        self._folder_exists = lru_cache(maxsize=_FOLDER_CACHE)(self._is_dir)

    def _is_dir(self, folder: str) -> bool:
        return os.path.isdir(os.path.join(self._root, folder)) if folder else True

    def _without_annotation_tail(self, path: str) -> str | None:
        """`path` without its longest run of leading folders that repeats the end of the annotation
        folder's path, or None when it starts with no such run (the file name never counts)."""
        parts = path.split("/")
        folded = [part.casefold() for part in parts[:-1]]
        for count in range(min(len(folded), len(self._annotation_parts)), 0, -1):
            if folded[:count] == self._annotation_parts[-count:]:
                return "/".join(parts[count:])
        return None

    def candidates(self, raw: str) -> list[str]:
        """The forms of `raw` to try, in order and without repeats; ValueError if it leaves the root."""
        return self._forms(self.identity(raw))

    def _forms(self, path: str) -> list[str]:
        """The forms of a normalised path, so the forms below are plain joins."""
        forms = []
        first, _, rest = path.partition("/")
        if rest and first.casefold() == self._root_name:
            forms.append(_join(self._image_root, rest))
        forms.append(_join(self._image_root, path))
        below = self._without_annotation_tail(path)
        if below is not None:
            forms.append(_join(self._annotation_dir, below))
        forms.append(_join(self._annotation_dir, path))
        return list(dict.fromkeys(forms))

    def identity(self, raw: str) -> str:
        """The item's id: the path as the annotation file writes it (normalised), so a key never
        changes with where, or whether, the image lies on disk."""
        return relative_path(raw.strip())

    def resolve(self, raw: str) -> str:
        """The first candidate that exists as a file, else the first candidate."""
        return self.locate(raw)[1]

    def locate(self, raw: str) -> tuple[str, str]:
        """The item's id and where its image is, normalising `raw` once (a hot path: one call per row)."""
        path = self.identity(raw)
        forms = self._forms(path)
        for form in forms:
            folder = form.rpartition("/")[0]
            if self._folder_exists(folder) and os.path.isfile(os.path.join(self._root, form)):
                return path, form
        return path, forms[0]
