"""The trainer reads `http(s)://` shard patterns: shards and sizes.json from a loopback web server
(conftest's `server`, or a TLS one), alone or mixed with a local source by `::` and `@weight`,
through fsspec (no `curl` needed)."""

import datetime
import functools
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.cli import UsageError
from unimed_train.data.spec import dataset_size, parse_spec
from unimed_train.main import main

from tests.tiny_models import tiny_argv


def _sizes(demo_out: Path, split: str) -> dict[str, int]:
    return json.loads((demo_out / split / "sizes.json").read_text())


def _pattern(base: str, demo_out: Path, split: str) -> str:
    """The brace pattern of a split's shards under `base` (a folder or a URL)."""
    return f"{base}/{split}/unimed-{{000000..{len(_sizes(demo_out, split)) - 1:06d}}}.tar"


def _serve(server, demo_out: Path) -> str:
    """The build's train folder on the server; returns the pattern of its shards there."""
    server.files = {f"/train/{p.name}": p.read_bytes() for p in (demo_out / "train").iterdir()}
    return _pattern(server.url, demo_out, "train")


def test_the_trainer_reads_shards_and_their_sizes_over_http(
    demo_out: Path, tmp_path: Path, server, monkeypatch
):
    remote = _serve(server, demo_out)
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))  # no curl: http goes through fsspec
    assert dataset_size(parse_spec(remote)) == sum(_sizes(demo_out, "train").values())
    out = tmp_path / "run"
    main(tiny_argv(tmp_path, remote, out, "--steps", "10", "--batch-size", "8", "--warmup", "2"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 11))
    fetched = {r["path"] for r in server.requests}
    assert {f"/train/{name}" for name in _sizes(demo_out, "train")} <= fetched  # every shard, over http


def test_a_remote_and_a_local_source_mix_by_weight(demo_out: Path, tmp_path: Path, server):
    remote = _serve(server, demo_out)
    local = _pattern(str(demo_out), demo_out, "val")
    mixed = parse_spec(f"{remote}@3::{local}@1")
    assert [(s.pattern, s.weight) for s in mixed] == [(remote, 3.0), (local, 1.0)]
    both = sum(_sizes(demo_out, "train").values()) + sum(_sizes(demo_out, "val").values())
    assert dataset_size(mixed) == both
    out = tmp_path / "run"
    argv = ["--steps", "4", "--batch-size", "8", "--warmup", "1", "--resampled"]
    main(tiny_argv(tmp_path, f"{remote}@3::{local}@1", out, *argv))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert any(r["path"].startswith("/train/unimed-") for r in server.requests)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself, and its key (PEM files)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def https_demo(demo_out: Path, tmp_path: Path):
    """The demo build served over TLS by a threaded stdlib server; yields (base URL, CA file)."""
    cert, key = _self_signed(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(demo_out)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    httpd.shutdown()
    httpd.server_close()


TRAIN_OVER_HTTPS = """
import sys
from pathlib import Path

from unimed_train.cli import UsageError
from unimed_train.data.spec import dataset_size, parse_spec
from unimed_train.main import main

from tests.tiny_models import tiny_argv

pattern, tmp, out = sys.argv[1:]
print("samples", dataset_size(parse_spec(pattern)))
main(tiny_argv(Path(tmp), pattern, Path(out), "--steps", "3", "--batch-size", "8", "--warmup", "1"))
"""


def test_https_shards_are_read_with_the_certificates_the_environment_trusts(
    demo_out: Path, tmp_path: Path, https_demo
):
    base, cert = https_demo
    pattern, out = _pattern(base, demo_out, "train"), tmp_path / "run"
    with pytest.raises(UsageError) as refused:  # this process does not trust the certificate
        dataset_size(parse_spec(pattern))
    assert str(refused.value).startswith(
        f"{base}/train/sizes.json: cannot read (ClientConnectorCertificateError"
    )
    # in a fresh process: the TLS client takes SSL_CERT_FILE when it starts, as a user's job would
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["SSL_CERT_FILE"] = str(cert)
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_OVER_HTTPS, pattern, str(tmp_path), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"samples {sum(_sizes(demo_out, 'train').values())}" in done.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]


def test_a_remote_shard_that_cannot_be_opened_is_skipped_with_a_warning_naming_it(demo_out: Path, server):
    import webdataset as wds
    from unimed_train.data.sharding import tar_samples

    _serve(server, demo_out)
    first = sorted(_sizes(demo_out, "train"))[0]
    urls = [{"url": f"{server.url}/train/{first}"}, {"url": f"{server.url}/train/gone.tar"}]
    with pytest.warns(UserWarning, match=r"gone\.tar"):
        samples = list(tar_samples(urls))
    assert len(samples) == _sizes(demo_out, "train")[first]
    with pytest.raises(FileNotFoundError, match=r"gone\.tar"):
        list(tar_samples(urls, handler=wds.reraise_exception))


def test_a_mistyped_remote_prefix_or_an_unreachable_store_is_one_usage_error(s3, monkeypatch):
    from unimed_train.data.spec import check_shards, dataset_size

    with pytest.raises(
        UsageError, match=r"^s3://corpus/typo/unimed-000000\.tar: not found \(the first shard"
    ):
        check_shards("s3://corpus/typo/unimed-{000000..000003}.tar")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    spec = "s3://corpus/unimed/train/unimed-{000000..000003}.tar"
    for call in (check_shards, lambda s: dataset_size(parse_spec(s))):
        with pytest.raises(UsageError, match=r"^s3://corpus/unimed/train/\S+: cannot read \(\w+") as caught:
            call(spec)
        assert "\n" not in str(caught.value)
