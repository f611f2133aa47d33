"""What the fake server reads from a chat request and the captions it answers by default.

Default responder: the wanted count N comes from a line `COUNT: N` in the most recent user message
that has one (else 5); the subject from a `SUBJECT:` or `FINDINGS...:` line of that message (e.g.
`Findings (present): cardiomegaly`), else the first six words of its first other line, without a
short `Label:` prefix. The answer is `{"captions": [N distinct short sentences about the subject]}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

Responder = Callable[[dict], Any]  # a chat request body -> its content (a str, or JSON-dumped)


def message_text(message: Any) -> str:
    """The text of one chat message (string content, or the text parts of a content list)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def user_texts(body: Any) -> list[str]:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return []
    return [message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]


def last_user_text(body: Any) -> str:
    texts = user_texts(body)
    return texts[-1] if texts else ""


_COUNT_LINE = re.compile(r"^\s*COUNT\s*:\s*(\d+)\s*$", re.MULTILINE | re.IGNORECASE)
_SUBJECT_LINE = re.compile(
    r"^\s*(?:SUBJECT|FINDINGS)\b[^:\n]{0,20}:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE
)
_OPENERS = (
    "An image showing",
    "A medical image of",
    "Findings consistent with",
    "This scan shows",
    "A picture depicting",
    "Imaging that reveals",
    "A study demonstrating",
    "A view of",
)


def default_captions(prompt: str, count: int) -> list[str]:
    """`count` distinct short sentences about the prompt's subject."""
    found = _SUBJECT_LINE.search(prompt)
    if found:
        subject = found.group(1)
    else:
        lines = [ln for ln in _COUNT_LINE.sub("", prompt).splitlines() if ln.strip()]
        first = lines[0] if lines else ""
        label, colon, rest = first.partition(":")
        if colon and len(label.split()) <= 3:  # "Image: an X-ray image" -> "an X-ray image"
            first = rest
        subject = " ".join(re.findall(r"[A-Za-z][A-Za-z'-]*", first)[:6])
    subject = " ".join(subject.split()).rstrip(".") or "a medical finding"
    out = []
    for i in range(count):
        opener = _OPENERS[i % len(_OPENERS)]
        variant = "" if i < len(_OPENERS) else f", view {i // len(_OPENERS) + 1}"
        out.append(f"{opener} {subject}{variant}.")
    return out


def captions_json(captions: Sequence[str]) -> str:
    """The content of a caption answer: `{"captions": [...]}`."""
    return json.dumps({"captions": list(captions)})


def default_responder(body: dict) -> str:
    texts = user_texts(body)
    prompt = next((t for t in reversed(texts) if _COUNT_LINE.search(t)), texts[-1] if texts else "")
    found = _COUNT_LINE.search(prompt)
    return captions_json(default_captions(prompt, int(found.group(1)) if found else 5))
