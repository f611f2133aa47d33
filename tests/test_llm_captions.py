"""The `openai` caption backend against a real OpenAI-compatible server on loopback.

The server injects 429 with Retry-After, 5xx, stalls past the client timeout, dropped connections,
malformed JSON and wrong caption counts: every unit must end captioned or with a reason, no unit
may be answered twice, and a rerun must send no request at all.
"""

import json
from pathlib import Path

import pytest

from tests.llm_server import FakeOpenAI, Fault, FaultPlan, HTTPError, captions_json
from unimed_data.captions.base import CaptionFailure, CaptionUnit
from unimed_data.captions.client import EndpointDown, EndpointRefused, redact
from unimed_data.captions.openai_backend import OpenAICaptioner
from unimed_data.captions.requests import DatasetHints
from unimed_data.config import LLMConfig

KEY = "sk-test-secret-0123456789abcdef"

UNITS = [
    CaptionUnit("chexpert", "xray", ("Cardiomegaly",)),
    CaptionUnit("chexpert", "xray", ("Edema", "Pleural Effusion"), ("Edema",)),
    CaptionUnit("chexpert", "xray", ("No Finding",)),
    CaptionUnit("odir", "fundus", ("glaucoma",)),
    CaptionUnit("kidney", "ct", ("kidney stone",)),
    CaptionUnit("brain", "mri", ("glioma",)),
    CaptionUnit("openi", "xray", (), (), "Heart size is normal. The lungs are clear. No pleural effusion."),
]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("UNIMED_TEST_KEY", KEY)


def captioner(server: FakeOpenAI, tmp_path: Path, **settings) -> OpenAICaptioner:
    options = dict(
        model="test-model",
        base_url=server.base_url,
        api_key_env="UNIMED_TEST_KEY",
        concurrency=4,
        timeout=0.5,
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        tokenizer="clip",
    )
    hints = {"chexpert": DatasetHints({"cardiomegaly": "an enlarged heart"}, ("Pleural_Effusion",))}
    return OpenAICaptioner(
        LLMConfig(**{**options, **settings}),
        cache_path=tmp_path / "cache.sqlite",
        per_record=4,
        hints=hints,
    )


def test_every_fault_ends_captioned_or_recorded_and_no_unit_is_answered_twice(tmp_path: Path):
    plan = FaultPlan(
        by_prompt={
            "cardiomegaly": [Fault.rate_limit(retry_after=0.05), Fault.server_error(500)],
            "glaucoma": [Fault.stall(2.0), Fault.drop()],
            "glioma": [
                Fault.content("this is not JSON"),
                Fault.content(captions_json(["Only one caption."])),
            ],
            "kidney stone": [Fault.server_error(503)] * 10,  # never recovers: ends as a failure
        }
    )
    with FakeOpenAI(faults=plan, api_key=KEY) as server:
        llm = captioner(server, tmp_path, max_attempts=4)
        answers = llm.caption(UNITS)
        assert server.errors == []
        for unit, answer in answers.items():
            if unit.dataset == "kidney":
                assert (
                    isinstance(answer, CaptionFailure)
                    and "gave up after 4 attempts: HTTP 503" in answer.reason
                )
            else:
                assert isinstance(answer, list) and 1 <= len(answer) <= 4, (unit, answer)
        # Each answered unit had exactly one accepted completion: the retries are for failures only.
        valid = [r for r in server.chat_requests() if r.status == 200 and r.fault is None]
        prompts = [r.body["messages"][1]["content"] for r in valid]
        assert len(prompts) == len(set(prompts)) == len(UNITS) - 1
        usage = llm.usage
        assert usage.calls == len(server.chat_requests(None)) - sum(
            r.status != 200 for r in server.chat_requests()
        )
        assert usage.retries >= 6 and usage.invalid_answers == 2 and usage.failures == 1
        assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
        sent = len(server.requests)

        # A rerun sends nothing for what is done; only the failed unit is asked again.
        again = captioner(server, tmp_path, max_attempts=1)
        answers_again = again.caption([u for u in UNITS if u.dataset != "kidney"])
        assert len(server.requests) == sent
        assert again.usage.cache_hits == len(UNITS) - 1 and again.usage.calls == 0
        assert answers_again == {u: a for u, a in answers.items() if u.dataset != "kidney"}


def test_retry_after_is_honoured_up_to_the_configured_cap(tmp_path: Path):
    faults = [Fault.rate_limit(retry_after=0.4), Fault.rate_limit(retry_after=30)]
    with FakeOpenAI(faults=faults, api_key=KEY) as server:
        captioner(server, tmp_path, concurrency=1, retry_max_seconds=0.6).caption(UNITS[:1])
        first, second, third = server.chat_requests()[:3]
        assert first.status == 429 and second.started - first.finished >= 0.38
        assert second.status == 429 and 0.55 <= third.started - second.finished < 2  # 30 s capped at 0.6 s


def test_concurrency_is_bounded(tmp_path: Path):
    units = [CaptionUnit("d", "ct", (f"finding {i}",)) for i in range(24)]
    with FakeOpenAI(latency=0.05, api_key=KEY) as server:
        answers = captioner(server, tmp_path, concurrency=3).caption(units)
        assert all(isinstance(a, list) for a in answers.values())
        assert server.max_in_flight == 3


def test_uncertain_and_normal_units_get_their_prompts_and_label_ids_never_pass(tmp_path: Path):
    leaking = captions_json(["Pleural_Effusion seen.", "A", "B", "C"])
    with FakeOpenAI(
        faults=FaultPlan(by_prompt={"pleural effusion": [Fault.content(leaking)]}), api_key=KEY
    ) as server:
        answers = captioner(server, tmp_path).caption(UNITS[:3])
        user = {r.body["messages"][1]["content"] for r in server.chat_requests()}
        assert any("an enlarged heart" in text for text in user)  # the manifest's definition
        retried = [r for r in server.chat_requests() if len(r.body["messages"]) > 2]
        assert retried and "label id" in retried[0].body["messages"][-1]["content"]
        assert all("Pleural_Effusion" not in c for a in answers.values() for c in a)


def test_a_refused_key_stops_the_run_at_once_and_is_never_written(tmp_path: Path):
    with FakeOpenAI(api_key="another-key") as server:  # the server refuses our key: HTTP 401
        with pytest.raises(EndpointRefused, match="HTTP 401") as refused:
            captioner(server, tmp_path, concurrency=1).caption(UNITS)
        assert len(server.chat_requests()) == 1  # not one refused request per unit
    assert KEY not in str(refused.value)
    assert KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()
    assert redact(f"Incorrect API key provided: {KEY}", KEY) == "Incorrect API key provided: ***"
    assert "sk-" not in redact("Incorrect API key provided: sk-abc12345****wxyz", "")


def test_an_endpoint_that_is_down_stops_the_run_instead_of_retrying_every_unit(tmp_path: Path):
    with FakeOpenAI(api_key=KEY) as server:
        llm = captioner(server, tmp_path, concurrency=2)
    units = [CaptionUnit("d", "ct", (f"finding {i}",)) for i in range(40)]
    with pytest.raises(EndpointDown, match="in a row failed"):
        llm.caption(units)  # the server is stopped: connections are refused
    assert llm.usage.retries < 40


def test_a_200_that_is_not_a_completion_is_retried(tmp_path: Path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    with FakeOpenAI(api_key=KEY) as upstream:
        answered = []

        class HtmlOnce(BaseHTTPRequestHandler):
            def do_POST(self):
                import urllib.request

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not answered:
                    answered.append(1)
                    page = b"<html>proxy login</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                forward = urllib.request.Request(
                    upstream.base_url + "/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
                )
                data = urllib.request.urlopen(forward).read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        proxy = ThreadingHTTPServer(("127.0.0.1", 0), HtmlOnce)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            settings = dict(base_url=f"http://127.0.0.1:{proxy.server_port}/v1")
            answers = captioner(upstream, tmp_path, concurrency=1, **settings).caption(UNITS[:1])
        finally:
            proxy.shutdown()
    assert all(isinstance(a, list) for a in answers.values()) and answered


def test_definitions_and_the_pilot_are_part_of_the_stage_identity(tmp_path: Path):
    with FakeOpenAI(api_key=KEY) as server:
        one, two = captioner(server, tmp_path), captioner(server, tmp_path)
    two.hints = {"chexpert": DatasetHints({"cardiomegaly": "a big heart"}, ())}
    assert one.identity != two.identity
    assert one.answer_identity == two.answer_identity  # cached answers of other units stay valid
    two.hints, two.limit = one.hints, 2
    two.choose_pilot(UNITS)
    assert one.identity != two.identity and two.selected(UNITS) == sorted(UNITS[:2], key=repr)


def test_missing_key_is_a_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("UNIMED_TEST_KEY")
    with FakeOpenAI() as server, pytest.raises(RuntimeError, match="UNIMED_TEST_KEY"):
        captioner(server, tmp_path).caption(UNITS[:1])


def test_endpoints_without_json_mode_are_parsed_defensively(tmp_path: Path):
    def no_json_mode(body):
        if "response_format" in body:
            raise HTTPError(400, "response_format is not supported by this model")
        return "Here you go:\n```json\n" + captions_json(["One.", "Two.", "Three.", "Four."]) + "\n```"

    with FakeOpenAI(responder=no_json_mode, latency=0.05, api_key=KEY) as server:
        answers = captioner(server, tmp_path, concurrency=8).caption(UNITS)
        assert all(a == ["One.", "Two.", "Three.", "Four."] for a in answers.values() if isinstance(a, list))
        assert len(answers) == len(UNITS) and all(isinstance(a, list) for a in answers.values())
        # JSON mode is dropped for the whole run; requests already in flight with it are resent.
        assert sum(r.status == 400 for r in server.chat_requests()) <= 8


def test_limit_pilots_on_the_first_units_and_dry_run_needs_no_network(tmp_path: Path):
    with FakeOpenAI(api_key=KEY) as server:
        llm = captioner(server, tmp_path)
        llm.limit = 2
        answers = llm.caption(UNITS)
        done = [u for u, a in answers.items() if isinstance(a, list)]
        assert len(done) == 2 and len(server.chat_requests()) == 2
        skipped = [a for a in answers.values() if isinstance(a, CaptionFailure)]
        assert all("--limit" in a.reason for a in skipped)
    full = captioner(server, tmp_path)  # the server is stopped: planning must not touch it
    plan = full.plan(UNITS)
    assert (plan["units"], plan["cached"], plan["calls"]) == (7, 2, 5)
    assert plan["estimated_prompt_tokens"] > 0 and len(plan["example_prompts"]) == 2


def test_batch_mode_uploads_once_resumes_in_flight_and_reasks_invalid_lines(tmp_path: Path):
    def bad_line(custom_id, body):
        return "not json" if "glioma" in json.dumps(body) else None

    with FakeOpenAI(batch_polls_to_complete=3, batch_line_fault=bad_line, api_key=KEY) as server:
        llm = captioner(server, tmp_path, batch=True, batch_poll_seconds=0.01, price_input_per_1m=2.0)
        answers = llm.caption(UNITS)
        assert all(isinstance(a, list) for a in answers.values())
        assert server.batches_created == 1
        # Only the unit whose batch answer was invalid went through the ordinary endpoint.
        assert len(server.chat_requests()) == 1 and "glioma" in server.chat_requests()[0].prompt
        assert llm.usage.batch_requests == len(UNITS) and llm.usage.invalid_answers == 1
        assert llm.usage.cost_usd > 0

        # A batch in flight when the process stopped is polled again, not submitted twice.
        units = [CaptionUnit("d", "ct", (f"finding {i}",)) for i in range(3)]
        first = captioner(server, tmp_path / "resume", batch=True, batch_poll_seconds=0.01)
        from unimed_data.captions import batch as batch_module
        from unimed_data.captions.cache import CaptionCache

        cache = CaptionCache(first.cache_path)
        pending = {first.request(u)[0]: (u, first.request(u)[1]) for u in units}
        request_set = batch_module.cache_key({"batch": sorted(pending)})
        import openai

        client = openai.OpenAI(api_key=KEY, base_url=server.base_url)
        batch_module._submit(client, first, pending, cache, request_set)  # submitted, then "killed"
        cache.close()
        created = server.batches_created
        answers = captioner(server, tmp_path / "resume", batch=True, batch_poll_seconds=0.01).caption(units)
        assert server.batches_created == created and all(isinstance(a, list) for a in answers.values())
