"""A loopback stand-in for the Hugging Face Hub's HTTP API, enough for `unimed-data publish hf://...`
(huggingface_hub's HfApi) and for reading back through `HfFileSystem` (`hf://` in fsspec).

It answers: repo info, paths-info, tree listing, YAML validation, preupload, commit (ndjson) and file
downloads (`resolve`, GET/HEAD with Range), each only with `Authorization: Bearer <token>`. Preupload
always answers "regular", so file contents arrive base64 inside the commit: the LFS and xet transfer
protocols are not covered. Files of at least `lfs_from` bytes are then listed as LFS files (sha256 oid,
blob id of the pointer), as the Hub lists big files, so both kinds of digest are exercised. Files are
kept in memory per repo and commit; `main` names the latest commit.

PYTEST_DONT_REWRITE (a plugin the tests also import from; it asserts nothing)
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

TOKEN = "hf_standin_secret_token_0123456789"
REPO = "unimed/corpus"
EMPTY_COMMIT = "0" * 40


def blob_id(data: bytes) -> str:
    """The git object id of a file's bytes, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


@dataclass
class Repo:
    """A dataset repo: each commit's files (path -> bytes) by commit id, `main` the last."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=lambda: {EMPTY_COMMIT: {}})
    main: str = EMPTY_COMMIT

    def files(self, revision: str) -> dict[str, bytes] | None:
        return self.commits.get(self.main if revision == "main" else revision)

    def commit(self, files: dict[str, bytes]) -> str:
        listing = json.dumps({path: blob_id(data) for path, data in sorted(files.items())})
        oid = hashlib.sha1(f"{self.main}\n{listing}".encode()).hexdigest()
        self.commits[oid], self.main = files, oid
        return oid


@dataclass
class HubState:
    """What the stand-in holds and saw: its repos (`repos[repo_id]`), the requests (`(method, path)`),
    and the knobs a test turns to make it misbehave."""

    token: str = TOKEN
    lfs_from: int = 4096  # files of at least this size are listed as LFS files
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)  # Range headers of file downloads
    mangle: set[str] = field(default_factory=set)  # paths whose committed bytes lose their last byte
    echo_token: bool = False  # refuse commits with a message that repeats the Authorization header
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, repo_id: str) -> Repo:
        self.repos[repo_id] = Repo()
        return self.repos[repo_id]

    def files(self, repo_id: str = REPO) -> dict[str, bytes]:
        return dict(self.repos[repo_id].files("main"))

    def delete(self, paths: list[str], repo_id: str = REPO) -> None:
        """Drop files in a new commit, as if they had never arrived."""
        with self.lock:
            repo = self.repos[repo_id]
            repo.commit({path: data for path, data in repo.files("main").items() if path not in paths})

    def commits(self, repo_id: str = REPO) -> int:
        return len(self.repos[repo_id].commits) - 1

    def entry(self, path: str, data: bytes, expand: bool) -> dict:
        """A file as the tree and paths-info endpoints describe it."""
        info: dict = {"type": "file", "path": path, "size": len(data)}
        if len(data) >= self.lfs_from:
            pointer = lfs_pointer(data)
            info["oid"] = blob_id(pointer)
            info["lfs"] = {
                "oid": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": len(pointer),
            }
        else:
            info["oid"] = blob_id(data)
        return _expanded(info) if expand else info


class HubStandIn(HubState):
    """The state served over HTTP on a loopback port (`url`) until `close`."""

    def __init__(self, token: str = TOKEN, lfs_from: int = 4096):
        super().__init__(token=token, lfs_from=lfs_from)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
        self.httpd.hub = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _expanded(info: dict) -> dict:
    return {
        **info,
        "lastCommit": {"id": EMPTY_COMMIT, "title": "stand-in", "date": "2026-01-01T00:00:00.000Z"},
    }


def folder_entry(path: str, expand: bool) -> dict:
    info: dict = {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
    return _expanded(info) if expand else info


def listing(files: dict[str, bytes], folder: str, recursive: bool) -> tuple[list[str], list[str]]:
    """The files and folders under `folder` ("" for the root): its children, or all below it."""
    prefix = f"{folder}/" if folder else ""
    found, folders = [], set()
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            if recursive or depth == 1:
                folders.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            found.append(path)
    return found, sorted(folders)


_REPO = r"/api/datasets/(?P<repo_id>[^/]+/[^/]+)"
_RESOLVE = r"/datasets/(?P<repo_id>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)"
# (HTTP method, URL path) -> the handler's method, called with the path's named parts unquoted
ROUTES = [
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", _REPO + r"(?:/revision/(?P<revision>[^/]+))?", "repo_info"),
    ("POST", _REPO + r"/paths-info/(?P<revision>[^/]+)", "paths_info"),
    ("GET", _REPO + r"/tree/(?P<revision>[^/]+)(?:/(?P<folder>.*))?", "tree"),
    ("POST", _REPO + r"/preupload/(?P<revision>[^/]+)", "preupload"),
    ("POST", _REPO + r"/commit/main", "commit"),
    ("GET", _RESOLVE, "resolve"),
    ("HEAD", _RESOLVE, "resolve"),
]
_ROUTES = [(method, re.compile(pattern), name) for method, pattern, name in ROUTES]
_BAD_TOKEN = "Invalid credentials in Authorization header"


class HubHandler(BaseHTTPRequestHandler):
    """One request to the stand-in; `server.hub` is its HubStandIn."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    def _route(self, method: str) -> None:
        self.hub: HubState = self.server.hub
        url = urlsplit(self.path)
        self.method, self.query = method, parse_qs(url.query)
        self.hub.requests.append((method, url.path))
        if self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            return self._reply(401, {"error": "Invalid credentials"}, {"X-Error-Message": _BAD_TOKEN})
        for verb, pattern, name in _ROUTES:
            found = pattern.fullmatch(url.path) if verb == method else None
            if found:
                parts = {key: unquote(value) for key, value in found.groupdict().items() if value is not None}
                with self.hub.lock:
                    return getattr(self, name)(**parts)
        self._reply(404, {"error": f"the stand-in does not answer {method} {self.path}"})

    def _files(self, repo_id: str, revision: str) -> dict[str, bytes] | None:
        """The files of a repo at a revision, or None after answering 404."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        files = repo.files(revision)
        if files is None:
            self._reply(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
        return files

    def repo_info(self, repo_id: str, revision: str = "main") -> None:
        if self._files(repo_id, revision) is not None:
            repo = self.hub.repos[repo_id]
            sha = repo.main if revision == "main" else revision
            self._reply(200, {"id": repo_id, "sha": sha, "private": True, "siblings": []})

    def paths_info(self, repo_id: str, revision: str) -> None:
        files = self._files(repo_id, revision)
        if files is None:
            return
        form = parse_qs(self._body().decode())
        expand = form.get("expand", ["False"])[0].lower() == "true"
        answer = []
        for path in form.get("paths", []):
            if path in files:
                answer.append(self.hub.entry(path, files[path], expand))
            elif any(name.startswith(f"{path}/") for name in files):
                answer.append(folder_entry(path, expand))
        self._reply(200, answer)

    def tree(self, repo_id: str, revision: str, folder: str = "") -> None:
        files = self._files(repo_id, revision)
        if files is None:
            return
        recursive = self.query.get("recursive", ["False"])[0].lower() == "true"
        expand = self.query.get("expand", ["False"])[0].lower() == "true"
        found, folders = listing(files, folder, recursive)
        if folder and not found and not folders:
            return self._reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        entries = [folder_entry(path, expand) for path in folders]
        self._reply(200, entries + [self.hub.entry(path, files[path], expand) for path in found])

    def preupload(self, repo_id: str, revision: str) -> None:
        """Every file is to come "regular", its bytes inside the commit."""
        files = self._files(repo_id, revision)
        if files is None:
            return
        answer = [
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": blob_id(files[item["path"]]) if item["path"] in files else None,
            }
            for item in json.loads(self._body())["files"]
        ]
        self._reply(200, {"files": answer})

    def commit(self, repo_id: str) -> None:
        files = self._files(repo_id, "main")
        if files is None:
            return
        if self.hub.echo_token:
            return self._reply(400, {"error": f"commit refused for {self.headers['Authorization']}"})
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            return self._reply(400, {"error": "a commit starts with its header"})
        files = dict(files)
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file" and value.get("encoding") == "base64":
                data = base64.b64decode(value["content"])
                files[value["path"]] = data[:-1] if value["path"] in self.hub.mangle else data
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            else:
                return self._reply(422, {"error": f"the stand-in takes no {line['key']} (LFS/xet uploads)"})
        oid = self.hub.repos[repo_id].commit(files)
        url = f"{self.hub.url}/datasets/{repo_id}/commit/{oid}"
        self._reply(200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})

    def validate_yaml(self) -> None:
        content = json.loads(self._body())["content"]
        front = content.split("---\n", 2)[1] if content.startswith("---\n") else ""
        try:
            valid = isinstance(yaml.safe_load(front) or {}, dict)
        except yaml.YAMLError:
            valid = False
        errors = [] if valid else [{"message": "the front matter is not a YAML mapping"}]
        self._reply(200 if valid else 400, {"errors": errors, "warnings": []})

    def resolve(self, repo_id: str, revision: str, path: str) -> None:
        """A file's bytes, or the `Range` asked for; HEAD answers the headers only."""
        repo = self.hub.repos.get(repo_id)
        files = repo.files(revision) if repo else None
        if files is None or path not in files:
            return self._reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        data, status = files[path], 200
        headers = {"X-Repo-Commit": repo.main, "ETag": f'"{blob_id(data)}"', "Accept-Ranges": "bytes"}
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            self.hub.ranges.append(wanted)
            first, _, last = wanted[6:].partition("-")
            start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data if self.method == "GET" else b"", headers, length=len(data))

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _reply(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self._send(status, data, {"Content-Type": "application/json", **(headers or {})}, len(data))

    def _send(self, status: int, data: bytes, headers: dict, length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hub(monkeypatch):
    """The stand-in with the empty dataset repo `unimed/corpus`; huggingface_hub (this process and
    the CLI) pointed at it through HF_ENDPOINT and HF_TOKEN, as a user would point it at a Hub."""
    from huggingface_hub import constants

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = HubStandIn()
    server.create(REPO)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", server.token)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # huggingface_hub read HF_ENDPOINT when it was first imported; HfFileSystem takes it from here
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    yield server
    server.close()
