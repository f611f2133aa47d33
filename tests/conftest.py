"""Shared fixtures: the real data beside the checkout, one demo build reused read-only, and a
loopback HTTP file server for the download tests."""

import base64
import csv
import json
import shutil
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unimed_data.cli import app
from unimed_data.download import http as dl
from unimed_data.manifest import Manifest

pytest_plugins = ["tests.s3_server", "tests.hub_standin"]  # loopback S3 (`s3`) and Hub (`hub`) servers

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_list_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """A CSV as pandas' `to_csv` writes a frame holding Python lists (UniMed's annotation files):
    each list cell is its `str`, quoted only where needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([str(cell) if isinstance(cell, list) else cell for cell in row] for row in rows)


def layout_manifest(name: str, modality: str, **layout) -> Manifest:
    """A minimal manifest around one layout, for layout tests."""
    return Manifest.model_validate(
        {"name": name, "modality": modality, "license": "research", "layout": layout}
    )


def run_cli(*args: str):
    """Invoke the CLI in-process; returns the click Result."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def csv_label_config(tmp_path: Path, name: str, root: Path) -> Path:
    """A build config for one `csv_label` manifest (labels.csv: image column `path`, label column
    `finding`) whose files are in root/<name>/; returns the config's path."""
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(
        f"name: {name}\nmodality: xray\nlicense: CC0\n"
        "layout: {type: csv_label, csv: labels.csv, image_column: path, label_column: finding}\n"
    )
    config = tmp_path / "build.yaml"
    config.write_text(f"datasets: [{{manifest: {manifest}, root: '{root}'}}]\n")
    return config


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory) -> Path:
    """`unimed-data build --demo` output; tests that change it must copy it first. A fixed patient
    salt fixes the patient-level splits, so tests that train and evaluate see the same held-out set."""
    out = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("UNIMED_PATIENT_SALT", "demo-fixture-salt")
        result = run_cli("build", "--demo", "--out", out, "--shard-size", "8", "--workers", "2")
    assert result.exit_code == 0, result.output
    return out


class FileServer:
    """Serves `files` (path -> bytes) on 127.0.0.1 with Range support, one-off mid-body drops,
    and basic auth on the paths listed in `protected`."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()
        self.protected: dict[str, tuple[str, str]] = {}
        self.requests: list[dict] = []
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                server.requests.append(
                    {
                        "path": path,
                        "range": self.headers.get("Range"),
                        "auth": self.headers.get("Authorization"),
                    }
                )
                if path in server.protected:
                    user, pw = server.protected[path]
                    want = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="x"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                if path not in server.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files[path]
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and not server.ignore_range:
                    start = int(rng[6:].split("-", 1)[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in server.drop_once:
                    server.drop_once.discard(path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def build(demo_out: Path, tmp_path: Path) -> Path:
    """A copy of the demo build that a test may publish, change or break."""
    out = tmp_path / "build"
    shutil.copytree(demo_out, out)
    return out


def free_port() -> int:
    """A loopback port nothing listens on now (for a rendezvous a test starts)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(module: str, *arguments, ranks: int = 2) -> list[str]:
    """The command that runs `python -m module arguments` as `ranks` CPU processes under torchrun
    (static rendezvous on a free loopback port)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}"]
    launcher += ["--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    return [*launcher, "-m", module, *map(str, arguments)]


def sha256sums(text: str) -> dict[str, str]:
    """A SHA256SUMS file's text as name -> digest."""
    return {name: digest for digest, name in (line.split("  ", 1) for line in text.splitlines())}


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "BACKOFF_S", 0.01)
    monkeypatch.setattr(dl, "CHUNK", 4096)
    s = FileServer()
    yield s
    s.close()


def shard_json_field(out: Path, field: str) -> dict[str, object]:
    """One json field of every sample, by key, from every tar under `out`'s split folders."""
    found = {}
    for shard in sorted(out.glob("*/*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    found[member.name.split(".")[0]] = json.loads(tar.extractfile(member).read())[field]
    return found
