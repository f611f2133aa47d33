"""Token counters for caption length budgets: a caption longer than the text encoder's context
is cut in training, so the LLM backend rejects it instead.

* `clip`: the exact count of open_clip's CLIP BPE tokenizer, start and end tokens included
  (budget 77), when `open_clip` is importable (the `train` extra); otherwise the `words`
  estimate, so the core install needs no torch.
* `words`: a conservative estimate of the CLIP count without any tokenizer (see
  `estimate_clip_tokens`).
* `hf:<path>`: a Hugging Face tokenizer loaded from a local folder (or the local HF cache) with
  `transformers`, special tokens included; for BiomedBERT-style text encoders (budget 256).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

CLIP_CONTEXT_LENGTH = 77
HF_BUDGET = 256

# CLIP's pre-tokenizer pieces: contractions, runs of letters, single digits, runs of other symbols.
_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


class TokenCounter:
    """A callable `text -> token count`, with what it is: `name` (`clip:open_clip`,
    `clip:estimate`, `words`, `hf:<path>`) and `exact` (False for the estimate)."""

    def __init__(self, name: str, exact: bool, count: Callable[[str], int]):
        self.name = name
        self.exact = exact
        self._count = count

    def __call__(self, text: str) -> int:
        return self._count(text)

    def __repr__(self) -> str:
        return f"TokenCounter({self.name!r}, exact={self.exact})"


def make_token_counter(kind: str) -> TokenCounter:
    """A token counter: `clip`, `words` or `hf:<local path or cached name>` (see the module doc)."""
    if kind == "clip":
        encode = _open_clip_encoder()
        if encode is None:
            return TokenCounter("clip:estimate", False, estimate_clip_tokens)
        return TokenCounter("clip:open_clip", True, lambda text: len(encode(text)) + 2)
    if kind == "words":
        return TokenCounter("words", False, estimate_clip_tokens)
    if kind.startswith("hf:") and kind[3:].strip():
        path = kind[3:].strip()
        tokenizer = _hf_tokenizer(path)
        return TokenCounter(f"hf:{path}", True, lambda text: len(tokenizer(text, verbose=False)["input_ids"]))
    raise ValueError(f"unknown token counter {kind!r} (available: clip, words, hf:<path>)")


def default_token_budget(kind: str) -> int:
    """The usual context of the text encoder a counter kind stands for: 77 for CLIP, 256 for hf."""
    return HF_BUDGET if kind.startswith("hf:") else CLIP_CONTEXT_LENGTH


def estimate_clip_tokens(text: str) -> int:
    """A conservative estimate of the CLIP BPE count (start and end tokens included), never below
    the real count on medical captions in the tests: the text is cut into CLIP's pre-tokenizer
    pieces, and each run of ASCII letters counts one token per 3 letters (rounded up; CLIP's BPE
    splits rare medical words into pieces of about 3-5 letters), an all-capital abbreviation
    one token per letter but the last (`NGT` -> 2, `LVEF` -> 3), every other piece one token per
    UTF-8 byte (digits are single tokens in CLIP; symbols and accented letters are byte-level).
    On ordinary medical captions it is about 1.3x the real count.
    """
    total = 2
    for piece in _PIECES.findall(text):
        if piece.isascii() and piece.isalpha():
            if len(piece) > 1 and piece.isupper():
                total += len(piece) - 1
            else:
                total += math.ceil(len(piece) / 3)
        else:
            total += len(piece.encode("utf-8"))
    return total


@cache
def _open_clip_encoder() -> Callable[[str], list[int]] | None:
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError:  # no `train` extra (open_clip, torch): the estimate stands in
        return None
    return SimpleTokenizer().encode


def _hf_tokenizer(path: str):
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ValueError(f"token counter hf:{path} needs transformers (the train extra)") from exc
    folder = Path(path).expanduser()
    if path.startswith(("/", ".", "~")) and not folder.is_dir():  # a path, not a cached hub name
        raise ValueError(f"tokenizer folder {path} does not exist")
    try:
        return AutoTokenizer.from_pretrained(str(folder) if folder.is_dir() else path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the tokenizer {path!r} from local files: {exc}") from exc
