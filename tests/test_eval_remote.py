"""Eval sets read straight from object storage or a web server: a folder of sets uploaded to a
loopback S3 (moto) or served over http scores exactly as its local copy, and a missing remote set
is one clear error line that leaks no secret."""

import json
import socket
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.eval.__main__ import main
from unimed_train.eval.evalsets import EvalSetError, expand_folders, load_evalset

from tests.s3_server import SECRET
from tests.tiny_models import tiny_local_dir
from tests.wds_samples import write_evalset

RUN = ["--label", "tiny", "--batch-size", "8", "--k-shot", "2"]


def _sets(folder: Path) -> Path:
    """Three small sets of every kind; two shards in the classification test split."""
    write_evalset(folder / "shapes", n_classes=3, splits={"train": 3, "test": 3}, shard_size=5, prompts=True)
    write_evalset(folder / "findings", kind="multilabel", n_classes=3, splits={"test": 3}, modality="ct")
    write_evalset(folder / "captions", kind="retrieval", n_classes=3, splits={"test": 2})
    return folder


def _report(model: str, data: str, out: Path, workers: int = 0) -> list[dict]:
    argv = ["--pretrained", model, "--data", data, "--out", str(out), *RUN, "--workers", str(workers)]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def test_a_folder_of_sets_on_s3_scores_exactly_as_its_local_copy(tmp_path: Path, s3, capsys, caplog):
    sets = _sets(tmp_path / "sets")
    s3.put(str(sets), "corpus/evals", recursive=True)
    assert sorted(s3.ls("corpus/evals")) == [
        "corpus/evals/captions",
        "corpus/evals/findings",
        "corpus/evals/shapes",
    ]
    model = tiny_local_dir(tmp_path / "model")

    local = _report(model, str(sets), tmp_path / "local")
    remote = _report(model, "s3://corpus/evals", tmp_path / "remote", workers=2)  # shards read in workers

    ok = [e for e in remote if e["status"] == "ok"]
    assert {e["dataset"] for e in ok} == {"shapes", "findings", "captions"} and len(ok) == 5
    assert remote == local  # same entries, same numbers, to the last digit
    assert load_evalset("s3://corpus/evals/shapes/").root == "s3://corpus/evals/shapes"
    shown = capsys.readouterr()
    written = "".join(p.read_text() for p in (tmp_path / "remote").glob("results.*"))
    assert SECRET not in shown.out + shown.err + caplog.text + written


def test_an_eval_set_served_over_http_needs_no_listing(tmp_path: Path, server):
    sets = _sets(tmp_path / "sets")
    server.files = {f"/{p.relative_to(sets)}": p.read_bytes() for p in sets.rglob("*") if p.is_file()}
    model = tiny_local_dir(tmp_path / "model")
    url = f"{server.url}/shapes"

    # the loopback server lists no folders: a folder URL stands for itself, a set URL is read
    assert expand_folders([server.url, url]) == [server.url, url]
    local = _report(model, str(sets / "shapes"), tmp_path / "local")
    assert _report(model, url, tmp_path / "remote") == local
    fetched = {r["path"] for r in server.requests}
    assert {
        "/shapes/test/0.tar",
        "/shapes/test/1.tar",
        "/shapes/train/0.tar",
        "/shapes/classnames.txt",
    } <= fetched


def test_a_refused_request_is_not_mistaken_for_a_missing_set(tmp_path: Path, server):
    sets = _sets(tmp_path / "sets")
    server.files = {f"/{p.relative_to(sets)}": p.read_bytes() for p in sets.rglob("*") if p.is_file()}
    server.protected["/shapes/test/nshards.txt"] = ("user", "password")
    with pytest.raises(EvalSetError) as caught:
        load_evalset(f"{server.url}/shapes")
    assert str(caught.value).startswith(f"{server.url}/shapes: cannot read (ClientResponseError: 401, ")


def test_a_missing_remote_set_is_one_error_line_naming_the_url(tmp_path: Path, s3, capsys):
    model = tiny_local_dir(tmp_path / "model")
    with pytest.raises(SystemExit) as stop:
        main(["--pretrained", model, "--data", "s3://corpus/evals/nope", "--out", str(tmp_path / "r"), *RUN])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: eval set s3://corpus/evals/nope: no eval set here "
        "(no test/nshards.txt, classnames.txt or info.json)\n"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://no-such-bucket/evals/x", "no eval set here"),
        ("nosuchscheme://host/evals/x", "cannot read (ValueError: Protocol not known: nosuchscheme)"),
    ],
)
def test_unreadable_remote_sets_name_the_url_and_reason(s3, url, reason):
    with pytest.raises(EvalSetError) as caught:
        load_evalset(url)
    assert str(caught.value).startswith(f"{url}: {reason}")
    assert SECRET not in str(caught.value)


def test_an_unreachable_store_is_not_mistaken_for_a_missing_set(s3, monkeypatch):
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(EvalSetError) as caught:
        load_evalset("s3://corpus/evals/shapes")
    message = str(caught.value)
    assert message.startswith("s3://corpus/evals/shapes: cannot read (EndpointConnectionError: ")
    assert f"127.0.0.1:{port}" in message and "\n" not in message and SECRET not in message
