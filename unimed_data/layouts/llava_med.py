"""LLaVA-Med (Li et al. 2023) figure-caption data, including UniMed's filtered copies of it.

`mode: alignment` reads `llava_med_alignment_500k.json` (and UniMed's
`llava_med_alignment_500k_filtered.json`, same shape): a JSON array of entries `{"id", "image",
"conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "<caption>"}]}`;
the caption is the first `gpt` turn.

`mode: instruct` reads the instruct files (`llava_med_instruct_60k_inline_mention.json`, ...): a
JSON array of entries that also carry `pair_id` and `fig_caption` (or only `fig_label`). UniMed's
`llava_med_instruct_fig_captions.json` is instead a JSON object whose values are arrays of entries
`{"pair_id", "fig_caption", "in_text_mention": [{"tokens": ...}, ...] | null, ...}` with no
`image` (the image is `<pair_id>.jpg`); both shapes are read. The captions are the figure caption
and the first inline mention, blanks dropped, as one item (UniMed's script wrote each image twice,
once per kind); with neither, the first `gpt` turn.

`<image>` tokens and surrounding whitespace are stripped from captions. The item id is the entry's
`id` (the image path when it has none); a repeated id, or in instruct mode a repeated `pair_id`, is
an `ItemError` naming the line of its first occurrence. `caption_source` marks the captions' origin
in the records (e.g. `unimed`); unset, they are `original`.

The file is read into memory as text (hundreds of MB for the 500k file), but entries are decoded and
yielded one at a time, each tagged with the line it starts on. Broken JSON syntax cannot be
resynchronised and is a `LayoutError`; a well-formed entry with bad content is an `ItemError`
naming `file:line`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from unimed_data.layouts.item import Item, ItemError, LayoutError, RelPath, relative_path, unique_stripped
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
    caption_source: str | None = None  # e.g. `unimed` for UniMed's filtered files; None means `original`


def annotation_files(layout: LlavaMedLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / layout.json_file]


class _JsonStream:
    """Walks a JSON text one value at a time, counting lines so that messages can name them."""

    def __init__(self, text: str, relpath: str):
        self.text, self.relpath = text, relpath
        self.pos, self._line, self._counted = 0, 1, 0
        self._decoder = json.JSONDecoder()
        self.skip()

    def line(self) -> int:
        """The line of the current position (positions only move forward)."""
        self._line += self.text.count("\n", self._counted, self.pos)
        self._counted = self.pos
        return self._line

    def skip(self) -> None:
        self.pos = _WHITESPACE.match(self.text, self.pos).end()

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def fail(self, message: str, line: int | None = None) -> LayoutError:
        return LayoutError(f"{self.relpath}:{line or self.line()}: {message}")

    def decode(self) -> object:
        try:
            value, self.pos = self._decoder.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise LayoutError(
                f"{self.relpath}:{exc.lineno}: invalid JSON at column {exc.colno} ({exc.msg})"
            ) from None
        return value

    def close(self, closing: str, what: str, line: int) -> bool:
        """Step over the `,` (and the space after it) or the `closing` that follows an element, which
        ended on `line`; True when it was `closing`."""
        self.skip()
        separator = self.peek()
        if separator not in (",", closing):
            raise self.fail(f"expected ',' or '{closing}' after {what}", line)
        self.pos += 1
        if separator == closing:
            return True
        self.skip()
        return False

    def elements(self) -> Iterator[tuple[str, object]]:
        """(`file:line`, value) for each element of the array that starts here."""
        self.pos += 1
        self.skip()
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            where = f"{self.relpath}:{self.line()}"
            value = self.decode()
            end_line = self.line()
            yield where, value
            if self.close("]", "an array entry", end_line):
                return

    def members(self) -> Iterator[tuple[str, object]]:
        """The elements of every array value of the object that starts here, in order."""
        self.pos += 1
        self.skip()
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise self.fail("expected a quoted key")
            key = self.decode()
            self.skip()
            if self.peek() != ":":
                raise self.fail(f"expected ':' after key {key!r}")
            self.pos += 1
            self.skip()
            if self.peek() != "[":
                raise self.fail(f"key {key!r}: expected a JSON array of entries")
            yield from self.elements()
            if self.close("}", f"the entries of key {key!r}", self.line()):
                return


def iter_json_entries(
    dataset_root: Path, relpath: str, *, grouped: bool = False
) -> Iterator[tuple[str, object]]:
    """Yield (`file:line`, value) for each entry of a top-level JSON array, decoding one at a time;
    with `grouped`, a top-level object whose values are such arrays is read too, key after key."""
    path = annotation_file(dataset_root, relpath)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{relpath}: not UTF-8 text ({exc})") from exc
    stream = _JsonStream(text, relpath)
    if stream.peek() == "[":
        kind = "array"
        yield from stream.elements()
    elif stream.peek() == "{" and grouped:
        kind = "object"
        yield from stream.members()
    else:
        also = ", or an object of such arrays" if grouped else ""
        raise LayoutError(f"{relpath}: expected a JSON array of entries{also}")
    stream.skip()
    if stream.pos != len(text):
        raise LayoutError(f"{relpath}: unexpected data after the JSON {kind}")


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


def inline_mention(entry: dict) -> str:
    """The first inline mention's text (UniMed's second caption kind), or "" when there is none."""
    mentions = entry.get("in_text_mention")
    if not mentions:
        return ""
    if not isinstance(mentions, list) or not isinstance(mentions[0], dict):
        raise ValueError("key 'in_text_mention' is not a list of objects")
    tokens = mentions[0].get("tokens")
    if not isinstance(tokens, str):
        raise ValueError("the first 'in_text_mention' has no string 'tokens'")
    return clean_caption(tokens)


def _captions(layout: LlavaMedLayout, entry: dict) -> list[str]:
    if layout.mode == "instruct":
        fig_caption = entry.get("fig_caption")
        fig_caption = clean_caption(fig_caption) if isinstance(fig_caption, str) else ""
        captions = unique_stripped([fig_caption, inline_mention(entry)])
        if captions:
            return captions
        if "conversations" not in entry:
            raise ValueError("no caption in 'fig_caption', 'in_text_mention' or 'conversations'")
    caption = first_gpt_turn(entry)
    if not caption:
        raise ValueError("empty caption")
    return [caption]


def _image(layout: LlavaMedLayout, entry: dict) -> str:
    """The entry's image path, relative to the dataset root; instruct entries without `image`
    name it by `pair_id` (`<pair_id>.jpg`), as UniMed's instruct file does."""
    image = entry.get("image")
    key = "image"
    if (not isinstance(image, str) or not image.strip()) and layout.mode == "instruct":
        pair_id = entry.get("pair_id")
        image = f"{pair_id.strip()}.jpg" if isinstance(pair_id, str) and pair_id.strip() else None
        key = "pair_id"
    if not isinstance(image, str) or not image.strip():
        keys = "'image' or 'pair_id'" if layout.mode == "instruct" else "'image'"
        raise ValueError(f"no image path in key {keys}")
    try:
        return relative_path(layout.image_dir, image.strip())
    except ValueError as exc:
        raise ValueError(f"key {key!r}: {exc}") from None


def _identities(layout: LlavaMedLayout, entry: dict, relpath: str) -> tuple[str, list[tuple[str, str]]]:
    """The item id (the entry's `id`, else its image path) and the (key, value) pairs that must not
    repeat: the instruct `pair_id` (one figure listed twice would be two copies of one image), then the id."""
    raw_id = entry.get("id")
    item_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else relpath
    pair_id = entry.get("pair_id")
    identities = [("id", item_id)]
    if layout.mode == "instruct" and isinstance(pair_id, str) and pair_id.strip():
        identities.insert(0, ("pair_id", pair_id.strip()))
    return item_id, identities


def iter_items(layout: LlavaMedLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    first_seen: dict[tuple[str, str], str] = {}
    grouped = layout.mode == "instruct"
    for where, entry in iter_json_entries(dataset_root, layout.json_file, grouped=grouped):
        if not isinstance(entry, dict):
            yield ItemError(None, None, f"{where}: expected a JSON object")
            continue
        try:
            relpath = _image(layout, entry)
        except ValueError as exc:
            yield ItemError(None, None, f"{where}: {exc}")
            continue
        item_id, identities = _identities(layout, entry, relpath)
        repeated = next((identity for identity in identities if identity in first_seen), None)
        if repeated is not None:
            name, value = repeated
            reason = f"{where}: duplicate {name} {value!r}, first at {first_seen[repeated]}"
            yield ItemError(item_id, relpath, reason)
            continue
        first_seen.update(dict.fromkeys(identities, where))
        try:
            captions = _captions(layout, entry)
        except ValueError as exc:
            yield ItemError(item_id, relpath, f"{where}: {exc}")
            continue
        yield Item(
            item_id=item_id,
            source_path=relpath,
            captions=captions,
            caption_source=layout.caption_source,
            origin=where,
        )
