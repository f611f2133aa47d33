"""UniMed's OpenI caption files: `filter_cap.json` plus `openai_refined_concepts.json`.

`filter_cap.json` is `{"annotations": [{"image_id": "CXR1_1_IM-0001-3001", "caption": "..."}, ...]}`
(the image is `<image_dir>/<image_id>.png`); `openai_refined_concepts.json` is
`{"refined_captions": [["...", "..."], ...]}`. The two lists carry no shared key: UniMed pairs them
by position, so they must have the same length, and a mismatch stops the dataset rather than
pairing captions with the wrong images. The original caption is kept as `report`; `captions` picks
the original, the refined list, or both. Both files are small (a few thousand entries) and are
read whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict

from unimed_data.layouts.item import Item, ItemError, LayoutError, RelPath, unique_stripped
from unimed_data.layouts.tabular import annotation_file
from unimed_data.layouts.unimed_paths import CAPTION_SOURCE, PathResolver


class UnimedOpenILayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["unimed_openi"]
    annotations: RelPath = "filter_cap.json"
    refined: RelPath = "openai_refined_concepts.json"
    image_dir: RelPath = "image"
    captions: Literal["original", "refined", "both"] = "both"


def annotation_files(layout: UnimedOpenILayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.annotations, dataset_root / layout.refined]


def load_list(dataset_root: Path, relpath: str, key: str) -> list:
    """The list under `key` of the file's top-level JSON object."""
    path = annotation_file(dataset_root, relpath)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{relpath}: not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise LayoutError(f"{relpath}:{exc.lineno}: invalid JSON at column {exc.colno} ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise LayoutError(f"{relpath}: expected a JSON object with a list under {key!r}")
    return data[key]


def _original(entry: object) -> tuple[str, str | None]:
    """(image_id, caption or None when blank); ValueError when the entry is malformed."""
    if not isinstance(entry, dict):
        raise ValueError("expected a JSON object")
    image_id = entry.get("image_id")
    if not isinstance(image_id, str) or not image_id.strip():
        raise ValueError("no image id in key 'image_id'")
    caption = entry.get("caption")
    if not isinstance(caption, str):
        raise ValueError("key 'caption' is not a string")
    return image_id.strip(), caption.strip() or None


def _refined(entry: object) -> list[str]:
    if not isinstance(entry, list) or not all(isinstance(text, str) for text in entry):
        raise ValueError("expected a list of strings")
    return unique_stripped(entry)


def _texts(layout: UnimedOpenILayout, original: str | None, refined: list[str]) -> list[str]:
    chosen = {"original": [original], "refined": refined, "both": [original, *refined]}[layout.captions]
    return unique_stripped(text for text in chosen if text)


def iter_items(layout: UnimedOpenILayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    originals = load_list(dataset_root, layout.annotations, "annotations")
    refined_lists = load_list(dataset_root, layout.refined, "refined_captions")
    if len(originals) != len(refined_lists):
        raise LayoutError(
            f"{layout.annotations} has {len(originals)} annotations but {layout.refined} has "
            f"{len(refined_lists)} refined caption lists; they are paired by position, so they must match"
        )
    folder = PurePosixPath(layout.annotations).parent.as_posix()
    resolver = PathResolver(dataset_root, folder, layout.image_dir)
    for index, (entry, refined_entry) in enumerate(zip(originals, refined_lists, strict=True)):
        where = f"{layout.annotations}: entry {index}"
        try:
            image_id, original = _original(entry)
            item_id, relpath = resolver.locate(f"{image_id}.png")
        except ValueError as exc:
            yield ItemError(None, None, f"{where}: {exc}")
            continue
        try:
            refined = _refined(refined_entry)
        except ValueError as exc:
            yield ItemError(item_id, relpath, f"{layout.refined}: entry {index}: {exc}")
            continue
        texts = _texts(layout, original, refined)
        if not texts:
            yield ItemError(item_id, relpath, f"{where}: no caption")
            continue
        yield Item(
            item_id=item_id,
            source_path=relpath,
            report=original,
            captions=texts,
            caption_source=CAPTION_SOURCE,
            origin=where,
        )
