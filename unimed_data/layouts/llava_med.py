"""LLaVA-Med (Li et al. 2023) figure-caption data: one JSON array of conversations per file.

`mode: alignment` reads `llava_med_alignment_500k.json`: entries `{"id", "image", "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "<caption>"}]}`; the caption
is the first `gpt` turn. `mode: instruct` reads the instruct files
(`llava_med_instruct_fig_captions.json`, `llava_med_instruct_60k_inline_mention.json`, ...): entries
also carry `pair_id` and `fig_caption` (or only `fig_label`); the caption is `fig_caption` when it
is a non-blank string, else the first `gpt` turn. `<image>` tokens and surrounding whitespace are
stripped from captions. The item id is the entry's `id` (the image path when it has none); a
repeated id is an `ItemError` naming the line of its first occurrence.

The file is one JSON array, so it is read into memory as text (hundreds of MB for the 500k file),
but entries are decoded and yielded one at a time, each tagged with the line it starts on. Broken
JSON syntax cannot be resynchronised and is a `LayoutError`; a well-formed entry with bad content is
an `ItemError` naming `file:line`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unimed_data.layouts.item import Item, ItemError, LayoutError, RelPath, relative_path
from unimed_data.layouts.tabular import annotation_file

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_IMAGE_TOKEN = re.compile(r"<image>")


class LlavaMedLayout(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    type: Literal["llava_med"]
    # Written `json:` in manifests; a field named `json` would shadow `BaseModel.json`.
    json_file: RelPath = Field(alias="json")
    image_dir: RelPath = ""  # the entries' `image` paths are relative to it
    mode: Literal["alignment", "instruct"] = "alignment"


def annotation_files(layout: LlavaMedLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.json_file]


def iter_json_array(dataset_root: Path, relpath: str) -> Iterator[tuple[str, object]]:
    """Yield (`file:line`, value) for each element of a top-level JSON array, decoding one at a time."""
    path = annotation_file(dataset_root, relpath)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{relpath}: not UTF-8 text ({exc})") from exc
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, 0).end()
    if text[pos : pos + 1] != "[":
        raise LayoutError(f"{relpath}: expected a JSON array of entries")
    pos = _WHITESPACE.match(text, pos + 1).end()
    line, counted = 1, 0
    if text[pos : pos + 1] == "]":
        pos = _WHITESPACE.match(text, pos + 1).end()
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise LayoutError(
                    f"{relpath}:{exc.lineno}: invalid JSON at column {exc.colno} ({exc.msg})"
                ) from None
            line += text.count("\n", counted, pos)
            counted = pos
            yield f"{relpath}:{line}", value
            pos = _WHITESPACE.match(text, end).end()
            separator = text[pos : pos + 1]
            pos = _WHITESPACE.match(text, pos + 1).end()
            if separator == "]":
                break
            if separator != ",":
                line += text.count("\n", counted, end)
                raise LayoutError(f"{relpath}:{line}: expected ',' or ']' after an array entry")
    if pos != len(text):
        raise LayoutError(f"{relpath}: unexpected data after the JSON array")


def clean_caption(value: str) -> str:
    return _IMAGE_TOKEN.sub(" ", value).strip()


def first_gpt_turn(entry: dict) -> str:
    conversations = entry.get("conversations")
    if not isinstance(conversations, list):
        raise ValueError("key 'conversations' is not a list")
    for turn in conversations:
        if not isinstance(turn, dict):
            raise ValueError("a conversation turn is not an object")
        if turn.get("from") == "gpt":
            value = turn.get("value")
            if not isinstance(value, str):
                raise ValueError("the first gpt turn has no string 'value'")
            return clean_caption(value)
    raise ValueError("no gpt turn in 'conversations'")


def _caption(layout: LlavaMedLayout, entry: dict) -> str:
    if layout.mode == "instruct":
        fig_caption = entry.get("fig_caption")
        if isinstance(fig_caption, str) and clean_caption(fig_caption):
            return clean_caption(fig_caption)
    caption = first_gpt_turn(entry)
    if not caption:
        raise ValueError("empty caption")
    return caption


def iter_items(layout: LlavaMedLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    first_seen: dict[str, str] = {}
    for where, entry in iter_json_array(dataset_root, layout.json_file):
        if not isinstance(entry, dict):
            yield ItemError(None, None, f"{where}: expected a JSON object")
            continue
        image = entry.get("image")
        if not isinstance(image, str) or not image.strip():
            yield ItemError(None, None, f"{where}: no image path in key 'image'")
            continue
        try:
            relpath = relative_path(layout.image_dir, image.strip())
        except ValueError as exc:
            yield ItemError(None, None, f"{where}: key 'image': {exc}")
            continue
        raw_id = entry.get("id")
        item_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else relpath
        if item_id in first_seen:
            yield ItemError(
                item_id, relpath, f"{where}: duplicate id {item_id!r}, first at {first_seen[item_id]}"
            )
            continue
        first_seen[item_id] = where
        try:
            caption = _caption(layout, entry)
        except ValueError as exc:
            yield ItemError(item_id, relpath, f"{where}: {exc}")
            continue
        yield Item(item_id=item_id, source_path=relpath, captions=[caption], origin=where)
