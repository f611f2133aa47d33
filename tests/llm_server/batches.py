"""`/v1/batches`: create, list, retrieve (which advances the batch) and cancel.

A new batch is `validating`; each `GET /v1/batches/{id}` advances it, and the
`batch_polls_to_complete`-th retrieve (default 2; 0 means at creation) completes it: every input
line goes through the responder (faults do not apply) and the output file is written, one line per
request in input order (or shuffled with `batch_shuffle_seed`). `batch_line_fault(custom_id, body)`
may return a string (that line's content), a `Fault.content(text)` (the same), any other `Fault`
(the line fails: it goes to the error file, with the fault's HTTP status, or `error` set for
stall/drop) or None. An input file with a bad line (not JSON, no custom_id, duplicate custom_id,
method not POST, url not the batch endpoint) fails the whole batch at validation, with `errors`.
A cancel makes it `cancelling`, the next retrieve `cancelled`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from .chat import completion
from .faults import Fault
from .files import FileStore
from .wire import HTTPError, error_body, jsonl, listing, new_id

LineFault = Callable[[str, dict], str | Fault | None]


def _new_batch(body: dict, input_file_id: str, total: int) -> dict:
    now = int(time.time())
    return {
        "id": new_id("batch_"),
        "object": "batch",
        "endpoint": body["endpoint"],
        "input_file_id": input_file_id,
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
        "request_counts": {"total": total, "completed": 0, "failed": 0},
        "metadata": body.get("metadata"),
        "model": None,
        "usage": None,
    }


class Batches:
    """The batches endpoint's state: `batches` maps an id to its Batch JSON; `created` counts creations."""

    def __init__(
        self,
        files: FileStore,
        respond: Callable[[dict], str],
        polls_to_complete: int,
        line_fault: LineFault | None,
        shuffle_seed: int | None,
    ):
        self.files = files
        self.respond = respond
        self.polls_to_complete = polls_to_complete
        self.line_fault = line_fault
        self.shuffle_seed = shuffle_seed
        self.batches: dict[str, dict] = {}
        self.created = 0
        self._polls: dict[str, int] = {}
        self._lock = threading.Lock()

    def create(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise HTTPError(400, "A batch needs a JSON body.")
        endpoint = body.get("endpoint")
        if endpoint != "/v1/chat/completions":
            raise HTTPError(400, f"Unsupported endpoint {endpoint!r} (fake: only /v1/chat/completions).")
        if body.get("completion_window") != "24h":
            raise HTTPError(400, "completion_window must be '24h'.", param="completion_window")
        input_file = self.files.get(str(body.get("input_file_id")))
        lines = [ln for ln in input_file.data.decode("utf-8", "replace").splitlines() if ln.strip()]
        batch = _new_batch(body, input_file.id, len(lines))
        with self._lock:
            self.batches[batch["id"]] = batch
            self._polls[batch["id"]] = 0
            self.created += 1
            if self.polls_to_complete <= 0:
                self._finish(batch)
            return dict(batch)

    def listing(self) -> dict:
        with self._lock:
            return listing([dict(b) for b in reversed(self.batches.values())])

    def poll(self, batch_id: str) -> dict:
        with self._lock:
            batch = self._batch(batch_id)
            if batch["status"] == "cancelling":
                batch.update(status="cancelled", cancelled_at=int(time.time()))
            elif batch["status"] in ("validating", "in_progress"):
                self._polls[batch_id] += 1
                if self._polls[batch_id] >= self.polls_to_complete:
                    self._finish(batch)
                else:
                    batch.update(
                        status="in_progress", in_progress_at=batch["in_progress_at"] or int(time.time())
                    )
            return dict(batch)

    def cancel(self, batch_id: str) -> dict:
        with self._lock:
            batch = self._batch(batch_id)
            if batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelling", cancelling_at=int(time.time()))
            return dict(batch)

    def _batch(self, batch_id: str) -> dict:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise HTTPError(404, f"No such Batch object: {batch_id}", code="batch_not_found")
        return batch

    def _finish(self, batch: dict) -> None:
        """Validate the input, answer every line, write the output and error files."""
        now = int(time.time())
        requests, problems = parse_batch_input(
            self.files.files[batch["input_file_id"]].data, batch["endpoint"]
        )
        if problems:
            errors = [
                {"code": "invalid_request", "message": msg, "line": line, "param": None}
                for line, msg in problems
            ]
            batch.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            return
        outputs, failures = [], []
        for custom_id, body in requests:
            line, failed = self._answer_line(custom_id, body)
            (failures if failed else outputs).append(line)
        if self.shuffle_seed is not None:
            random.Random(self.shuffle_seed).shuffle(outputs)
        out = self.files.store(f"{batch['id']}_output.jsonl", "batch_output", jsonl(outputs))
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
            batch["error_file_id"] = self.files.store(
                f"{batch['id']}_error.jsonl", "batch_output", jsonl(failures)
            ).id

    def _answer_line(self, custom_id: str, body: dict) -> tuple[dict, bool]:
        """One output line (an answer, or a failure when the line fault says so) and whether it failed."""
        line = {"id": new_id("batch_req_"), "custom_id": custom_id, "response": None, "error": None}
        override = self.line_fault(custom_id, body) if self.line_fault else None
        if isinstance(override, Fault) and override.kind != "content":
            if override.kind in ("rate_limit", "server_error"):
                kind = "rate_limit_error" if override.kind == "rate_limit" else "server_error"
                error = error_body(f"fake {override.kind} for this request", kind)
                line["response"] = {
                    "status_code": override.status,
                    "request_id": new_id("req_"),
                    "body": error,
                }
            else:
                line["error"] = {"code": "request_failed", "message": f"fake {override.kind}"}
            return line, True
        if isinstance(override, Fault):
            content = override.text or ""
        elif isinstance(override, str):
            content = override
        else:
            content = self.respond(body)
        line["response"] = {
            "status_code": 200,
            "request_id": new_id("req_"),
            "body": completion(body, content),
        }
        return line, False


def parse_batch_input(data: bytes, endpoint: str) -> tuple[list[tuple[str, dict]], list[tuple[int, str]]]:
    """The (custom_id, body) requests of a batch input file, and (line, message) for each bad line."""
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
