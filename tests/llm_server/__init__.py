"""A fake OpenAI-compatible HTTP server on loopback, for testing LLM clients with the real `openai` SDK.

Use it as a context manager::

    with FakeOpenAI(faults=FaultPlan({"rec-7": [Fault.rate_limit(0.1)]}), latency=0.0) as server:
        client = openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=0)
        ...
        assert server.completions_ok("rec-7") == 1

Endpoints, one module each (all under `/v1`, errors as `{"error": {"message", "type", "param", "code"}}`;
only chat completions sleep `latency` and take faults, the others answer at once):

- `chat`: `POST /v1/chat/completions`, answered by `responder(body)` (`prompts.default_responder`
  unless given), with the faults of `faults.py`.
- `files`: `POST /v1/files` (multipart), `GET /v1/files`, `GET /v1/files/{id}`,
  `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`.
- `batches`: `POST /v1/batches`, `GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`.
- `models`: `GET /v1/models` (one model, `fake-model`).

`server.py` holds `FakeOpenAI` (socket, request log, routing), `wire.py` the HTTP plumbing they share.
Attributes: `base_url` (`http://127.0.0.1:<port>/v1`), `port`, `requests` (snapshot list of
`RequestLog`), `files` (id -> `StoredFile`), `batches` (id -> Batch JSON dict), `batches_created`,
`in_flight` / `max_in_flight` (chat completions being answered now / at most at once), `errors`
(tracebacks of unexpected exceptions inside the server; should stay empty).
"""

from .faults import Fault, FaultPlan
from .files import StoredFile
from .prompts import captions_json, default_captions, default_responder, last_user_text, user_texts
from .server import FakeOpenAI
from .wire import HTTPError, RequestLog

__all__ = [
    "FakeOpenAI",
    "Fault",
    "FaultPlan",
    "HTTPError",
    "RequestLog",
    "StoredFile",
    "captions_json",
    "default_captions",
    "default_responder",
    "last_user_text",
    "user_texts",
]
