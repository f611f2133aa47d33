"""PMC-OA (Lin et al. 2023, PMC-CLIP): subfigure-caption pairs from PubMed Central, as JSON Lines.

The release has `pmc_oa.jsonl` (everything) and `train.jsonl` / `valid.jsonl` / `test.jsonl`, one
object per line such as `{"image": "PMC212319_Fig3_4.jpg", "caption": "..."}`; the images lie flat in
`caption_T060_filtered_top4_sep_v0_subfigures/`. Files are streamed line by line; captions are kept
as written. Other keys on a line are ignored. The item id is the image path, so listing both
`pmc_oa.jsonl` and a split file reports the overlap as duplicates at ingest.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unimed_data.layouts.item import Item, ItemError, RelPath, relative_path
from unimed_data.layouts.tabular import parse_rows, read_jsonl

DEFAULT_IMAGE_DIR = "caption_T060_filtered_top4_sep_v0_subfigures"


class PmcOaPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jsonl: RelPath  # e.g. train.jsonl
    split: str | None = None  # e.g. train, valid, test; None for pmc_oa.jsonl (split assigned later)


class PmcOaLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["pmc_oa"]
    parts: list[PmcOaPart] = Field(min_length=1)
    image_dir: RelPath = DEFAULT_IMAGE_DIR  # the `image` names are relative to it


def annotation_files(layout: PmcOaLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / part.jsonl for part in layout.parts]


def _parse_line(layout: PmcOaLayout, part: PmcOaPart, where: str, row: dict) -> Item | ItemError:
    image = row.get("image")
    if not isinstance(image, str) or not image.strip():
        return ItemError(None, None, f"{where}: no image name in key 'image'")
    try:
        relpath = relative_path(layout.image_dir, image.strip())
    except ValueError as exc:
        return ItemError(None, None, f"{where}: key 'image': {exc}")
    caption = row.get("caption")
    if not isinstance(caption, str):
        kind = "missing" if caption is None else f"not a string ({type(caption).__name__})"
        return ItemError(relpath, relpath, f"{where}: key 'caption': {kind}")
    if not caption.strip():
        return ItemError(relpath, relpath, f"{where}: empty caption")
    return Item(
        item_id=relpath, source_path=relpath, captions=[caption.strip()], split=part.split, origin=where
    )


def iter_items(layout: PmcOaLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    for part in layout.parts:
        rows = read_jsonl(dataset_root, part.jsonl)
        yield from parse_rows(rows, partial(_parse_line, layout, part))
