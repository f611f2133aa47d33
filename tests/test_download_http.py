"""Streaming HTTP downloads against a real loopback server: resume, checksums, errors, credentials."""

from __future__ import annotations

import hashlib

import pytest

from unimed_data.download.fetchers import download_entry, mirror_url
from unimed_data.download.http import AuthError, ChecksumError, DownloadError, NotFoundError, download_file
from unimed_data.download.spec import HttpEntry


def _payload(n=100_000) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_resume_after_dropped_connection(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.drop_once.add("/a.bin")
    dest = tmp_path / "a.bin"
    assert download_file(f"{server.url}/a.bin", dest, sha256=_sha(data), size=len(data)) is True
    assert dest.read_bytes() == data
    assert not (tmp_path / "a.bin.part").exists()
    ranges = [r["range"] for r in server.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-"


def test_restart_when_server_ignores_range(server, tmp_path):
    data = _payload(5000)
    server.files["/b.bin"] = data
    server.ignore_range = True
    (tmp_path / "b.bin.part").write_bytes(b"garbage!")
    download_file(f"{server.url}/b.bin", tmp_path / "b.bin", sha256=_sha(data))
    assert (tmp_path / "b.bin").read_bytes() == data
    assert server.requests[0]["range"] == "bytes=8-"


def test_checksum_mismatch_removes_partial(server, tmp_path):
    server.files["/c.bin"] = b"hello world"
    dest = tmp_path / "c.bin"
    with pytest.raises(ChecksumError) as exc:
        download_file(f"{server.url}/c.bin", dest, sha256="0" * 64)
    msg = str(exc.value)
    assert f"{server.url}/c.bin" in msg and "0" * 64 in msg and _sha(b"hello world") in msg
    assert not dest.exists() and not (tmp_path / "c.bin.part").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_not_found(server, tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        download_file(f"{server.url}/missing.bin", tmp_path / "m.bin")


def test_auth_failure_never_reveals_credentials(server, tmp_path, caplog):
    server.files["/p.bin"] = b"secret data"
    server.protected["/p.bin"] = ("alice", "s3cr3t-pw")
    url_with_creds = f"http://bob:hunter2-pw@127.0.0.1:{server.httpd.server_address[1]}/p.bin"
    with pytest.raises(AuthError) as exc:
        download_file(url_with_creds, tmp_path / "p.bin", auth_hint="check MY_USER/MY_PASSWORD")
    msg = str(exc.value)
    assert "bob" not in msg and "hunter2" not in msg and "MY_USER" in msg and "401" in msg
    with pytest.raises(AuthError) as exc:
        download_file(f"{server.url}/p.bin", tmp_path / "p.bin", auth=("alice", "wrong-pw"))
    assert "alice" not in str(exc.value) and "wrong-pw" not in str(exc.value)
    assert "hunter2" not in caplog.text and "wrong-pw" not in caplog.text
    # right credentials work, sent preemptively in the Authorization header
    download_file(f"{server.url}/p.bin", tmp_path / "p.bin", auth=("alice", "s3cr3t-pw"))
    assert (tmp_path / "p.bin").read_bytes() == b"secret data"
    assert not any(tmp_path.glob("*.part"))


def test_retries_are_bounded(server, tmp_path, monkeypatch):
    port = server.httpd.server_address[1]
    server.close()
    with pytest.raises(DownloadError, match="giving up after 2 retries"):
        download_file(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", retries=2)


def test_idempotent_rerun_does_not_contact_server(server, tmp_path):
    data = _payload(3000)
    server.files["/d.bin"] = data
    dest = tmp_path / "d.bin"
    assert download_file(f"{server.url}/d.bin", dest, sha256=_sha(data)) is True
    n = len(server.requests)
    assert download_file(f"{server.url}/d.bin", dest, sha256=_sha(data)) is False
    assert download_file(f"{server.url}/d.bin", dest, sha256=_sha(data), size=len(data)) is False
    assert len(server.requests) == n
    # a corrupted final file is fetched again
    dest.write_bytes(b"x" * len(data))
    assert download_file(f"{server.url}/d.bin", dest, sha256=_sha(data)) is True
    assert dest.read_bytes() == data


def test_mirror_rewriting(server, tmp_path):
    assert (
        mirror_url(
            "https://zenodo.org/records/123/files/x.zip?download=1", "https://mirror.example.org/unimed/"
        )
        == "https://mirror.example.org/unimed/records/123/files/x.zip?download=1"
    )
    assert mirror_url("https://u:p@host.org/a/b.zip", "http://m:8080") == "http://m:8080/a/b.zip"
    assert mirror_url("https://host.org/a.zip", None) == "https://host.org/a.zip"
    data = _payload(2000)
    server.files["/unimed/files/set/e.bin"] = data
    entry = HttpEntry(fetcher="http", url="https://unreachable.invalid/files/set/e.bin", sha256=_sha(data))
    paths = download_entry(entry, tmp_path, mirror=f"{server.url}/unimed")
    assert paths == [tmp_path / "e.bin"] and paths[0].read_bytes() == data
    assert server.requests[-1]["path"] == "/unimed/files/set/e.bin"
