"""OpenAI Batch API mode: all uncached units in one asynchronous batch job, at half the price.

The request file is JSONL, one chat completion per unit, with the unit's cache key as custom_id.
The batch id is remembered in the cache database under a digest of the request set, so a run that
is stopped and restarted polls the batch already in flight instead of paying for a second one.
Valid answers go into the cache; units the batch did not answer validly are then asked again
through the ordinary endpoint by the caller, with its retries and validation.
"""

from __future__ import annotations

import io
import json
import sys
import time
from typing import TYPE_CHECKING, Protocol

import openai

from unimed_data.captions.accounting import Usage
from unimed_data.captions.answers import InvalidAnswer
from unimed_data.captions.base import CaptionUnit
from unimed_data.captions.cache import CaptionCache, cache_key

if TYPE_CHECKING:
    from unimed_data.config import LLMConfig

FINAL_STATES = {"completed", "failed", "expired", "cancelled"}
MAX_REQUESTS_PER_BATCH = 50_000  # the Batch API's limit per input file

Pending = dict[str, tuple[CaptionUnit, list[dict]]]
"""Units to ask, by cache key, with their chat messages."""


class BatchCaptioner(Protocol):
    """What a batch needs of the captioner it answers for."""

    settings: LLMConfig
    usage: Usage

    def request_body(self, messages: list[dict]) -> dict: ...

    def validate(self, text: str, unit: CaptionUnit) -> list[str]: ...


def run_batch(captioner: BatchCaptioner, pending: Pending, *, api_key: str, cache: CaptionCache) -> None:
    """Answer `pending` through batch jobs (submitted, or found in flight) into the cache."""
    client = openai.OpenAI(
        api_key=api_key,
        base_url=captioner.settings.base_url,
        timeout=captioner.settings.timeout,
        max_retries=captioner.settings.max_attempts,
    )
    keys = sorted(pending)
    try:
        jobs = []  # submit every part first, so they run at the same time
        for start in range(0, len(keys), MAX_REQUESTS_PER_BATCH):
            part = {key: pending[key] for key in keys[start : start + MAX_REQUESTS_PER_BATCH]}
            request_set = cache_key({"batch": sorted(part)})
            batch_id = cache.batch_for(request_set) or _submit(client, captioner, part, cache, request_set)
            jobs.append((request_set, batch_id, part))
        for request_set, batch_id, part in jobs:
            batch = client.batches.retrieve(batch_id)
            while batch.status not in FINAL_STATES:
                time.sleep(captioner.settings.batch_poll_seconds)
                batch = client.batches.retrieve(batch_id)
            if batch.status != "completed":
                print(
                    f"batch {batch_id} ended {batch.status}: its unanswered units go to the ordinary endpoint",
                    file=sys.stderr,
                )
            if batch.output_file_id:  # expired and cancelled batches keep the lines they finished
                _ingest(client.files.content(batch.output_file_id).read(), captioner, part, cache)
            cache.forget_batch(request_set)
    finally:
        client.close()


def _submit(
    client: openai.OpenAI, captioner: BatchCaptioner, pending: Pending, cache: CaptionCache, request_set: str
) -> str:
    lines = [
        json.dumps(
            {
                "custom_id": key,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": captioner.request_body(msgs),
            },
            ensure_ascii=False,
        )
        for key, (_, msgs) in sorted(pending.items())
    ]
    upload = client.files.create(
        file=("captions.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cache.remember_batch(request_set, batch.id)
    return batch.id


def _ingest(output: bytes, captioner: BatchCaptioner, pending: Pending, cache: CaptionCache) -> None:
    for line in output.decode("utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        key = record.get("custom_id")
        response = record.get("response") or {}
        if key not in pending or response.get("status_code") != 200:
            continue
        body = response.get("body") or {}
        usage = body.get("usage") or {}
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        captioner.usage.batch_requests += 1
        captioner.usage.add_tokens(prompt, completion, prices=captioner.settings.prices, batch=True)
        unit = pending[key][0]
        try:
            text = body["choices"][0]["message"]["content"] or ""
            captions = captioner.validate(text, unit)
        except (InvalidAnswer, KeyError, IndexError, TypeError):
            captioner.usage.invalid_answers += 1
            continue  # asked again through the ordinary endpoint
        cache.put(key, captions, prompt, completion)
