"""Dataset manifests: one YAML file says what a source is, how its files are laid out and licensed.

Every model forbids unknown fields, so a typo (`lisence:`) fails loudly instead of being ignored.
Any problem raises `ManifestError` naming the file, the field path and what is wrong, e.g.
`manifests/chexpert.yaml: layout.uncertain: Input should be 'positive', 'negative' or 'ignore'`.

`classes` maps raw labels to readable clinical names; a raw label missing from it passes through
with `_` replaced by spaces (`pleural_effusion` -> `pleural effusion`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unimed_data.bundled import bundled
from unimed_data.download.spec import FETCHER_TYPES, Access, DownloadEntry, Role
from unimed_data.layouts import LAYOUT_TYPES, Layout
from unimed_data.layouts.item import RelPath
from unimed_data.schema import MODALITIES, dataset_slug
from unimed_data.splits import SPLIT_RULES, HashSplit, SplitRule


class ManifestError(ValueError):
    """A manifest that cannot be read or does not validate; the message says where and why."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    modality: Literal[MODALITIES]
    license: str = Field(min_length=1)
    citation: str | None = None
    homepage: str | None = None
    description: str | None = None
    root: RelPath | None = None  # folder under the raw root holding the dataset; default `name`
    layout: Layout
    # A folder name in an item's path -> that item's modality (RadImageNet's CT/, MR/, US/); the
    # first folder of the path found here wins, else `modality`.
    modality_from_folder: dict[str, Literal[MODALITIES]] = {}
    # The separator UniMed-CLIP's own trainer splits this part's glued `txt` at (`--txt-format unimed`),
    # e.g. `_chexpert_`; a part without one gets its primary caption alone.
    unimed_tag: str | None = Field(None, pattern=r"^_[a-z0-9_]+_$")
    classes: dict[str, str] = {}  # raw label -> readable clinical name
    # Zero-shot templates of `evalset` from this source: bundled `prompts/eval/<templates>.txt` instead
    # of the modality's (mammograms are X-rays, but not chest radiographs).
    templates: str | None = Field(None, pattern=r"^[a-z0-9_-]+$")
    definitions: dict[str, str] = {}  # readable label -> short definition, for caption prompts
    split: SplitRule = HashSplit()
    role: Role = "pretrain"  # eval: an evaluation-only set, excluded from pretraining builds
    access: Access = "open"
    expected_images: int | None = Field(None, ge=0)
    download: list[DownloadEntry] = []

    @field_validator("name")
    @classmethod
    def _sluggable(cls, name: str) -> str:
        dataset_slug(name)
        return name

    @property
    def slug(self) -> str:
        return dataset_slug(self.name)

    def readable(self, raw_label: str) -> str:
        return self.classes.get(raw_label, raw_label.replace("_", " "))


# Union members tagged by these fields appear in pydantic's error paths; users never wrote them.
_UNION_TAGS = {
    "layout": set(LAYOUT_TYPES),
    "split": set(SPLIT_RULES),
    "download": set(FETCHER_TYPES),
}


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        # The union field is the previous part, or the one before a list index (`download[0]`).
        owner = loc[index - 2] if index >= 2 and isinstance(loc[index - 1], int) else loc[index - 1]
        if part == "[key]" or (index and owner in _UNION_TAGS and part in _UNION_TAGS[owner]):
            continue
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "(top level)"


def validate_manifest(data: object, source: str) -> Manifest:
    """Validate already-parsed manifest data; `source` names it in error messages."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_field_path(error['loc'])}: {error['msg']}" for error in exc.errors()]
        raise ManifestError("\n".join(lines)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses duplicate mapping keys, which plain YAML loading silently resolves to the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_manifest_text(text: str, source: str = "<manifest>") -> Manifest:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        # The context mark (where the unfinished construct began) beats the problem mark (often EOF).
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        words = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        detail = "; ".join(word for word in words if word) or str(exc)
        raise ManifestError(f"{where}: YAML syntax error: {detail}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a mapping of manifest fields, got {type(data).__name__}")
    return validate_manifest(data, source)


def load_manifest(path: str | os.PathLike) -> Manifest:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{source}: cannot read manifest ({exc.strerror or exc})") from None
    return load_manifest_text(text, source)


def bundled_manifest_paths() -> list[Path]:
    """The bundled manifests (`manifests/`), sorted by file name."""
    folder = bundled("manifests")
    return sorted((entry for entry in folder.iterdir() if entry.name.endswith(".yaml")), key=lambda e: e.name)


def find_manifest(name_or_path: str | os.PathLike) -> Path:
    """A manifest file path, or a bundled manifest by name (`odir-5k` or `odir-5k.yaml`)."""
    if Path(name_or_path).is_file():
        return Path(name_or_path)
    wanted = str(name_or_path).removesuffix(".yaml")
    shipped = bundled_manifest_paths()
    for entry in shipped:
        if entry.name.removesuffix(".yaml") == wanted:
            return entry
    names = ", ".join(entry.name.removesuffix(".yaml") for entry in shipped)
    raise ManifestError(
        f"{name_or_path}: no such manifest file, and no bundled manifest of that name ({names})"
    )


def folder_manifest(folder: Path, *, name: str, modality: str, license: str) -> Manifest:
    """The manifest of a folder-per-class tree given on the command line (`build --from-folder`,
    `evalset --from-folder`), so both read it the same way."""
    data = {
        "name": name,
        "root": folder.name,
        "modality": modality,
        "license": license,
        "layout": {"type": "folder"},
    }
    return validate_manifest(data, f"--from-folder {folder}")
