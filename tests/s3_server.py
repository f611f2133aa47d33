"""A real S3 API on loopback for tests: moto's standalone server, one bucket, the environment
pointing boto/s3fs at it through `AWS_ENDPOINT_URL` as a user would."""

from __future__ import annotations

import urllib.request

import pytest

SECRET = "do-not-print-this-secret-0123456789"
BUCKET = "corpus"


@pytest.fixture
def s3(monkeypatch):
    """An s3fs filesystem on a fresh moto server holding the empty bucket `corpus`."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"))
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(BUCKET)
    yield fs
    server.stop()
