"""`FakeOpenAI`: the loopback HTTP server that logs each request and routes it to its endpoint.

Standard library only: a `ThreadingHTTPServer` (one daemon thread per connection, HTTP/1.1
keep-alive) bound to 127.0.0.1 on an ephemeral port. The endpoints keep their own state
(`chat`, `files`, `batches` modules); this module owns the socket, the log and the routing table.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .batches import Batches, LineFault
from .chat import ChatCompletions
from .faults import Faults, FaultSource
from .files import FileStore, StoredFile
from .models import models_listing
from .prompts import Responder, default_responder, user_texts
from .wire import CLIENT_GONE, HTTPError, RequestLog, error_body, read_body, send, send_json


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


class FakeOpenAI:
    """The server; see the package docstring for its endpoints, faults and attributes."""

    def __init__(
        self,
        responder: Responder | None = None,
        faults: Faults | None = None,
        latency: float = 0.0,
        *,
        batch_polls_to_complete: int = 2,
        batch_line_fault: LineFault | None = None,
        batch_shuffle_seed: int | None = None,
        api_key: str | None = None,
    ):
        self.api_key = api_key
        self._stop = threading.Event()
        self._chat = ChatCompletions(responder or default_responder, FaultSource(faults), latency, self._stop)
        self._files = FileStore()
        self._batches = Batches(
            self._files, self._chat.respond, batch_polls_to_complete, batch_line_fault, batch_shuffle_seed
        )
        self.errors: list[str] = []
        self._requests: list[RequestLog] = []
        self._lock = threading.Lock()
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
    def files(self) -> dict[str, StoredFile]:
        return self._files.files

    @property
    def batches(self) -> dict[str, dict]:
        return self._batches.batches

    @property
    def batches_created(self) -> int:
        return self._batches.created

    @property
    def in_flight(self) -> int:
        return self._chat.in_flight

    @property
    def max_in_flight(self) -> int:
        return self._chat.max_in_flight

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

    # -- plumbing ---------------------------------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _dispatch(self, h: _Handler, method: str) -> None:
        try:
            raw = read_body(h)
        except (ValueError, *CLIENT_GONE):
            h.close_connection = True
            return
        log = self._log(h, method, raw)
        try:
            if self.api_key is not None and h.headers.get("Authorization") != f"Bearer {self.api_key}":
                raise HTTPError(
                    401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                )
            self._route(h, method, raw, log)
        except CLIENT_GONE:
            h.close_connection = True
        except HTTPError as exc:
            send_json(h, log, exc.status, error_body(exc.message, exc.type, exc.code, exc.param))
        except Exception:
            self.errors.append(traceback.format_exc())
            try:
                send_json(h, log, 500, error_body("fake server bug, see server.errors", "server_error"))
            except OSError:
                h.close_connection = True
        finally:
            log.finished = time.monotonic()

    def _log(self, h: _Handler, method: str, raw: bytes) -> RequestLog:
        """Log the request before it is answered, with its JSON body parsed when it has one."""
        body = None
        if raw and "json" in h.headers.get("Content-Type", ""):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        path = urlsplit(h.path).path.rstrip("/")
        headers = {k.lower(): v for k, v in h.headers.items()}
        log = RequestLog(path, method, body, headers=headers, started=time.monotonic())
        with self._lock:
            log.index = len(self._requests)
            self._requests.append(log)
        return log

    def _route(self, h: _Handler, method: str, raw: bytes, log: RequestLog) -> None:
        parts = log.path.split("/")[1:]  # "", "v1", ... -> ["v1", ...]
        if not parts or parts[0] != "v1":
            raise HTTPError(404, f"Unknown path {log.path}", code="unknown_url")
        match (method, *parts[1:]):
            case ("POST", "chat", "completions"):
                self._chat.handle(h, log.body, log)
                return
            case ("GET", "files", file_id, "content"):
                send(h, log, 200, self._files.get(file_id).data, "application/octet-stream")
                return
            case ("POST", "files"):
                answer = self._files.upload(h.headers.get("Content-Type", ""), raw)
            case ("GET", "files"):
                answer = self._files.listing()
            case ("GET", "files", file_id):
                answer = self._files.get(file_id).to_json()
            case ("DELETE", "files", file_id):
                answer = self._files.delete(file_id)
            case ("POST", "batches"):
                answer = self._batches.create(log.body)
            case ("GET", "batches"):
                answer = self._batches.listing()
            case ("GET", "batches", batch_id):
                answer = self._batches.poll(batch_id)
            case ("POST", "batches", batch_id, "cancel"):
                answer = self._batches.cancel(batch_id)
            case ("GET", "models"):
                answer = models_listing()
            case _:
                raise HTTPError(404, f"Unknown request {method} {log.path}", code="unknown_url")
        send_json(h, log, 200, answer)
