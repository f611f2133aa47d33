"""The `openai` caption backend: any OpenAI-compatible endpoint through the official SDK.

One request per caption unit, at most `concurrency` in flight. Transport problems (429 with its
Retry-After, 5xx, timeouts, dropped connections) are retried with exponential backoff and jitter;
answers that fail validation (not JSON, wrong count, empty or duplicate captions, over the token
budget, leaking a raw label id) are asked again with the reason, a bounded number of times; a
unit that still fails ends as a `CaptionFailure` with the reason. Every accepted answer is cached
on disk before it is used, so a rerun or a run after a crash makes no call for it. The API key is
read from the environment variable the settings name, and never logged, cached or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import openai

from unimed_data.captions.accounting import Usage, cost_usd
from unimed_data.captions.answers import InvalidAnswer, parse_captions
from unimed_data.captions.base import CaptionFailure, CaptionUnit
from unimed_data.captions.cache import CaptionCache, cache_key
from unimed_data.captions.prompts import NothingToCaption, PromptBuilder
from unimed_data.captions.tokens import make_token_counter


@dataclass(frozen=True)
class LLMSettings:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    temperature: float = 0.7
    seed: int | None = 0
    max_tokens: int = 1024
    timeout: float = 60.0
    max_attempts: int = 6  # per request, for transport errors
    validation_attempts: int = 3  # per unit, for invalid answers
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    token_budget: int = 77
    tokenizer: str = "clip"
    price_input_per_1m: float = 0.0
    price_output_per_1m: float = 0.0
    structured_output: bool = True
    batch: bool = False
    batch_poll_seconds: float = 30.0


@dataclass(frozen=True)
class DatasetHints:
    """What the prompts and the validation know of a dataset from its manifest."""

    definitions: dict[str, str] = field(default_factory=dict)
    raw_label_ids: tuple[str, ...] = ()


class CallFailed(Exception):
    """A request that could not be completed after its retries; the message is a safe reason."""


class EndpointRefused(RuntimeError):
    """401/403/404: a wrong key, no access or no such model. Every request would fail: stop the run."""


class EndpointDown(RuntimeError):
    """Many requests in a row failed over all units: stop instead of retrying each unit for hours."""


class MalformedResponse(Exception):
    """A 200 answer that is not a chat completion (an HTML proxy page, no choices)."""


class OpenAICaptioner:
    def __init__(
        self,
        settings: LLMSettings,
        *,
        cache_path: Path,
        per_record: int = 10,
        templates_dir: Path | None = None,
        hints: dict[str, DatasetHints] | None = None,
        limit: int | None = None,
    ):
        self.settings = settings
        self.per_record = per_record
        self.limit = limit
        self.hints = hints or {}
        self.prompts = PromptBuilder(templates_dir)
        self.cache_path = cache_path
        self.count_tokens: Callable[[str], int] = make_token_counter(settings.tokenizer)
        self.usage = Usage()
        self.source = f"llm:{settings.model}"
        self._structured = settings.structured_output
        self.pilot: frozenset[CaptionUnit] | None = None  # the units a --limit run captions
        self._failures_in_a_row = 0
        self._stopped: RuntimeError | None = None  # set when the run must stop (refused key, endpoint down)

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

    # -- planning ---------------------------------------------------------------------------

    def hints_for(self, unit: CaptionUnit) -> DatasetHints:
        return self.hints.get(unit.dataset, DatasetHints())

    def request(self, unit: CaptionUnit) -> tuple[str, list[dict]]:
        """The cache key and chat messages of a unit."""
        messages = self.prompts.messages(unit, self.per_record, self.hints_for(unit).definitions)
        key = cache_key({"identity": self.answer_identity, "messages": messages})
        return key, messages

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
        """For `--limit N`: the first N distinct units over all datasets, chosen once, up front,
        so reruns, resumed runs and `--dry-run` all pick the same ones."""
        if self.limit is not None:
            self.pilot = frozenset(list(dict.fromkeys(units_in_order))[: self.limit])

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
        # About four characters a token for English prompts; a caption about 25 tokens.
        prompt_tokens = sum(len(m["content"]) // 4 + 4 for messages in uncached for m in messages)
        completion_tokens = len(uncached) * self.per_record * 25
        cost = cost_usd(prompt_tokens, completion_tokens, prices=self.prices, batch=self.settings.batch)
        return {
            "backend": "openai",
            "model": self.settings.model,
            "units": len(units),
            "selected": len(chosen),
            "cached": len(chosen) - len(uncached),
            "calls": len(uncached),
            "estimated_prompt_tokens": prompt_tokens,
            "estimated_completion_tokens": completion_tokens,
            "estimated_cost_usd": round(cost, 4),
            "example_prompts": uncached[:examples],
        }

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
            if self.settings.batch:
                from unimed_data.captions.batch import run_batch

                run_batch(self, chosen, cache)
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
        client = openai.AsyncOpenAI(
            api_key=self.api_key(cache, units),
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            max_retries=0,
        )
        limiter = asyncio.Semaphore(self.settings.concurrency)
        try:
            results = await asyncio.gather(*(self._caption_one(client, limiter, cache, u) for u in units))
        finally:
            await client.close()
        return dict(zip(units, results, strict=True))

    async def _caption_one(self, client, limiter, cache: CaptionCache, unit: CaptionUnit):
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
                    text, prompt_tokens, completion_tokens = await self._complete(client, conversation)
            except CallFailed as exc:
                self.usage.failures += 1
                return CaptionFailure(str(exc))
            try:
                captions = self.validate(text, unit)
            except InvalidAnswer as exc:
                self.usage.invalid_answers += 1
                reason = str(exc)
                conversation = [
                    *messages,
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"That answer is invalid: {reason}. Answer again, only the JSON.",
                    },
                ]
                continue
            cache.put(key, captions, prompt_tokens, completion_tokens)
            return captions
        self.usage.failures += 1
        return CaptionFailure(f"invalid answer after {self.settings.validation_attempts} attempts: {reason}")

    def validate(self, text: str, unit: CaptionUnit) -> list[str]:
        return parse_captions(
            text,
            count=self.per_record,
            exact=not unit.is_report,
            token_budget=self.settings.token_budget,
            count_tokens=self.count_tokens,
            forbidden=self.hints_for(unit).raw_label_ids,
        )

    def request_body(self, messages: list[dict]) -> dict:
        s = self.settings
        body = {
            "model": s.model,
            "messages": messages,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if self._structured:
            body["response_format"] = {"type": "json_object"}
        return body

    async def _complete(self, client: openai.AsyncOpenAI, messages: list[dict]) -> tuple[str, int, int]:
        """One chat completion, retried on transport errors; returns (content, tokens in, tokens out)."""
        s = self.settings
        last, attempt = "no attempt made", 0
        while attempt < s.max_attempts:
            if self._stopped is not None:
                raise self._stopped
            body, delay, busy = self.request_body(messages), None, False
            try:
                response = await client.chat.completions.create(**body)
                content, prompt, completion = _read_completion(response)
                self.usage.calls += 1
                self.usage.add_tokens(prompt, completion, prices=self.prices, batch=False)
                self._failures_in_a_row = 0
                return content, prompt, completion
            except openai.RateLimitError as exc:
                last, delay, busy = "HTTP 429 rate limited", _retry_after(exc.response), True
            except openai.APIStatusError as exc:
                message = _message(exc)
                if "response_format" in body and exc.status_code in (400, 422) and _about_json_mode(message):
                    self._structured = False  # the endpoint has no JSON mode: parse defensively instead
                    continue  # not the endpoint's fault: the attempt does not count
                if exc.status_code in (401, 403, 404):
                    self._stopped = EndpointRefused(
                        self._safe(f"the endpoint refused the request: HTTP {exc.status_code}: {message}")
                    )
                    raise self._stopped from None
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    raise CallFailed(self._safe(f"HTTP {exc.status_code}: {message}")) from None
                last = f"HTTP {exc.status_code}"
            except openai.APITimeoutError:
                last = f"timed out after {s.timeout:g} s"
            except openai.APIConnectionError:
                last = "connection failed or dropped"
            except (openai.APIError, MalformedResponse) as exc:
                last = f"malformed response ({type(exc).__name__})"
            attempt += 1
            self._failures_in_a_row += 0 if busy else 1  # a rate limit means busy, not down
            if self._failures_in_a_row >= self.breaker_threshold:
                self._stopped = EndpointDown(
                    f"{self._failures_in_a_row} requests in a row failed (last: {last}); "
                    "is the endpoint up? Answers so far are cached: rerun when it is"
                )
                raise self._stopped
            if attempt < s.max_attempts:
                self.usage.retries += 1
                wait = self._backoff(attempt - 1) if delay is None else min(delay, s.retry_max_seconds)
                await asyncio.sleep(wait)
        raise CallFailed(f"gave up after {s.max_attempts} attempts: {last}")

    @property
    def breaker_threshold(self) -> int:
        """Failed requests in a row, over all units, that mean the endpoint is down, not busy."""
        return max(20, 3 * self.settings.concurrency, self.settings.max_attempts + 1)

    @property
    def prices(self) -> tuple[float, float]:
        return self.settings.price_input_per_1m, self.settings.price_output_per_1m

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (so many clients do not retry in lockstep)."""
        ceiling = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)

    def _safe(self, text: str) -> str:
        return redact(text, os.environ.get(self.settings.api_key_env, ""))


_KEY_LIKE = re.compile(r"\b(sk|key|token)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)


def redact(text: str, secret: str) -> str:
    """Remove a key, and anything shaped like one, from text that may be logged or stored."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_LIKE.sub("***", text)


def _read_completion(response) -> tuple[str, int, int]:
    try:
        content = response.choices[0].message.content or ""
        usage = response.usage
    except (AttributeError, IndexError, TypeError) as exc:
        raise MalformedResponse(str(exc)) from None
    return content, (usage.prompt_tokens if usage else 0), (usage.completion_tokens if usage else 0)


def _about_json_mode(message: str) -> bool:
    lowered = message.lower()
    return "response_format" in lowered or "json_object" in lowered or "response format" in lowered


def _retry_after(response) -> float | None:
    """Seconds from Retry-After (or Retry-After-Ms), None if the server sent neither."""
    headers = response.headers if response is not None else {}
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        if (seconds := headers.get("retry-after")) is not None:
            return max(0.0, float(seconds))
    except ValueError:
        return None
    return None


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    text = error.get("message") if isinstance(error, dict) else None
    return " ".join(str(text or exc.message).split())[:300]
