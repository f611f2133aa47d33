"""The `openai` caption backend: any OpenAI-compatible endpoint through the official SDK.

One request per caption unit, at most `concurrency` in flight (or one Batch API job, `batch.py`).
The client (`client.py`) retries transport problems; answers that fail validation (not JSON, wrong
count, empty or duplicate captions, over the token budget, leaking a raw label id) are asked again
with the reason, a bounded number of times; a unit that still fails ends as a `CaptionFailure` with
the reason. Every accepted answer is cached on disk before it is used, so a rerun or a run after a
crash makes no call for it. The API key is read from the environment variable the settings name,
and never logged, cached or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import openai

from unimed_data.captions.accounting import Usage
from unimed_data.captions.answers import InvalidAnswer, parse_captions
from unimed_data.captions.base import CaptionFailure, CaptionUnit
from unimed_data.captions.batch import run_batch
from unimed_data.captions.cache import CaptionCache
from unimed_data.captions.client import CallFailed, ChatClient
from unimed_data.captions.planning import dry_run_report, pilot_units
from unimed_data.captions.prompts import NothingToCaption
from unimed_data.captions.requests import DatasetHints, RequestBuilder, reask
from unimed_data.captions.tokens import make_token_counter
from unimed_data.config import LLMConfig


class OpenAICaptioner:
    def __init__(
        self,
        settings: LLMConfig,
        *,
        cache_path: Path,
        per_record: int = 10,
        templates_dir: Path | None = None,
        hints: dict[str, DatasetHints] | None = None,
        limit: int | None = None,
        requests: RequestBuilder | None = None,
    ):
        """`requests` decides what a unit asks for: its captions (by default, from `per_record` and
        `templates_dir`), or an evaluation class's prompts (`ClassPromptRequests`)."""
        self.settings = settings
        self.limit = limit
        self.hints = hints or {}
        self.requests = requests or RequestBuilder(
            settings, per_record=per_record, templates_dir=templates_dir
        )
        self.cache_path = cache_path
        self.count_tokens: Callable[[str], int] = make_token_counter(settings.tokenizer)
        self.usage = Usage()
        self.client = ChatClient(settings, self.usage)
        self.source = f"llm:{settings.model}"
        self.pilot: frozenset[CaptionUnit] | None = None  # the units a --limit run captions

    @property
    def identity(self) -> dict:
        """What decides this run's captions, for the caption stage's stamp: the answer identity,
        the manifests' hints (definitions) and the pilot selection."""
        hints = sorted((name, vars(h)) for name, h in self.hints.items())
        pilot = sorted(map(repr, self.pilot)) if self.pilot is not None else None
        return {**self.answer_identity, "hints": hints, "limit": self.limit, "pilot": pilot}

    @property
    def answer_identity(self) -> dict:
        """What decides one answer besides its prompt: part of every cache key."""
        return self.requests.answer_identity

    @property
    def needs_all_units(self) -> bool:
        return self.limit is not None

    def spent(self) -> dict:
        return self.usage.as_dict()

    def usage_line(self) -> str:
        return self.usage.line()

    # -- planning ---------------------------------------------------------------------------

    def request(self, unit: CaptionUnit) -> tuple[str, list[dict]]:
        """The cache key and chat messages of a unit."""
        return self.requests.request(unit, self._hints_for(unit))

    def pending(
        self, units: list[CaptionUnit], cache: CaptionCache
    ) -> list[tuple[CaptionUnit, str, list[dict]]]:
        """(unit, cache key, messages) of the units that would need a request: something to caption
        from, no cached answer. Units with nothing to caption from are left to `caption`'s failures."""
        found = []
        for unit in units:
            with contextlib.suppress(NothingToCaption):
                key, messages = self.request(unit)
                if cache.get(key) is None:
                    found.append((unit, key, messages))
        return found

    def choose_pilot(self, units_in_order: list[CaptionUnit]) -> None:
        """For `--limit N`: see `planning.pilot_units`."""
        if self.limit is not None:
            self.pilot = pilot_units(units_in_order, self.limit)

    def selected(self, units: list[CaptionUnit]) -> list[CaptionUnit]:
        """The units this run captions: all of them, or those of the pilot."""
        ordered = sorted(units, key=repr)
        if self.limit is None:
            return ordered
        if self.pilot is None:
            self.choose_pilot(ordered)
        return [unit for unit in ordered if unit in self.pilot]

    def plan(self, units: list[CaptionUnit], examples: int = 2) -> dict:
        """What a run would do, without any network: calls needed, cache hits, estimated tokens."""
        chosen = self.selected(units)
        cache = CaptionCache(self.cache_path)
        try:
            uncached = [messages for _, _, messages in self.pending(chosen, cache)]
        finally:
            cache.close()
        s = self.settings
        return dry_run_report(
            model=s.model,
            units=len(units),
            selected=len(chosen),
            uncached=uncached,
            per_record=self.requests.per_record,
            prices=s.prices,
            batch=s.batch,
            examples=examples,
        )

    # -- captioning -------------------------------------------------------------------------

    def caption(self, units: list[CaptionUnit]) -> dict[CaptionUnit, list[str] | CaptionFailure]:
        chosen = self.selected(units)
        skipped = set(units) - set(chosen)
        answers: dict[CaptionUnit, list[str] | CaptionFailure] = {
            unit: CaptionFailure(f"not captioned: pilot run limited to {self.limit} units (--limit)")
            for unit in skipped
        }
        cache = CaptionCache(self.cache_path)
        try:
            if self.settings.batch and (pending := self.pending(chosen, cache)):
                batch = {key: (unit, messages) for unit, key, messages in pending}
                run_batch(self, batch, api_key=self.api_key(cache, chosen), cache=cache)
            answers.update(asyncio.run(self._caption_all(chosen, cache)))
        finally:
            cache.close()
        return answers

    def api_key(self, cache: CaptionCache, units: list[CaptionUnit]) -> str:
        key = os.environ.get(self.settings.api_key_env)
        if key:
            return key
        if not self.pending(units, cache):
            return "unused"  # everything is cached: no request will be sent
        raise RuntimeError(
            f"the environment variable {self.settings.api_key_env} holding the API key is not set"
        )

    async def _caption_all(self, units: list[CaptionUnit], cache: CaptionCache) -> dict:
        client = self.client.connect(self.api_key(cache, units))
        limiter = asyncio.Semaphore(self.settings.concurrency)
        try:
            results = await asyncio.gather(*(self._caption_one(client, limiter, cache, u) for u in units))
        finally:
            await client.close()
        return dict(zip(units, results, strict=True))

    async def _caption_one(
        self, client: openai.AsyncOpenAI, limiter: asyncio.Semaphore, cache: CaptionCache, unit: CaptionUnit
    ) -> list[str] | CaptionFailure:
        """A unit's captions: cached, or asked until valid (at most `validation_attempts` times)."""
        try:
            key, messages = self.request(unit)
        except NothingToCaption as exc:
            return CaptionFailure(str(exc))
        if (cached := cache.get(key)) is not None:
            self.usage.cache_hits += 1
            return cached
        conversation = list(messages)
        reason = ""
        for _ in range(self.settings.validation_attempts):
            try:
                async with limiter:
                    text, prompt_tokens, completion_tokens = await self.client.complete(client, conversation)
            except CallFailed as exc:
                self.usage.failures += 1
                return CaptionFailure(str(exc))
            try:
                captions = self.validate(text, unit)
            except InvalidAnswer as exc:
                self.usage.invalid_answers += 1
                reason = str(exc)
                conversation = reask(messages, text, reason)
                continue
            cache.put(key, captions, prompt_tokens, completion_tokens)
            return captions
        self.usage.failures += 1
        return CaptionFailure(f"invalid answer after {self.settings.validation_attempts} attempts: {reason}")

    def validate(self, text: str, unit: CaptionUnit) -> list[str]:
        return parse_captions(
            text,
            count=self.requests.per_record,
            exact=not unit.is_report,
            token_budget=self.settings.token_budget,
            count_tokens=self.count_tokens,
            forbidden=self._hints_for(unit).raw_label_ids,
        )

    def request_body(self, messages: list[dict]) -> dict:
        """The request for `messages` as the client would send it now (JSON mode, if not refused)."""
        return self.client.request_body(messages)

    def _hints_for(self, unit: CaptionUnit) -> DatasetHints:
        return self.hints.get(unit.dataset, DatasetHints())
