"""Fetchers against the loopback server: Zenodo, Figshare, PhysioNet, manual, from_file, HF args."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from unimed_data.download import (
    AuthError,
    ManualDownloadRequired,
    MissingCredentials,
    download_dataset,
    download_entry,
)
from unimed_data.download.spec import (
    FigshareEntry,
    HttpEntry,
    HuggingFaceEntry,
    ManualEntry,
    PhysioNetEntry,
    ZenodoEntry,
)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zenodo_record(server, tmp_path, monkeypatch):
    archive = _zip({"imgs/a.png": b"png-a", "labels.csv": b"x,y\n"})
    readme = b"read me"
    server.files["/rec/files/data.zip"] = archive
    server.files["/rec/files/README.txt"] = readme
    record = {
        "files": [
            {
                "key": k,
                "size": len(v),
                "checksum": "md5:" + hashlib.md5(v).hexdigest(),
                "links": {"self": f"{server.url}/rec/files/{k}"},
            }
            for k, v in (("data.zip", archive), ("README.txt", readme))
        ]
    }
    server.files["/api/records/42"] = json.dumps(record).encode()
    monkeypatch.setenv("UNIMED_ZENODO_API", f"{server.url}/api")
    paths = download_entry(ZenodoEntry(fetcher="zenodo", record="42", target="raw"), tmp_path)
    raw = tmp_path / "raw"
    assert raw / "data.zip" in paths and raw / "README.txt" in paths and raw / "imgs" in paths
    assert (raw / "imgs/a.png").read_bytes() == b"png-a" and (raw / "labels.csv").exists()
    n = len(server.requests)
    download_entry(ZenodoEntry(fetcher="zenodo", record="42", target="raw"), tmp_path)
    assert len(server.requests) == n  # listing cached, files verified, archive marker present


def test_zenodo_bad_md5(server, tmp_path, monkeypatch):
    server.files["/f/x.bin"] = b"abc"
    rec = {
        "files": [
            {
                "key": "x.bin",
                "size": 3,
                "checksum": "md5:" + "0" * 32,
                "links": {"self": f"{server.url}/f/x.bin"},
            }
        ]
    }
    server.files["/api/records/7"] = json.dumps(rec).encode()
    monkeypatch.setenv("UNIMED_ZENODO_API", f"{server.url}/api")
    with pytest.raises(Exception, match="md5"):
        download_entry(ZenodoEntry(fetcher="zenodo", record="7"), tmp_path)
    assert not (tmp_path / "x.bin").exists()


def test_figshare_article(server, tmp_path, monkeypatch):
    a, b = b"first file", b"second file"
    server.files["/dl/1"], server.files["/dl/2"] = a, b
    art = {
        "files": [
            {
                "name": "a.txt",
                "size": len(a),
                "computed_md5": hashlib.md5(a).hexdigest(),
                "download_url": f"{server.url}/dl/1",
            },
            {
                "name": "b.txt",
                "size": len(b),
                "computed_md5": hashlib.md5(b).hexdigest(),
                "download_url": f"{server.url}/dl/2",
            },
        ]
    }
    server.files["/v2/articles/99"] = json.dumps(art).encode()
    monkeypatch.setenv("UNIMED_FIGSHARE_API", f"{server.url}/v2")
    paths = download_entry(FigshareEntry(fetcher="figshare", article="99", files=["b.txt"]), tmp_path)
    assert paths == [tmp_path / "b.txt"] and paths[0].read_bytes() == b
    assert not (tmp_path / "a.txt").exists()


def test_physionet_basic_auth(server, tmp_path, monkeypatch):
    data = b"waveform"
    sums = f"{hashlib.sha256(data).hexdigest()} sub/rec.dat\n".encode()
    for p, d in (("/files/proj/1.0/SHA256SUMS.txt", sums), ("/files/proj/1.0/sub/rec.dat", data)):
        server.files[p] = d
        server.protected[p] = ("pn-user", "pn-pass-123")
    monkeypatch.setenv("UNIMED_PHYSIONET_FILES", f"{server.url}/files")
    entry = PhysioNetEntry(fetcher="physionet", project="proj/1.0")
    monkeypatch.delenv("PHYSIONET_USER", raising=False)
    monkeypatch.delenv("PHYSIONET_PASSWORD", raising=False)
    with pytest.raises(MissingCredentials, match="PHYSIONET_USER and PHYSIONET_PASSWORD"):
        download_entry(entry, tmp_path)
    monkeypatch.setenv("PHYSIONET_USER", "pn-user")
    monkeypatch.setenv("PHYSIONET_PASSWORD", "wrong-secret")
    with pytest.raises(AuthError) as exc:
        download_entry(entry, tmp_path)
    msg = str(exc.value)
    assert "data use agreement for proj/1.0" in msg and "wrong-secret" not in msg and "pn-user" not in msg
    monkeypatch.setenv("PHYSIONET_PASSWORD", "pn-pass-123")
    assert download_entry(entry, tmp_path) == [tmp_path / "sub/rec.dat"]
    assert (tmp_path / "sub/rec.dat").read_bytes() == data


def test_manual_instructions_and_verification(tmp_path):
    data = b"request-only data"
    entry = ManualEntry(
        fetcher="manual",
        instructions="Request access at the portal.",
        url="https://example.org/request",
        expect=[
            {"name": "set.csv", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
            {"name": "img/1.png"},
        ],
    )
    with pytest.raises(ManualDownloadRequired) as exc:
        download_entry(entry, tmp_path)
    err = str(exc.value)
    assert (
        "Request access at the portal." in err and "https://example.org/request" in err and "set.csv" in err
    )
    assert "set.csv: missing" in str(exc.value) and "1.png: missing" in str(exc.value)
    (tmp_path / "set.csv").write_bytes(b"wrong")
    (tmp_path / "img").mkdir()
    (tmp_path / "img/1.png").write_bytes(b"png")
    with pytest.raises(ManualDownloadRequired, match="size 5 bytes, expected 17"):
        download_entry(entry, tmp_path)
    (tmp_path / "set.csv").write_bytes(data)
    assert download_entry(entry, tmp_path) == [tmp_path / "set.csv", tmp_path / "img/1.png"]


class _M:
    """The two manifest fields download_dataset reads, plus the entries."""

    def __init__(self, download, name="demo-set", root=None):
        self.download, self.name, self.root = download, name, root


def test_from_file_unpacks_and_dataset_report(tmp_path):
    archive = _zip({"cls/x.jpg": b"jpeg"})
    src = tmp_path / "dl" / "set.zip"
    src.parent.mkdir()
    src.write_bytes(archive)
    entry = HttpEntry(
        fetcher="http", url="https://example.org/set.zip", sha256=hashlib.sha256(archive).hexdigest()
    )
    raw = tmp_path / "raw"
    report = download_dataset(_M([entry]), raw, from_file=src)
    assert report.dataset == "demo-set" and not report.skipped
    assert (raw / "demo-set/cls/x.jpg").read_bytes() == b"jpeg"
    assert download_dataset(_M([entry]), raw, from_file=src).skipped
    bad = tmp_path / "dl" / "other.zip"
    bad.write_bytes(b"not it")
    with pytest.raises(Exception, match="does not verify"):
        download_dataset(_M([entry], name="x2"), raw, from_file=bad)


def test_from_file_matches_a_url_with_a_query_string(tmp_path):
    archive = _zip({"cls/y.jpg": b"jpeg"})
    src = tmp_path / "dl" / "a.zip"
    src.parent.mkdir()
    src.write_bytes(archive)
    entries = [
        ManualEntry(fetcher="manual", instructions="ask", expect=[{"name": "labels.csv"}]),
        HttpEntry(fetcher="http", url="https://example.org/files/a.zip?download=1"),
    ]
    assert entries[1].file_name == "a.zip"
    download_dataset(_M(entries), tmp_path / "raw", from_file=src)
    assert (tmp_path / "raw/demo-set/cls/y.jpg").read_bytes() == b"jpeg"


def test_huggingface_arguments_and_token_not_leaked(tmp_path, monkeypatch, caplog):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        (tmp_path / "hf" / "data.parquet").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "hf" / "data.parquet").write_bytes(b"pq")
        return kwargs["local_dir"]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("MY_HF_TOKEN", "hf_secret_token_value")
    entry = HuggingFaceEntry(
        fetcher="huggingface",
        repo_id="org/set",
        revision="abc",
        allow_patterns=["*.parquet"],
        token_env="MY_HF_TOKEN",
        target="hf",
    )
    assert download_entry(entry, tmp_path) == [tmp_path / "hf" / "data.parquet"]
    assert calls == [
        {
            "repo_id": "org/set",
            "repo_type": "dataset",
            "revision": "abc",
            "allow_patterns": ["*.parquet"],
            "local_dir": str(tmp_path / "hf"),
            "token": "hf_secret_token_value",
        }
    ]

    def failing(**kwargs):
        raise RuntimeError(f"401 for token {kwargs['token']}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(Exception) as exc:
        download_entry(entry, tmp_path)
    assert "hf_secret_token_value" not in str(exc.value) and "MY_HF_TOKEN" in str(exc.value)
    assert "hf_secret_token_value" not in caplog.text


def test_kaggle_without_credentials_is_a_clear_error_not_an_exit(tmp_path, monkeypatch):
    from unimed_data.download import MissingCredentials, download_entry
    from unimed_data.download.spec import KaggleEntry

    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kaggle here
    with pytest.raises(MissingCredentials, match="KAGGLE_USERNAME"):
        download_entry(KaggleEntry(fetcher="kaggle", dataset="owner/some-set"), tmp_path / "dest")
