"""Chat completions against an OpenAI-compatible endpoint, robust to what endpoints do under load.

Transport problems (429 with its Retry-After, 5xx, timeouts, dropped connections, a 200 that is no
completion) are retried with exponential backoff and jitter. 401/403/404 stop the run at once, and
so does a long run of failures over all units (the endpoint is down, not busy). An endpoint that
rejects JSON mode is asked again without it, for the rest of the run. The API key, and anything
shaped like one, never reaches a message.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from typing import TYPE_CHECKING

import openai

from unimed_data.captions.accounting import Usage
from unimed_data.captions.requests import request_body

if TYPE_CHECKING:
    from unimed_data.config import LLMConfig


class CallFailed(Exception):
    """A request that could not be completed after its retries; the message is a safe reason."""


class EndpointRefused(RuntimeError):
    """401/403/404: a wrong key, no access or no such model. Every request would fail: stop the run."""


class EndpointDown(RuntimeError):
    """Many requests in a row failed over all units: stop instead of retrying each unit for hours."""


class MalformedResponse(Exception):
    """A 200 answer that is not a chat completion (an HTML proxy page, no choices)."""


class ChatClient:
    """Completions for one captioner. Its state outlives a caption run on purpose: JSON mode once
    refused stays off, and a stopped endpoint stops every later request of the build."""

    def __init__(self, settings: LLMConfig, usage: Usage):
        self.settings = settings
        self.usage = usage
        self.structured = settings.structured_output
        self._failures_in_a_row = 0
        self._stopped: RuntimeError | None = None  # set when the run must stop (refused key, endpoint down)

    def request_body(self, messages: list[dict]) -> dict:
        return request_body(self.settings, messages, structured=self.structured)

    def connect(self, api_key: str) -> openai.AsyncOpenAI:
        """The SDK client, with its own retries off: `complete` retries."""
        s = self.settings
        return openai.AsyncOpenAI(api_key=api_key, base_url=s.base_url, timeout=s.timeout, max_retries=0)

    async def complete(self, client: openai.AsyncOpenAI, messages: list[dict]) -> tuple[str, int, int]:
        """One chat completion, retried on transport errors; returns (content, tokens in, tokens out)."""
        s = self.settings
        last, attempt = "no attempt made", 0
        while attempt < s.max_attempts:
            if self._stopped is not None:
                raise self._stopped
            body = self.request_body(messages)
            try:
                content, prompt, completion = _read_completion(await client.chat.completions.create(**body))
            except (openai.APIError, MalformedResponse) as exc:
                failure = self._failure(exc, body)
                if failure is None:
                    continue  # JSON mode dropped: not the endpoint's fault, the attempt does not count
                last, delay, busy = failure
            else:
                self.usage.calls += 1
                self.usage.add_tokens(prompt, completion, prices=s.prices, batch=False)
                self._failures_in_a_row = 0
                return content, prompt, completion
            attempt += 1
            self._trip_breaker(last, busy)
            if attempt < s.max_attempts:
                self.usage.retries += 1
                wait = self._backoff(attempt - 1) if delay is None else min(delay, s.retry_max_seconds)
                await asyncio.sleep(wait)
        raise CallFailed(f"gave up after {s.max_attempts} attempts: {last}")

    def _failure(self, exc: Exception, body: dict) -> tuple[str, float | None, bool] | None:
        """(reason, the server's Retry-After, busy rather than failing) of a retryable error; None
        when JSON mode was the problem; raises for an error no retry can fix."""
        if isinstance(exc, openai.RateLimitError):
            return "HTTP 429 rate limited", _retry_after(exc.response), True
        if isinstance(exc, openai.APIStatusError):
            message = _message(exc)
            if "response_format" in body and exc.status_code in (400, 422) and _about_json_mode(message):
                self.structured = False  # the endpoint has no JSON mode: parse defensively instead
                return None
            if exc.status_code in (401, 403, 404):
                self._stopped = EndpointRefused(
                    self._safe(f"the endpoint refused the request: HTTP {exc.status_code}: {message}")
                )
                raise self._stopped from None
            if exc.status_code < 500 and exc.status_code not in (408, 409):
                raise CallFailed(self._safe(f"HTTP {exc.status_code}: {message}")) from None
            return f"HTTP {exc.status_code}", None, False
        if isinstance(exc, openai.APITimeoutError):
            return f"timed out after {self.settings.timeout:g} s", None, False
        if isinstance(exc, openai.APIConnectionError):
            return "connection failed or dropped", None, False
        return f"malformed response ({type(exc).__name__})", None, False

    def _trip_breaker(self, last: str, busy: bool) -> None:
        """Count a failed request; stop the run when too many in a row failed."""
        self._failures_in_a_row += 0 if busy else 1  # a rate limit means busy, not down
        if self._failures_in_a_row >= self.breaker_threshold:
            self._stopped = EndpointDown(
                f"{self._failures_in_a_row} requests in a row failed (last: {last}); "
                "is the endpoint up? Answers so far are cached: rerun when it is"
            )
            raise self._stopped

    @property
    def breaker_threshold(self) -> int:
        """Failed requests in a row, over all units, that mean the endpoint is down, not busy."""
        return max(20, 3 * self.settings.concurrency, self.settings.max_attempts + 1)

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
