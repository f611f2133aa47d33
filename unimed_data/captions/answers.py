"""Reading an LLM's caption answer: find the JSON, check the captions, or say briefly why not.

Models wrap JSON in code fences or prose, return a bare list, or name the key differently; the
parser accepts those shapes and then holds the captions to the request: the right number, none
empty, no duplicates, each within the text encoder's token budget, and no raw label id or
dataset slug leaking into the text. A failure is an `InvalidAnswer` whose message is short
enough for the errors table (and for a retry prompt).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping

_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)```", re.DOTALL)
_OPENERS = re.compile(r"[\[{]")
_MAX_SCANS = 200  # JSON start candidates tried in prose before giving up
_TRAILING = " \t.!;:"
_ID_CHARS = re.compile(r"[^\W\d_]")  # a letter
_WORDY = re.compile(r"^[^\W\d_]+(?:[ '\-][^\W\d_]+)*$")  # words of letters, spaces, hyphens, apostrophes


class InvalidAnswer(Exception):
    """The model's answer is unusable; `str(exc)` (also `exc.reason`) says why, in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_captions(
    text: str,
    *,
    count: int,
    exact: bool,
    token_budget: int,
    count_tokens: Callable[[str], int],
    forbidden: Iterable[str],
) -> list[str]:
    """The captions in `text`, in the model's order, each stripped with whitespace collapsed.

    Accepted shapes: `{"captions": [...]}`, a bare JSON list, or an object with exactly one list
    value, alone or inside ``` fences or prose; list items are strings (or objects with one
    string value). `exact=True` (label units) requires exactly `count` captions, `exact=False`
    (report findings) 1 to `count`. `forbidden` holds raw ids (`Pleural_Effusion`, `class_3`,
    the dataset slug) that no caption may contain as a whole token (case-sensitive).
    Raises `InvalidAnswer` with a short reason.
    """
    captions = [" ".join(item.split()) for item in _caption_items(text)]
    if any(not caption for caption in captions):
        raise InvalidAnswer("empty caption")
    n = len(captions)
    if exact and n != count:
        raise InvalidAnswer(f"expected {count} captions, got {n}")
    if not exact and n == 0:
        raise InvalidAnswer("no captions")
    if not exact and n > count:
        raise InvalidAnswer(f"expected at most {count} captions, got {n}")
    keys = [caption.casefold().rstrip(_TRAILING) for caption in captions]
    if len(set(keys)) != len(keys):
        raise InvalidAnswer("duplicate captions")
    for caption in captions:
        tokens = count_tokens(caption)
        if tokens > token_budget:
            raise InvalidAnswer(f"caption over the {token_budget}-token budget ({tokens} tokens)")
    for ident in dict.fromkeys(i for i in forbidden if i and i.strip()):
        pattern = re.compile(rf"(?<!\w){re.escape(ident)}(?!\w)")
        if any(pattern.search(caption) for caption in captions):
            raise InvalidAnswer(f"caption leaks a label id: {ident!r}")
    return captions


def leak_ids(classes: Mapping[str, str], *datasets: str) -> list[str]:
    """The raw ids worth passing as `forbidden`: raw labels that read like code, not like words
    (they hold a letter and an underscore, digit or other symbol: `Pleural_Effusion`, `class_3`,
    `DR-2`), differ from their readable name and occur in no readable name (`COVID-19` mapped to
    `COVID-19 pneumonia` stays allowed); plus the dataset names and slugs given that read like
    code (`chexpert-v1.0-small`, `chexpert-v1-0-small`, not `refuge`). Plain words (`Edema` -> `pulmonary edema`) are left
    out: they are ordinary words in a caption.
    """
    readable_text = " ".join(classes.values()).casefold()
    ids = [
        raw
        for raw, readable in classes.items()
        if _code_like(raw) and raw != readable and raw.casefold() not in readable_text
    ]
    ids.extend(name for name in datasets if name and _code_like(name))
    return list(dict.fromkeys(ids))


def _code_like(ident: str) -> bool:
    ident = ident.strip()
    return bool(_ID_CHARS.search(ident)) and not _WORDY.match(ident)


def _caption_items(text: str) -> list[str]:
    """The list of caption strings in the answer, or InvalidAnswer."""
    if not text or not text.strip():
        raise InvalidAnswer("empty answer")
    found_json = False
    malformed: list | None = None
    for value in _json_values(text):
        found_json = True
        items = _list_of(value)
        if items is None:
            continue
        strings = [_as_string(item) for item in items]
        if all(s is not None for s in strings):
            return strings  # type: ignore[return-value]
        if malformed is None:
            malformed = items
    if malformed is not None:
        raise InvalidAnswer("captions are not all strings")
    raise InvalidAnswer("no captions list in the JSON" if found_json else "not valid JSON")


def _json_values(text: str):
    """JSON values in the answer, most likely first: fenced blocks, the whole text, then values
    starting at each `{` or `[` of the text (prose around the JSON)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    candidates.append(text)
    decoder = json.JSONDecoder()
    for candidate in candidates:
        candidate = candidate.strip()
        try:
            yield json.loads(candidate)
            continue
        except ValueError:
            pass
        for scans, match in enumerate(_OPENERS.finditer(candidate)):
            if scans >= _MAX_SCANS:
                break
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except ValueError:
                continue
            yield value


def _list_of(value) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("captions"), list):
            return value["captions"]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def _as_string(item) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and len(item) == 1:
        (only,) = item.values()
        if isinstance(only, str):
            return only
    return None
