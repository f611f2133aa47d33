"""Folder-per-class trees (`<path>/.../<class>/<image>`), and the one rule by which a build and
`evalset --from-folder` name classes from folders (`folder_class`).

The class is the image's parent folder, so a tree grouped first by something else (RadImageNet's
`<anatomy>/<label>/`, or `<ward>/<class>/`) gets its labels. The folder name is the raw label: the
manifest words it (its `classes:` mapping, else `_` read as a space), as for every layout.

With `tree` (e.g. `{split}/{class}/images`), the folders between `path` and each image must match
that pattern, one segment per folder: `{class}` names the class, `{split}` the source's split
(`train`, `Val`, ...; read by `split: {by: column}`), `*` any folder, anything else that folder
exactly. Images elsewhere (COVID-QU-Ex's `lung masks/`, a duplicated copy of the tree) are `Filtered`.

Files are visited in sorted order so the records come out the same on every machine. Files without
an extension are kept only when they carry the DICOM magic (`DICM` at byte 128), because many
scanners export DICOM with bare names such as `IM000001`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from unimed_data.imaging.formats import HEAD_SIZE, has_dicom_magic
from unimed_data.layouts.item import Filtered, Item, ItemError, LayoutError, RelPath

DEFAULT_EXTENSIONS = [".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"]


class FolderLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["folder"]
    path: RelPath = "."
    extensions: list[str] = DEFAULT_EXTENSIONS
    tree: str | None = None  # folders under `path`, e.g. `{split}/{class}/images`; default: class = parent

    @field_validator("tree")
    @classmethod
    def _one_class_segment(cls, tree: str | None) -> str | None:
        if tree is None:
            return None
        segments = tree.strip("/").split("/")
        if segments.count("{class}") != 1 or segments.count("{split}") > 1 or "" in segments:
            raise ValueError("tree must name {class} once and {split} at most once, e.g. {split}/{class}")
        return "/".join(segments)

    @field_validator("extensions")
    @classmethod
    def _dotted_lower(cls, values: list[str]) -> list[str]:
        return ["." + value.lower().lstrip(".") for value in values]


def folder_class(image: Path) -> str:
    """The raw class of an image in a folder-per-class tree."""
    return image.parent.name


def _match_tree(tree: str, folders: tuple[str, ...]) -> dict[str, str] | None:
    """The `{class}`/`{split}` values of an image's folders under the tree pattern, or None if they differ."""
    segments = tree.split("/")
    if len(segments) != len(folders):
        return None
    found = {}
    for segment, folder in zip(segments, folders, strict=True):
        if segment in ("{class}", "{split}"):
            found[segment[1:-1]] = folder
        elif segment not in ("*", folder):
            return None
    return found


def is_dicom(path: Path) -> bool:
    with path.open("rb") as handle:
        return has_dicom_magic(handle.read(HEAD_SIZE))


def _walk(folder: Path) -> Iterator[Path]:
    """Every non-hidden file under `folder`, in path order (folders and files interleaved by name).

    Symlinked files are followed; symlinked sub-folders are not, so a link cycle cannot loop.
    """
    with os.scandir(folder) as scan:
        entries = sorted((entry for entry in scan if not entry.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)


def annotation_files(layout: FolderLayout, dataset_root: Path) -> list[Path]:
    """The tree's folders: their mtimes change whenever an image is added, removed or renamed."""
    top = dataset_root / layout.path
    return [top, *(Path(folder) / name for folder, dirs, _ in os.walk(top) for name in dirs)]


def iter_items(layout: FolderLayout, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    top = dataset_root / layout.path
    if not top.is_dir():
        raise LayoutError(f"{layout.path}: image folder not found under {dataset_root}")
    wanted = set(layout.extensions)
    for path in _walk(top):
        relpath = path.relative_to(dataset_root).as_posix()
        suffix = path.suffix.lower()
        try:
            if suffix not in wanted and not (suffix == "" and is_dicom(path)):
                continue
        except OSError as exc:
            yield ItemError(relpath, relpath, f"{relpath}: unreadable ({exc.strerror})")
            continue
        if layout.tree is not None:
            yield _tree_item(layout.tree, relpath, path.parent.relative_to(top).parts)
        elif path.parent == top:
            yield ItemError(relpath, relpath, f"{relpath}: image is not inside a class folder")
        else:
            yield Item(item_id=relpath, source_path=relpath, labels=[folder_class(path)])


def _tree_item(tree: str, relpath: str, folders: tuple[str, ...]) -> Item | Filtered:
    found = _match_tree(tree, folders)
    if found is None:
        return Filtered(relpath, f"not in the tree {tree}")
    return Item(item_id=relpath, source_path=relpath, labels=[found["class"]], split=found.get("split"))
