"""HTTP plumbing every endpoint shares: the request log, the OpenAI error shape, ids, reading
bodies and sending answers, so each endpoint module holds only what its endpoint does."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .faults import FaultKind
from .prompts import last_user_text

CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout)


@dataclass
class RequestLog:
    """One request as the server saw it; `status` is None until answered, and stays None for a drop."""

    path: str
    method: str
    body: Any  # parsed JSON body, or None (no body, not JSON, multipart)
    status: int | None = None
    fault: FaultKind | None = None
    headers: dict[str, str] = field(default_factory=dict)  # names lowercased
    index: int = 0
    started: float = 0.0  # time.monotonic()
    finished: float | None = None

    @property
    def prompt(self) -> str:
        """The last user message of a chat completion request ('' otherwise)."""
        return last_user_text(self.body) if isinstance(self.body, dict) else ""


class HTTPError(Exception):
    """An error answer (status and OpenAI error body); endpoints and responders raise it."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def listing(data: list[dict]) -> dict:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    }


def jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def read_body(h: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline().strip():  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(h.rfile.read(size))
            h.rfile.readline()
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length) if length else b""


def send(
    h: BaseHTTPRequestHandler,
    log: RequestLog,
    status: int,
    data: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    log.status = status
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    h.send_header("x-request-id", new_id("req_"))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(data)
    h.wfile.flush()


def send_json(
    h: BaseHTTPRequestHandler,
    log: RequestLog,
    status: int,
    obj: Any,
    headers: Mapping[str, str] | None = None,
) -> None:
    send(h, log, status, json.dumps(obj).encode(), "application/json", headers)
