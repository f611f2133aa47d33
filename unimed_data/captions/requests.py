"""What the `openai` backend sends for a unit: chat messages, the cache key of their answer, and the
request body. `RequestBuilder` asks for a unit's captions, `ClassPromptRequests` for the zero-shot
prompts of an evaluation set's class (`unimed-data prompts`).

The cache key covers everything that decides an answer (model, sampling, validation parameters,
prompt templates and the rendered messages), so a changed setting asks again and an unchanged one
reuses the stored answer. The dataset hints are not part of it: they reach the answer only through
the messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unimed_data.captions.base import CaptionUnit
from unimed_data.captions.cache import cache_key
from unimed_data.captions.prompts import PromptBuilder

if TYPE_CHECKING:
    from unimed_data.config import LLMConfig


@dataclass(frozen=True)
class DatasetHints:
    """What the prompts and the validation know of a dataset from its manifest."""

    definitions: dict[str, str] = field(default_factory=dict)
    raw_label_ids: tuple[str, ...] = ()


class RequestBuilder:
    """The messages and cache key of each unit, for one model, prompt folder and caption count."""

    def __init__(self, settings: LLMConfig, *, per_record: int, templates_dir: Path | None):
        self.settings = settings
        self.per_record = per_record
        self.prompts = PromptBuilder(templates_dir)

    @property
    def answer_identity(self) -> dict:
        """What decides one answer besides its prompt: part of every cache key."""
        s = self.settings
        return {
            "backend": "openai",
            "model": s.model,
            "temperature": s.temperature,
            "seed": s.seed,
            "max_tokens": s.max_tokens,
            "token_budget": s.token_budget,
            "tokenizer": s.tokenizer,
            "per_record": self.per_record,
            "prompts": self.prompts.identity,
        }

    def request(self, unit: CaptionUnit, hints: DatasetHints) -> tuple[str, list[dict]]:
        """The cache key and chat messages of a unit (`prompts.NothingToCaption` when it has none)."""
        messages = self.prompts.messages(unit, self.per_record, hints.definitions)
        return cache_key({"identity": self.answer_identity, "messages": messages}), messages


class ClassPromptRequests(RequestBuilder):
    """The messages and cache key asking for the zero-shot prompts of one class of an evaluation
    set. The unit's one label is the class as a reader words it; `classes` are all the set's
    classes, so the descriptions can tell them apart."""

    def __init__(self, settings: LLMConfig, *, per_record: int, classes: list[str]):
        super().__init__(settings, per_record=per_record, templates_dir=None)
        self.classes = list(classes)

    @property
    def answer_identity(self) -> dict:
        """The caption identity with the class prompts template's digest: no caption answer
        matches a class prompts key."""
        return {
            **super().answer_identity,
            "prompts": self.prompts.class_prompts_identity,
            "task": "class prompts",
        }

    def request(self, unit: CaptionUnit, hints: DatasetHints) -> tuple[str, list[dict]]:
        (wording,) = unit.labels
        messages = self.prompts.class_messages(unit.modality, wording, self.classes, self.per_record)
        return cache_key({"identity": self.answer_identity, "messages": messages}), messages


def request_body(settings: LLMConfig, messages: list[dict], *, structured: bool) -> dict:
    """A chat completion request; `structured` asks for JSON mode (`response_format`)."""
    body = {
        "model": settings.model,
        "messages": messages,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    if settings.seed is not None:
        body["seed"] = settings.seed
    if structured:
        body["response_format"] = {"type": "json_object"}
    return body


def reask(messages: list[dict], answer: str, reason: str) -> list[dict]:
    """The conversation that asks again after an invalid answer, saying why it was invalid."""
    return [
        *messages,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": f"That answer is invalid: {reason}. Answer again, only the JSON."},
    ]
