"""`POST /v1/chat/completions`: the responder's answer, after the latency, unless a fault says otherwise.

The answer is a `chat.completion` whose content is `responder(body)`, after `latency` seconds
(slept before every chat answer, faults included). `usage` counts words: prompt_tokens = words of
all messages, completion_tokens = words of the content. `stream: true` is refused with 400.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from .faults import Fault, FaultSource
from .prompts import Responder, message_text
from .wire import HTTPError, RequestLog, error_body, new_id, send_json


def _words(text: str) -> int:
    return len(text.split())


def completion(body: dict, content: str) -> dict:
    """A `chat.completion` object answering `body` with `content`."""
    prompt_tokens = sum(_words(message_text(m)) for m in body.get("messages") or [])
    completion_tokens = _words(content)
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 0 else 1
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or "fake-model",
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i in range(n)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens * n,
            "total_tokens": prompt_tokens + completion_tokens * n,
        },
    }


class ChatCompletions:
    """The chat endpoint and its live counters: `in_flight` answers now, `max_in_flight` at most at once."""

    def __init__(self, responder: Responder, faults: FaultSource, latency: float, stop: threading.Event):
        self.responder = responder
        self.faults = faults
        self.latency = latency
        self.in_flight = 0
        self.max_in_flight = 0
        self._stop = stop  # set when the server stops: ends latency sleeps and stalls
        self._lock = threading.Lock()

    def respond(self, body: dict) -> str:
        answer = self.responder(body)
        return answer if isinstance(answer, str) else json.dumps(answer)

    def handle(self, h: BaseHTTPRequestHandler, body: Any, log: RequestLog) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            raise HTTPError(400, "A chat completion needs a JSON body with 'model' and 'messages'.")
        if body.get("stream"):
            raise HTTPError(400, "Streaming is not supported by the fake server.", param="stream")
        fault = self.faults.pick(body)
        log.fault = fault.kind if fault else None
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(h, body, log, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, h: BaseHTTPRequestHandler, body: dict, log: RequestLog, fault: Fault | None) -> None:
        if self.latency > 0 and self._stop.wait(self.latency):
            h.close_connection = True
            return
        if fault is not None and fault.kind == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "stall" and self._stop.wait(fault.seconds):
            h.close_connection = True
            return
        if fault is not None and fault.kind == "rate_limit":
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            error = error_body(
                "Rate limit reached for requests (fake). Please try again later.",
                "rate_limit_error",
                "rate_limit_exceeded",
            )
            send_json(h, log, 429, error, headers)
            return
        if fault is not None and fault.kind == "server_error":
            error = error_body(
                "The server had an error while processing your request (fake).", "server_error"
            )
            send_json(h, log, fault.status, error)
            return
        content = fault.text if fault is not None and fault.kind == "content" else self.respond(body)
        send_json(h, log, 200, completion(body, content or ""))
