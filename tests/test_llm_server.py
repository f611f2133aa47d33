"""The fake OpenAI-compatible server, driven by the real `openai` SDK over loopback."""

import asyncio
import collections
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.llm_server import FakeOpenAI, Fault, FaultPlan, captions_json

PROMPT = "SUBJECT: a left lower lobe opacity\nCOUNT: 3\nrecord rec-1"


def client(server: FakeOpenAI, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=0, **kw)


def aclient(server: FakeOpenAI, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test-key", base_url=server.base_url, max_retries=0, **kw)


def chat(c: openai.OpenAI, prompt: str = PROMPT, **kw):
    return c.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}], **kw)


def test_completion_parses_sync_and_async():
    with FakeOpenAI() as server:
        with client(server) as c:
            resp = chat(c, response_format={"type": "json_object"}, temperature=0.7, seed=0, max_tokens=100)
        captions = json.loads(resp.choices[0].message.content)["captions"]
        assert len(captions) == len(set(captions)) == 3
        assert all("left lower lobe opacity" in cap for cap in captions)
        assert (
            resp.object == "chat.completion" and resp.model == "m" and resp.choices[0].finish_reason == "stop"
        )
        assert resp.usage.prompt_tokens == len(PROMPT.split())
        assert resp.usage.completion_tokens == len(resp.choices[0].message.content.split())
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens

        async def go():
            async with aclient(server) as c:
                return await c.chat.completions.create(
                    model="m", messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "x"}]
                )

        resp = asyncio.run(go())
        assert len(json.loads(resp.choices[0].message.content)["captions"]) == 5  # no COUNT line
        assert server.completions_ok() == 2 and server.completions_ok("rec-1") == 1
        log = server.requests[0]
        assert (log.path, log.method, log.status, log.fault) == ("/v1/chat/completions", "POST", 200, None)
        assert log.body["seed"] == 0 and log.body["response_format"] == {"type": "json_object"}
        assert log.headers["authorization"] == "Bearer test-key"
        assert not server.errors


def test_custom_responder_and_content_fault():
    with FakeOpenAI(responder=lambda body: {"echo": body["model"]}, faults=[Fault.content("not json")]) as s:
        with client(s) as c:
            assert chat(c).choices[0].message.content == "not json"
            assert chat(c).choices[0].message.content == '{"echo": "m"}'
        assert s.completions_ok() == 2 and [r.fault for r in s.requests] == ["content", None]


def test_rate_limit_surfaces_with_retry_after():
    with FakeOpenAI(faults=FaultPlan({"rec-1": [Fault.rate_limit(retry_after=0.5)]})) as server:
        with client(server) as c:
            with pytest.raises(openai.RateLimitError) as info:
                chat(c)
            assert info.value.status_code == 429
            assert info.value.response.headers["retry-after"] == "0.5"
            assert info.value.body["type"] == "rate_limit_error"  # the SDK unwraps {"error": ...}
            chat(c)  # the plan for rec-1 is used up
        assert server.completions_ok("rec-1") == 1
        assert [r.status for r in server.requests] == [429, 200]


def test_server_errors():
    faults = [Fault.server_error(), Fault.server_error(503)]
    with FakeOpenAI(faults=faults) as server, client(server) as c:
        for status in (500, 503):
            with pytest.raises(openai.InternalServerError) as info:
                chat(c)
            assert info.value.status_code == status
        chat(c)


def test_streaming_is_a_bad_request():
    with FakeOpenAI() as server, client(server) as c:
        with pytest.raises(openai.BadRequestError) as info:
            chat(c, stream=True)
        assert info.value.status_code == 400 and info.value.param == "stream"
        assert not server.errors


def test_stall_times_out_and_drop_fails_the_connection():
    with (
        FakeOpenAI(faults=[Fault.stall(3.0), Fault.drop(), None]) as server,
        client(server, timeout=0.3) as c,
    ):
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            chat(c)
        assert time.monotonic() - started < 2
        with pytest.raises(openai.APIConnectionError) as info:
            chat(c)
        assert not isinstance(info.value, openai.APITimeoutError)
        assert json.loads(chat(c).choices[0].message.content)["captions"]
        assert [r.fault for r in server.requests] == ["stall", "drop", None]
        assert server.completions_ok() == 1
    assert not server.errors


def test_fault_plan_by_prompt_and_every():
    plan = FaultPlan(
        {"rec-2": [Fault.server_error(), None, Fault.content("[]")]}, every=[Fault.rate_limit(None)]
    )
    statuses = []
    with FakeOpenAI(faults=plan) as server, client(server) as c:
        for prompt in ["rec-1", "rec-2", "rec-2", "rec-1", "rec-2", "rec-2"]:
            try:
                statuses.append(chat(c, prompt).choices[0].message.content[:2])
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)
                if exc.status_code == 429:
                    assert "retry-after" not in exc.response.headers
    # every[0] hits request 1; rec-2's 1st request gets 500, 2nd normal, 3rd "[]", 4th normal
    assert statuses == [429, 500, '{"', '{"', "[]", '{"']
    assert plan.exhausted


def test_callable_faults_see_the_per_prompt_index():
    seen = []

    def faults(index, body):
        seen.append((body["messages"][-1]["content"], index))
        return Fault.server_error() if index == 0 else None

    with FakeOpenAI(faults=faults) as server, client(server) as c:
        for prompt in ["a", "a", "b"]:
            with contextlib.suppress(openai.InternalServerError):
                chat(c, prompt)
    assert seen == [("a", 0), ("a", 1), ("b", 0)]
    assert server.completions_ok("a") == 1 and server.completions_ok("b") == 0


def test_deque_faults_are_consumed():
    queue = collections.deque([Fault.server_error(502)])
    with FakeOpenAI(faults=queue) as server, client(server) as c:
        with pytest.raises(openai.InternalServerError):
            chat(c)
        chat(c)
        assert not queue and server.completions_ok() == 1


def test_latency_does_not_serialize_requests():
    with FakeOpenAI(latency=0.2) as server:

        async def go():
            async with aclient(server) as c:
                started = time.monotonic()
                await asyncio.gather(
                    *(
                        c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"r{i}"}])
                        for i in range(16)
                    )
                )
                return time.monotonic() - started

        assert asyncio.run(go()) < 1.0
        assert server.max_in_flight > 1 and server.in_flight == 0 and server.completions_ok() == 16


def test_api_key_and_unknown_ids():
    with FakeOpenAI(api_key="right") as server:
        with client(server) as c, pytest.raises(openai.AuthenticationError):
            chat(c)
        with openai.OpenAI(api_key="right", base_url=server.base_url, max_retries=0) as c:
            with pytest.raises(openai.NotFoundError):
                c.files.retrieve("file-nope")
            with pytest.raises(openai.NotFoundError):
                c.batches.retrieve("batch_nope")
            assert [m.id for m in c.models.list()] == ["fake-model"]


def batch_input(ids) -> bytes:
    lines = [
        {
            "custom_id": cid,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": f"SUBJECT: {cid}\nCOUNT: 2"}]},
        }
        for cid in ids
    ]
    return "\n".join(json.dumps(line) for line in lines).encode()


def test_batch_flow_end_to_end():
    def line_fault(custom_id, body):
        return {"u2": captions_json(["dup", "dup"]), "u3": Fault.server_error()}.get(custom_id)

    with FakeOpenAI(batch_line_fault=line_fault, faults=[Fault.server_error()] * 10) as server:
        with client(server) as c:
            upload = c.files.create(
                file=("in.jsonl", io.BytesIO(batch_input(["u1", "u2", "u3"]))), purpose="batch"
            )
            assert (upload.object, upload.purpose, upload.status) == ("file", "batch", "processed")
            assert c.files.retrieve(upload.id).bytes == len(batch_input(["u1", "u2", "u3"]))
            assert c.files.content(upload.id).read() == batch_input(["u1", "u2", "u3"])
            batch = c.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            statuses = [batch.status]
            while batch.status not in ("completed", "failed", "cancelled", "expired"):
                batch = c.batches.retrieve(batch.id)
                statuses.append(batch.status)
            assert statuses == ["validating", "in_progress", "completed"]
            assert batch.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}
            out = [json.loads(line) for line in c.files.content(batch.output_file_id).read().splitlines()]
            errors = [json.loads(line) for line in c.files.content(batch.error_file_id).text.splitlines()]
        by_id = {line["custom_id"]: line for line in out}
        assert set(by_id) == {"u1", "u2"} and all(line["response"]["status_code"] == 200 for line in out)
        first = by_id["u1"]["response"]["body"]
        assert openai.types.chat.ChatCompletion.model_validate(first).usage.total_tokens > 0
        assert json.loads(first["choices"][0]["message"]["content"])["captions"][0] == "An image showing u1."
        assert (
            by_id["u2"]["response"]["body"]["choices"][0]["message"]["content"]
            == '{"captions": ["dup", "dup"]}'
        )
        assert errors[0]["custom_id"] == "u3" and errors[0]["response"]["status_code"] == 500
        assert server.batches_created == 1 and server.files[upload.id].data.startswith(b'{"custom_id"')
        assert server.files[batch.output_file_id].purpose == "batch_output"
        assert server.requests[0].path == "/v1/files" and server.requests[0].body is None
        assert not server.errors


def test_batch_async_invalid_input_and_cancel():
    with FakeOpenAI(batch_polls_to_complete=1) as server:

        async def go():
            async with aclient(server) as c:
                good = await c.files.create(file=("a.jsonl", batch_input(["x"])), purpose="batch")
                bad = await c.files.create(file=("b.jsonl", batch_input(["y", "y"])), purpose="batch")
                kw = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
                done = await c.batches.retrieve((await c.batches.create(input_file_id=good.id, **kw)).id)
                failed = await c.batches.retrieve((await c.batches.create(input_file_id=bad.id, **kw)).id)
                cancelled = await c.batches.cancel((await c.batches.create(input_file_id=good.id, **kw)).id)
                return done, failed, cancelled, await c.batches.retrieve(cancelled.id)

        done, failed, cancelling, cancelled = asyncio.run(go())
        assert (
            done.status == "completed" and done.request_counts.completed == 1 and done.error_file_id is None
        )
        assert failed.status == "failed" and failed.errors.data[0].line == 2 and failed.output_file_id is None
        assert (cancelling.status, cancelled.status) == ("cancelling", "cancelled")
        assert server.batches_created == 3 and not server.errors


def test_files_list_retrieve_delete_and_unknown_routes_are_404():
    with FakeOpenAI() as server, client(server) as c:
        upload = c.files.create(file=("a.jsonl", batch_input(["x"])), purpose="batch")
        assert [f.id for f in c.files.list()] == [upload.id]
        assert c.files.retrieve(upload.id).filename == "a.jsonl"
        assert c.files.delete(upload.id).deleted and not server.files
        with pytest.raises(openai.NotFoundError):
            c.files.retrieve(upload.id)
        with pytest.raises(openai.NotFoundError):
            c.get("/assistants", cast_to=object)
        assert [r.status for r in server.requests] == [200, 200, 200, 200, 404, 404] and not server.errors


def test_the_bench_imports_the_server_as_a_package_from_the_repository_root():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "bench.llm_bench", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--latency" in done.stdout
