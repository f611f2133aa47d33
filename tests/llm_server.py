"""A fake OpenAI-compatible HTTP server on loopback, for testing LLM clients with the real `openai` SDK.

Standard library only: a `ThreadingHTTPServer` (one daemon thread per connection, HTTP/1.1
keep-alive) bound to 127.0.0.1 on an ephemeral port. Use it as a context manager::

    with FakeOpenAI(faults=FaultPlan({"rec-7": [Fault.rate_limit(0.1)]}), latency=0.0) as server:
        client = openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=0)
        ...
        assert server.completions_ok("rec-7") == 1

Endpoints (all under `/v1`, errors as `{"error": {"message", "type", "param", "code"}}`):

- `POST /v1/chat/completions`: a `chat.completion` whose content is `responder(body)`, after
  `latency` seconds (slept before every chat answer, faults included; other endpoints answer at
  once). `usage` counts words: prompt_tokens = words of all messages, completion_tokens = words of
  the content. `stream: true` is refused with 400.
- `POST /v1/files` (multipart), `GET /v1/files`, `GET /v1/files/{id}`, `GET /v1/files/{id}/content`,
  `DELETE /v1/files/{id}`.
- `POST /v1/batches`, `GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`.
- `GET /v1/models` (one model, `fake-model`).

Default responder: the wanted count N comes from a line `COUNT: N` in the most recent user message
that has one (else 5); the subject from a `SUBJECT:` or `FINDINGS...:` line of that message (e.g.
`Findings (present): cardiomegaly`), else the first six words of its first other line, without a
short `Label:` prefix. The answer is `{"captions": [N distinct short sentences about the subject]}`.

Faults (chat completions only; `faults=` takes one of):

- `FaultPlan(by_prompt, every=[...])`: `by_prompt` maps a substring to a list of `Fault | None`.
  A key counts every chat request in which any *user* message contains it (a follow-up turn that
  keeps the original prompt still counts); its list is applied to the 1st, 2nd, ... such request,
  after which requests are answered normally. `every` is applied to the 1st, 2nd, ... chat request
  overall and wins over `by_prompt` when both give a fault (the key counters advance regardless).
  `None` in a list means "answer normally this time". `plan.exhausted` is True once every scheduled
  entry has been reached.
- a list or tuple: the same as `FaultPlan(every=that_list)`.
- a `collections.deque` or `queue.Queue`: one entry is taken per chat request while any is left.
- a callable `(index, body) -> Fault | None`, where `index` is 0 for the first request with this
  exact last user message, 1 for the second, and so on.

`Fault` kinds: `Fault.rate_limit(retry_after=0.2)` (429 + `Retry-After`, omitted when None),
`Fault.server_error(status=500)`, `Fault.stall(seconds)` (sleep, then answer normally if the
server is still running; the client is expected to have timed out), `Fault.drop()` (close the
connection without a response), `Fault.content(text)` (a normal 200 completion carrying `text`).

Batches: a new batch is `validating`; each `GET /v1/batches/{id}` advances it, and the
`batch_polls_to_complete`-th retrieve (default 2; 0 means at creation) completes it: every input
line goes through the responder (faults do not apply) and the output file is written, one line per
request in input order (or shuffled with `batch_shuffle_seed`). `batch_line_fault(custom_id, body)`
may return a string (that line's content), a `Fault.content(text)` (the same), any other `Fault`
(the line fails: it goes to the error file, with the fault's HTTP status, or `error` set for
stall/drop) or None. An input file with a bad line (not JSON, no custom_id, duplicate custom_id,
method not POST, url not the batch endpoint) fails the whole batch at validation, with `errors`.
A cancel makes it `cancelling`, the next retrieve `cancelled`.

Attributes: `base_url` (`http://127.0.0.1:<port>/v1`), `port`, `requests` (snapshot list of
`RequestLog`), `files` (id -> `StoredFile`), `batches` (id -> Batch JSON dict), `batches_created`,
`in_flight` / `max_in_flight` (chat completions being answered now / at most at once), `errors`
(tracebacks of unexpected exceptions inside the server; should stay empty).
"""

from __future__ import annotations

import collections
import contextlib
import email.message
import email.utils
import json
import queue
import random
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "FakeOpenAI",
    "Fault",
    "FaultPlan",
    "RequestLog",
    "StoredFile",
    "captions_json",
    "default_captions",
    "default_responder",
    "last_user_text",
    "user_texts",
]

FaultKind = Literal["rate_limit", "server_error", "stall", "drop", "content"]
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout)


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour of a chat completion; build it with the class methods."""

    kind: FaultKind
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0
    text: str | None = None

    @classmethod
    def rate_limit(cls, retry_after: float | None = 0.2) -> Fault:
        return cls("rate_limit", status=429, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        if status < 500:
            raise ValueError("server_error wants a 5xx status")
        return cls("server_error", status=status)

    @classmethod
    def stall(cls, seconds: float = 5.0) -> Fault:
        return cls("stall", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop", status=0)

    @classmethod
    def content(cls, text: str) -> Fault:
        return cls("content", text=text)


FaultEntry = Fault | None


class FaultPlan:
    """Faults by prompt substring (1st, 2nd, ... request carrying it) and for the first requests overall."""

    def __init__(
        self, by_prompt: Mapping[str, Sequence[FaultEntry]] | None = None, *, every: Sequence[FaultEntry] = ()
    ):
        self.by_prompt = {key: list(entries) for key, entries in (by_prompt or {}).items()}
        self.every = list(every)
        self.seen: collections.Counter[str] = collections.Counter()
        self.total = 0
        self._lock = threading.Lock()

    def pick(self, body: dict) -> Fault | None:
        text = "\n".join(user_texts(body))
        with self._lock:
            index = self.total
            self.total += 1
            chosen = self.every[index] if index < len(self.every) else None
            for key, entries in self.by_prompt.items():
                if key in text:
                    nth = self.seen[key]
                    self.seen[key] += 1
                    if chosen is None and nth < len(entries):
                        chosen = entries[nth]
            return chosen

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self.total >= len(self.every) and all(
                self.seen[key] >= len(entries) for key, entries in self.by_prompt.items()
            )


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


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


# -- prompt helpers ------------------------------------------------------------------------------


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


def _words(text: str) -> int:
    return len(text.split())


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _HTTPError(Exception):
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


# -- the server ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.app._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.app._track(self.connection, add=False)

    def do_GET(self) -> None:
        self.server.app._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.app._dispatch(self, "POST")

    def do_DELETE(self) -> None:
        self.server.app._dispatch(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent clients connect at once in benchmarks
    app: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            self.app.errors.append(traceback.format_exc())


Responder = Callable[[dict], Any]
Faults = (
    FaultPlan | Sequence[FaultEntry] | collections.deque | queue.Queue | Callable[[int, dict], FaultEntry]
)


class FakeOpenAI:
    def __init__(
        self,
        responder: Responder | None = None,
        faults: Faults | None = None,
        latency: float = 0.0,
        *,
        batch_polls_to_complete: int = 2,
        batch_line_fault: Callable[[str, dict], str | Fault | None] | None = None,
        batch_shuffle_seed: int | None = None,
        api_key: str | None = None,
    ):
        self.responder = responder or default_responder
        self.latency = latency
        self.batch_polls_to_complete = batch_polls_to_complete
        self.batch_line_fault = batch_line_fault
        self.batch_shuffle_seed = batch_shuffle_seed
        self.api_key = api_key
        self._faults = FaultPlan(every=faults) if isinstance(faults, list | tuple) else faults
        if self._faults is not None and not (
            isinstance(self._faults, FaultPlan | collections.deque | queue.Queue) or callable(self._faults)
        ):
            raise TypeError(f"faults: unsupported type {type(faults).__name__}")

        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, dict] = {}
        self.batches_created = 0
        self.errors: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._batch_polls: dict[str, int] = {}
        self._requests: list[RequestLog] = []
        self._prompt_counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.app = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # ends stalls and latency sleeps
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- inspection -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestLog]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def chat_requests(self, prompt_substring: str | None = None) -> list[RequestLog]:
        """Logged chat completion requests, optionally those with a user message containing the substring."""
        return [
            r
            for r in self.requests
            if r.path == "/v1/chat/completions"
            and (prompt_substring is None or any(prompt_substring in t for t in user_texts(r.body)))
        ]

    def completions_ok(self, prompt_substring: str | None = None) -> int:
        """Chat completions answered 200 (content faults included; stalls and drops not)."""
        return sum(
            1
            for r in self.chat_requests(prompt_substring)
            if r.status == 200 and r.fault not in ("stall", "drop")
        )

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- plumbing ---------------------------------------------------------------------------

    def _dispatch(self, h: _Handler, method: str) -> None:
        try:
            raw = self._read_body(h)
        except (ValueError, *_CLIENT_GONE):
            h.close_connection = True
            return
        path = urlsplit(h.path).path.rstrip("/")
        body = None
        if raw and "json" in h.headers.get("Content-Type", ""):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        log = RequestLog(
            path, method, body, headers={k.lower(): v for k, v in h.headers.items()}, started=time.monotonic()
        )
        with self._lock:
            log.index = len(self._requests)
            self._requests.append(log)
        try:
            if self.api_key is not None and h.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise _HTTPError(
                    401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                )
            self._route(h, method, path, raw, body, log)
        except _CLIENT_GONE:
            h.close_connection = True
        except _HTTPError as exc:
            self._send_json(h, log, exc.status, _error(exc.message, exc.type, exc.code, exc.param))
        except Exception:
            self.errors.append(traceback.format_exc())
            try:
                self._send_json(h, log, 500, _error("fake server bug, see server.errors", "server_error"))
            except OSError:
                h.close_connection = True
        finally:
            log.finished = time.monotonic()

    def _route(self, h: _Handler, method: str, path: str, raw: bytes, body: Any, log: RequestLog) -> None:
        parts = path.split("/")[1:]  # "", "v1", ... -> ["v1", ...]
        if not parts or parts[0] != "v1":
            raise _HTTPError(404, f"Unknown path {path}", code="unknown_url")
        route = (method, *parts[1:])
        match route:
            case ("POST", "chat", "completions"):
                self._chat(h, body, log)
            case ("POST", "files"):
                self._send_json(h, log, 200, self._upload(h, raw))
            case ("GET", "files"):
                self._send_json(h, log, 200, _listing([f.to_json() for f in self.files.values()]))
            case ("GET", "files", file_id):
                self._send_json(h, log, 200, self._file(file_id).to_json())
            case ("DELETE", "files", file_id):
                self._file(file_id)
                with self._lock:
                    del self.files[file_id]
                self._send_json(h, log, 200, {"id": file_id, "object": "file", "deleted": True})
            case ("GET", "files", file_id, "content"):
                self._send(h, log, 200, self._file(file_id).data, "application/octet-stream")
            case ("POST", "batches"):
                self._send_json(h, log, 200, self._create_batch(body))
            case ("GET", "batches"):
                with self._lock:
                    data = [dict(b) for b in reversed(self.batches.values())]
                self._send_json(h, log, 200, _listing(data))
            case ("GET", "batches", batch_id):
                self._send_json(h, log, 200, self._poll_batch(batch_id))
            case ("POST", "batches", batch_id, "cancel"):
                self._send_json(h, log, 200, self._cancel_batch(batch_id))
            case ("GET", "models"):
                model = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}
                self._send_json(h, log, 200, _listing([model]))
            case _:
                raise _HTTPError(404, f"Unknown request {method} {path}", code="unknown_url")

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
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

    def _send(
        self,
        h: _Handler,
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
        h.send_header("x-request-id", _new_id("req_"))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _send_json(
        self, h: _Handler, log: RequestLog, status: int, obj: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send(h, log, status, json.dumps(obj).encode(), "application/json", headers)

    # -- chat completions -------------------------------------------------------------------

    def _pick_fault(self, body: dict) -> Fault | None:
        faults = self._faults
        if faults is None:
            return None
        if isinstance(faults, FaultPlan):
            return faults.pick(body)
        if isinstance(faults, collections.deque):
            try:
                return faults.popleft()
            except IndexError:
                return None
        if isinstance(faults, queue.Queue):
            try:
                return faults.get_nowait()
            except queue.Empty:
                return None
        prompt = last_user_text(body)
        with self._lock:
            index = self._prompt_counts[prompt]
            self._prompt_counts[prompt] += 1
        return faults(index, body)

    def _chat(self, h: _Handler, body: Any, log: RequestLog) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            raise _HTTPError(400, "A chat completion needs a JSON body with 'model' and 'messages'.")
        if body.get("stream"):
            raise _HTTPError(400, "Streaming is not supported by the fake server.", param="stream")
        fault = self._pick_fault(body)
        log.fault = fault.kind if fault else None
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
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
                error = _error(
                    "Rate limit reached for requests (fake). Please try again later.",
                    "rate_limit_error",
                    "rate_limit_exceeded",
                )
                self._send_json(h, log, 429, error, headers)
                return
            if fault is not None and fault.kind == "server_error":
                error = _error(
                    "The server had an error while processing your request (fake).", "server_error"
                )
                self._send_json(h, log, fault.status, error)
                return
            content = fault.text if fault is not None and fault.kind == "content" else self._respond(body)
            self._send_json(h, log, 200, completion(body, content or ""))
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, body: dict) -> str:
        answer = self.responder(body)
        return answer if isinstance(answer, str) else json.dumps(answer)

    # -- files ------------------------------------------------------------------------------

    def _upload(self, h: _Handler, raw: bytes) -> dict:
        fields = _parse_multipart(h.headers.get("Content-Type", ""), raw)
        if "file" not in fields:
            raise _HTTPError(400, "Missing the 'file' part.", param="file")
        filename, data = fields["file"]
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if not purpose:
            raise _HTTPError(400, "Missing the 'purpose' part.", param="purpose")
        stored = self._store(filename or "upload", purpose, data)
        return stored.to_json()

    def _store(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile(_new_id("file-"), filename, purpose, data, int(time.time()))
        with self._lock:
            self.files[stored.id] = stored
        return stored

    def _file(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            raise _HTTPError(404, f"No such File object: {file_id}", code="file_not_found")
        return stored

    # -- batches ----------------------------------------------------------------------------

    def _create_batch(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise _HTTPError(400, "A batch needs a JSON body.")
        endpoint = body.get("endpoint")
        if endpoint != "/v1/chat/completions":
            raise _HTTPError(400, f"Unsupported endpoint {endpoint!r} (fake: only /v1/chat/completions).")
        if body.get("completion_window") != "24h":
            raise _HTTPError(400, "completion_window must be '24h'.", param="completion_window")
        input_file = self._file(str(body.get("input_file_id")))
        now = int(time.time())
        lines = [ln for ln in input_file.data.decode("utf-8", "replace").splitlines() if ln.strip()]
        batch = {
            "id": _new_id("batch_"),
            "object": "batch",
            "endpoint": endpoint,
            "input_file_id": input_file.id,
            "completion_window": "24h",
            "status": "validating",
            "created_at": now,
            "expires_at": now + 86400,
            "in_progress_at": None,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "model": None,
            "usage": None,
        }
        with self._lock:
            self.batches[batch["id"]] = batch
            self._batch_polls[batch["id"]] = 0
            self.batches_created += 1
            if self.batch_polls_to_complete <= 0:
                self._finish_batch(batch)
            return dict(batch)

    def _poll_batch(self, batch_id: str) -> dict:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise _HTTPError(404, f"No such Batch object: {batch_id}", code="batch_not_found")
            if batch["status"] == "cancelling":
                batch.update(status="cancelled", cancelled_at=int(time.time()))
            elif batch["status"] in ("validating", "in_progress"):
                self._batch_polls[batch_id] += 1
                if self._batch_polls[batch_id] >= self.batch_polls_to_complete:
                    self._finish_batch(batch)
                else:
                    batch.update(
                        status="in_progress", in_progress_at=batch["in_progress_at"] or int(time.time())
                    )
            return dict(batch)

    def _cancel_batch(self, batch_id: str) -> dict:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise _HTTPError(404, f"No such Batch object: {batch_id}", code="batch_not_found")
            if batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelling", cancelling_at=int(time.time()))
            return dict(batch)

    def _finish_batch(self, batch: dict) -> None:
        """Validate the input, answer every line, write the output and error files."""
        now = int(time.time())
        requests, problems = _parse_batch_input(self.files[batch["input_file_id"]].data, batch["endpoint"])
        if problems:
            errors = [
                {"code": "invalid_request", "message": msg, "line": line, "param": None}
                for line, msg in problems
            ]
            batch.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            return
        outputs, failures = [], []
        for custom_id, body in requests:
            line = {"id": _new_id("batch_req_"), "custom_id": custom_id, "response": None, "error": None}
            override = self.batch_line_fault(custom_id, body) if self.batch_line_fault else None
            if isinstance(override, Fault) and override.kind != "content":
                if override.kind in ("rate_limit", "server_error"):
                    kind = "rate_limit_error" if override.kind == "rate_limit" else "server_error"
                    error = _error(f"fake {override.kind} for this request", kind)
                    line["response"] = {
                        "status_code": override.status,
                        "request_id": _new_id("req_"),
                        "body": error,
                    }
                else:
                    line["error"] = {"code": "request_failed", "message": f"fake {override.kind}"}
                failures.append(line)
                continue
            if isinstance(override, Fault):
                content = override.text or ""
            elif isinstance(override, str):
                content = override
            else:
                content = self._respond(body)
            line["response"] = {
                "status_code": 200,
                "request_id": _new_id("req_"),
                "body": completion(body, content),
            }
            outputs.append(line)
        if self.batch_shuffle_seed is not None:
            random.Random(self.batch_shuffle_seed).shuffle(outputs)
        out = self._store(f"{batch['id']}_output.jsonl", "batch_output", _jsonl(outputs))
        batch.update(
            status="completed",
            in_progress_at=batch["in_progress_at"] or now,
            finalizing_at=now,
            completed_at=now,
            output_file_id=out.id,
            model=requests[0][1].get("model") if requests else None,
            request_counts={"total": len(requests), "completed": len(outputs), "failed": len(failures)},
        )
        if failures:
            batch["error_file_id"] = self._store(
                f"{batch['id']}_error.jsonl", "batch_output", _jsonl(failures)
            ).id


# -- formats -------------------------------------------------------------------------------------


def completion(body: dict, content: str) -> dict:
    """A `chat.completion` object answering `body` with `content`."""
    prompt_tokens = sum(_words(message_text(m)) for m in body.get("messages") or [])
    completion_tokens = _words(content)
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 0 else 1
    return {
        "id": _new_id("chatcmpl-"),
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


def _listing(data: list[dict]) -> dict:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    }


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _parse_batch_input(data: bytes, endpoint: str) -> tuple[list[tuple[str, dict]], list[tuple[int, str]]]:
    requests: list[tuple[str, dict]] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    text = data.decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            problems.append((number, "line is not valid JSON"))
            continue
        if not isinstance(record, dict):
            problems.append((number, "line is not a JSON object"))
            continue
        custom_id = record.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problems.append((number, "missing custom_id"))
        elif custom_id in seen:
            problems.append((number, f"duplicate custom_id {custom_id!r}"))
        elif record.get("method") != "POST":
            problems.append((number, "method must be POST"))
        elif record.get("url") != endpoint:
            problems.append((number, f"url must be {endpoint}"))
        elif not isinstance(record.get("body"), dict) or not isinstance(record["body"].get("messages"), list):
            problems.append((number, "body must be a chat completion request"))
        else:
            seen.add(custom_id)
            requests.append((custom_id, record["body"]))
    if not requests and not problems:
        problems.append((0, "the input file has no requests"))
    return requests, problems


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _HTTPError(400, "Expected multipart/form-data with a boundary.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    delimiter = b"--" + boundary.encode()
    for part in raw.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        part_headers = email.message.Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                part_headers[name.strip()] = value.strip()
        name = part_headers.get_param("name", header="content-disposition")
        filename = part_headers.get_param("filename", header="content-disposition")
        if isinstance(filename, tuple):  # RFC 2231 encoded
            filename = email.utils.collapse_rfc2231_value(filename)
        if isinstance(name, str):
            fields[name] = (filename if isinstance(filename, str) else None, data)
    return fields
