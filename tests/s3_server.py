"""A real S3 API on loopback for tests: moto's server app behind werkzeug, one bucket, the
environment pointing boto/s3fs at it through `AWS_ENDPOINT_URL` as a user would.

The server can hold object uploads after a given number (`hold_after`), so a test can kill a
publish at a known point, the way a lost connection or a stopped job would leave it."""

from __future__ import annotations

import threading
import urllib.request

import pytest

SECRET = "do-not-print-this-secret-0123456789"
BUCKET = "corpus"


class S3Server:
    """moto's S3 app on 127.0.0.1, with a gate on object PUTs; `puts` lists the keys let through."""

    def __init__(self):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self._app = DomainDispatcherApplication(create_backend_app)
        self.puts: list[str] = []
        self.refused: list[str] = []  # uploads answered 403 by `refuse_after`
        self.holding = threading.Event()  # set once an upload waits at the gate
        self._open = threading.Event()
        self._limit: int | None = None
        self._refuse = False
        self._lock = threading.Lock()
        self._server = make_server(
            "127.0.0.1", 0, self._gate, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))

    def hold_after(self, count: int) -> None:
        """Let `count` object uploads through, then keep the next ones waiting (and fail them)."""
        self._limit = count

    def refuse_after(self, count: int) -> None:
        """Let `count` object uploads through, then answer every later one 403 (not retried)."""
        self._limit, self._refuse = count, True

    def release(self) -> None:
        """Fail the uploads held so far and let every later one through."""
        self._limit = None
        self._open.set()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._thread.join()

    def _gate(self, environ, start_response):
        key = environ.get("PATH_INFO", "").strip("/")
        if environ["REQUEST_METHOD"] == "PUT" and "/" in key:
            with self._lock:
                held = self._limit is not None and len(self.puts) >= self._limit
                if not held:
                    self.puts.append(key)
            if held and self._refuse:
                self.refused.append(key)
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b"<Error><Code>AccessDenied</Code><Message>refused by the test</Message></Error>"]
            if held:
                self.holding.set()
                self._open.wait(120)
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"held by the test"]
        return self._app(environ, start_response)


@pytest.fixture
def s3_server(monkeypatch):
    """The server, with bucket `corpus`, and the AWS variables of a user pointing at it."""
    server = S3Server()
    for name, value in {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "testing-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(BUCKET)
    server.puts.clear()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server):
    """An s3fs filesystem on that server (bucket `corpus`, empty)."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)
