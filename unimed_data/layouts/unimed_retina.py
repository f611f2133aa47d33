"""UniMed's `Retina-Annotations/` folder: LLM captions for the FLAIR retinal sets, DeepEyeNet, MM-Retinal.

The folder sits under the `Retina-Datasets/` root, and image paths are relative to that root.
UniMed builds three webdatasets from it, one per `part`:

* `flair`: every `*.csv` except `06_DEN.csv`, `39_MM_Retinal_dataset.csv` and the `skip` list
  (by default the three files UniMed's part-1 script leaves out), in file-name order; columns
  `filename`, `captions` (a Python-literal list) and `sentence_level_captions` (one sentence, may be
  blank). The skipped files are not inputs of this part; `skipped_files` names them for reports.
* `den`: `06_DEN.csv` (`image`, `categories`, `atributes`, the header's own spelling). Categories
  are keywords; those mentioning "year" (in any case) or holding "//" are noise and dropped, each
  kept one becomes a label and a caption (`den_caption`), and a row left with none is filtered.
  This differs from UniMed's part-2 script on purpose, to stay deterministic and noise-free: that
  script writes one caption per row, from the last usable category ("The fundus image of ..."),
  and when every category is noise it captions the row with one of them picked at random.
* `mm_retinal`: `39_MM_Retinal_dataset.csv` (`image`, `caption`).

UniMed's scripts define a list of banned categories (myopia, cataract, macular hole, retinitis
pigmentosa and variants) but never apply it. Here it is applied: a row whose labels or captions
mention a banned term at the start of a word is filtered unless `keep_banned`, since FLAIR's ODIR
test set holds those classes and they must not leak into a pretraining corpus by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unimed_data.layouts.item import (
    Filtered,
    Item,
    ItemError,
    LayoutError,
    RelPath,
    relative_path,
    unique_stripped,
)
from unimed_data.layouts.tabular import optional_cell, parse_str_list, read_csv
from unimed_data.layouts.unimed_paths import CAPTION_SOURCE, PathResolver

DEN_FILE = "06_DEN.csv"
MM_RETINAL_FILE = "39_MM_Retinal_dataset.csv"
SKIPPED_BY_UNIMED = ["01_EYEPACS_revised.csv", "07_LAG_revised.csv", "28_OIA-DDR_revised.csv"]
BANNED_BY_UNIMED = [
    "myopia",
    "cataract",
    "macular hole",
    "retinitis pigmentosa",
    "myopic",
    "myope",
    "myop",
    "retinitis",
]
_NOISY_CATEGORY = ("year", "//")


class UnimedRetinaLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["unimed_retina"]
    part: Literal["flair", "den", "mm_retinal"]
    annotations: RelPath = "Retina-Annotations"
    image_root: RelPath = ""  # image paths are relative to the Retina-Datasets root
    skip: list[str] = Field(default_factory=lambda: list(SKIPPED_BY_UNIMED))
    banned: list[str] = Field(default_factory=lambda: list(BANNED_BY_UNIMED))
    keep_banned: bool = False

    @field_validator("banned")
    @classmethod
    def _no_blank_terms(cls, terms: list[str]) -> list[str]:
        if any(not term.strip() for term in terms):
            raise ValueError("a banned term is blank (it would match every row)")
        return terms


def _folder(layout: UnimedRetinaLayout, dataset_root: Path) -> Path:
    folder = dataset_root / layout.annotations
    if not folder.is_dir():
        raise LayoutError(f"{layout.annotations}: annotation folder not found under {dataset_root}")
    return folder


def _csv_names(layout: UnimedRetinaLayout, dataset_root: Path) -> list[str]:
    """The file names this part reads, in order."""
    if layout.part == "den":
        return [DEN_FILE]
    if layout.part == "mm_retinal":
        return [MM_RETINAL_FILE]
    not_inputs = {DEN_FILE, MM_RETINAL_FILE, *layout.skip}
    names = sorted(path.name for path in _folder(layout, dataset_root).glob("*.csv") if path.is_file())
    return [name for name in names if name not in not_inputs]


def annotation_files(layout: UnimedRetinaLayout, dataset_root: Path) -> list[Path]:
    try:
        names = _csv_names(layout, dataset_root)
    except LayoutError:
        return [dataset_root / layout.annotations]
    return [dataset_root / relative_path(layout.annotations, name) for name in names]


def skipped_files(layout: UnimedRetinaLayout, dataset_root: Path) -> list[str]:
    """The `skip` files present in the annotation folder (paths under the dataset root), which
    `part: flair` leaves out; empty for the other parts, which read one named file."""
    if layout.part != "flair":
        return []
    folder = _folder(layout, dataset_root)
    present = [name for name in sorted(set(layout.skip)) if (folder / name).is_file()]
    return [relative_path(layout.annotations, name) for name in present]


def banned_patterns(terms: list[str]) -> list[tuple[str, re.Pattern[str]]]:
    """Each term as a case-insensitive pattern that must start a word (`myop` finds `myopic`)."""
    patterns = []
    for term in terms:
        words = r"\s+".join(re.escape(word) for word in term.split())
        patterns.append((term, re.compile(rf"(?<!\w){words}", re.IGNORECASE)))
    return patterns


def banned_term(patterns: list[tuple[str, re.Pattern[str]]], texts: list[str]) -> str | None:
    """The first banned term found in any of the texts, else None."""
    for term, pattern in patterns:
        if any(pattern.search(text) for text in texts):
            return term
    return None


def den_caption(category: str) -> str:
    return f"Fundus photograph showing {category}."


@dataclass(frozen=True)
class _Row:
    labels: list[str]
    captions: list[str]
    checked: list[str]  # texts searched for banned terms


def _flair_row(row: dict) -> _Row:
    try:
        captions = parse_str_list(row["captions"])
    except ValueError as exc:
        raise ValueError(f"column 'captions': {exc}") from None
    captions = unique_stripped([*captions, optional_cell(row, "sentence_level_captions") or ""])
    return _Row([], captions, captions)


def _den_row(row: dict) -> _Row:
    """Labels and captions from the usable categories; every category is checked for banned terms."""
    try:
        categories = parse_str_list(row["categories"])
    except ValueError as exc:
        raise ValueError(f"column 'categories': {exc}") from None
    kept = [
        label
        for label in unique_stripped(category.strip("/") for category in categories)
        if not any(noise in label.lower() for noise in _NOISY_CATEGORY)
    ]
    return _Row(kept, [den_caption(label) for label in kept], categories)


def _mm_retinal_row(row: dict) -> _Row:
    caption = optional_cell(row, "caption")
    captions = [caption] if caption else []
    return _Row([], captions, captions)


_PARTS = {
    "flair": ("filename", ["filename", "captions", "sentence_level_captions"], _flair_row),
    "den": ("image", ["image", "categories"], _den_row),
    "mm_retinal": ("image", ["image", "caption"], _mm_retinal_row),
}


def _parse(
    layout: UnimedRetinaLayout,
    resolver: PathResolver,
    banned: list[tuple[str, re.Pattern[str]]],
    where: str,
    row: dict,
) -> Item | ItemError | Filtered:
    image_column, _, read_row = _PARTS[layout.part]
    try:
        raw = optional_cell(row, image_column) or ""
        item_id, relpath = resolver.locate(raw)
    except ValueError as exc:
        return ItemError(None, None, f"{where}: column {image_column!r}: {exc}")
    try:
        parsed = read_row(row)
    except ValueError as exc:
        return ItemError(item_id, relpath, f"{where}: {exc}")
    term = banned_term(banned, parsed.checked)
    if term is not None:
        return Filtered(item_id, f"banned category {term!r} (keep_banned: true keeps it)")
    if not parsed.captions:
        if layout.part == "den":
            return Filtered(item_id, "no usable category (each mentions 'year' or holds '//')")
        return ItemError(item_id, relpath, f"{where}: no caption")
    return Item(
        item_id=item_id,
        source_path=relpath,
        labels=parsed.labels,
        captions=parsed.captions,
        caption_source=CAPTION_SOURCE,
        origin=where,
    )


def iter_items(layout: UnimedRetinaLayout, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    _folder(layout, dataset_root)
    _, required, _ = _PARTS[layout.part]
    resolver = PathResolver(dataset_root, layout.annotations, layout.image_root)
    banned = [] if layout.keep_banned else banned_patterns(layout.banned)
    for name in _csv_names(layout, dataset_root):
        for where, row in read_csv(dataset_root, relative_path(layout.annotations, name), required):
            if isinstance(row, str):
                yield ItemError(None, None, f"{where}: {row}")
            else:
                yield _parse(layout, resolver, banned, where, row)
