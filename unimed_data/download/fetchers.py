"""One fetcher per `download:` entry type; `download_entry` dispatches on `entry.fetcher`.

Every fetcher puts its files into `dataset_dir / entry.target` (created as needed), verifies them,
and, if `entry.extract`, unpacks the zip/tar archives among them there (see `extract.py`).
`download_entry` returns the fetched files followed by the top-level paths unpacked from archives.

Mirror: `mirror` replaces the scheme, host and port of each file URL of `http`, `zenodo` and
`figshare` entries and is prefixed to its path; query strings are kept, userinfo dropped:
mirror `https://mirror.example.org/unimed` + origin `https://zenodo.org/records/123/files/x.zip?download=1`
-> `https://mirror.example.org/unimed/records/123/files/x.zip?download=1`. Metadata requests
(Zenodo/Figshare APIs) and credentialed sources (PhysioNet, Kaggle, Hugging Face) never use it.

API bases are module constants, overridable by env: `UNIMED_ZENODO_API`
(default https://zenodo.org/api), `UNIMED_FIGSHARE_API` (https://api.figshare.com/v2),
`UNIMED_PHYSIONET_FILES` (https://physionet.org/files).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from unimed_data.download.extract import extract_archive, is_archive, safe_relpath
from unimed_data.download.http import (
    DownloadError,
    NotFoundError,
    download_file,
    fetch_bytes,
    redact_url,
    verify_file,
)
from unimed_data.download.spec import (
    FigshareEntry,
    HttpEntry,
    HuggingFaceEntry,
    KaggleEntry,
    ManualEntry,
    PhysioNetEntry,
    ZenodoEntry,
)
from unimed_data.tables import atomic_write_text, temp_path

ZENODO_API = "https://zenodo.org/api"
FIGSHARE_API = "https://api.figshare.com/v2"
PHYSIONET_FILES = "https://physionet.org/files"


class ManualDownloadRequired(DownloadError):
    """A request-only source whose files are not (all) in place; the message says what is missing."""


class MissingCredentials(DownloadError):
    """The environment variables a credentialed fetcher needs are not set."""


def mirror_url(url: str, mirror: str | None) -> str:
    """`url` with its scheme+host replaced by `mirror` (whose path is prefixed); see module doc."""
    if not mirror:
        return url
    m, o = urlsplit(mirror), urlsplit(url)
    path = m.path.rstrip("/") + (o.path if o.path.startswith("/") else "/" + o.path)
    return urlunsplit((m.scheme, m.netloc, path, o.query, ""))


def _base(env: str, default: str) -> str:
    return os.environ.get(env, default).rstrip("/")


def _dest_for(dest: Path, name: str, where: str) -> Path:
    rel = safe_relpath(name)
    if rel is None:
        raise DownloadError(f"{where}: unsafe file name {name!r}")
    return dest.joinpath(*rel.parts)


class _Result:
    def __init__(self) -> None:
        self.files: list[Path] = []
        self.transferred = False

    def add(self, path: Path, transferred: bool) -> None:
        self.files.append(path)
        self.transferred |= transferred


def download_entry(
    entry, dataset_dir: Path, *, mirror: str | None = None, from_file: Path | None = None
) -> list[Path]:
    """Fetch (or take `from_file`), verify and unpack one entry; see the module doc."""
    return _run_entry(entry, dataset_dir, mirror=mirror, from_file=from_file)[0]


def _run_entry(entry, dataset_dir: Path, *, mirror=None, from_file=None) -> tuple[list[Path], bool]:
    """(paths, whether anything was transferred or unpacked)."""
    dest = Path(dataset_dir) / entry.target
    dest.mkdir(parents=True, exist_ok=True)
    result = _Result()
    if from_file is not None:
        _from_file(entry, Path(from_file), dest, result)
    else:
        fetch: Callable = _FETCHERS[entry.fetcher]
        fetch(entry, dest, result, mirror)
    paths = list(result.files)
    changed = result.transferred
    if entry.extract:
        for f in result.files:
            if is_archive(f):
                placed = extract_archive(f, dest)
                changed |= bool(placed)
                paths.extend(p for p in placed if p not in paths)
    return paths, changed


# --- fetchers -------------------------------------------------------------------------------------


def _http(entry: HttpEntry, dest: Path, result: _Result, mirror: str | None) -> None:
    name = entry.file_name
    if not name:
        raise DownloadError(f"{redact_url(entry.url)}: no file name in the URL; set `filename`")
    path = _dest_for(dest, name, redact_url(entry.url))
    result.add(path, download_file(mirror_url(entry.url, mirror), path, sha256=entry.sha256, size=entry.size))


def _listing_cache(dest: Path, key: str, fetch: Callable[[], list[dict]]) -> list[dict]:
    """A record's file listing, kept in `dest/.<key>.json` so reruns need no API call."""
    cache = dest / f".{key}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except (OSError, ValueError):
            pass
    files = fetch()
    atomic_write_text(cache, json.dumps(files))
    return files


def _select(files: list[dict], wanted: list[str], where: str) -> list[dict]:
    if not wanted:
        return files
    names = {f["name"] for f in files}
    missing = [w for w in wanted if w not in names]
    if missing:
        raise DownloadError(f"{where}: no such file(s) {missing}; available: {sorted(names)}")
    return [f for f in files if f["name"] in wanted]


def _get_json(url: str) -> dict:
    try:
        return json.loads(fetch_bytes(url))
    except ValueError as err:
        raise DownloadError(f"{redact_url(url)}: not JSON: {err}") from None


def _zenodo(entry: ZenodoEntry, dest: Path, result: _Result, mirror: str | None) -> None:
    api = f"{_base('UNIMED_ZENODO_API', ZENODO_API)}/records/{entry.record}"

    def listing() -> list[dict]:
        files = []
        for f in _get_json(api).get("files", []):
            algo, _, digest = (f.get("checksum") or "").partition(":")
            url = (f.get("links") or {}).get("self") or (f.get("links") or {}).get("download")
            if not url:
                raise DownloadError(f"{api}: file {f.get('key')!r} has no download link")
            files.append({"name": f["key"], "url": url, "size": f.get("size"), algo or "md5": digest or None})
        return files

    _fetch_listed(
        _listing_cache(dest, f"zenodo-{entry.record}", listing), entry.files, api, dest, result, mirror
    )


def _figshare(entry: FigshareEntry, dest: Path, result: _Result, mirror: str | None) -> None:
    api = f"{_base('UNIMED_FIGSHARE_API', FIGSHARE_API)}/articles/{entry.article}"

    def listing() -> list[dict]:
        return [
            {
                "name": f["name"],
                "url": f["download_url"],
                "size": f.get("size"),
                "md5": f.get("computed_md5") or f.get("supplied_md5") or None,
            }
            for f in _get_json(api).get("files", [])
        ]

    key = f"figshare-{entry.article}"
    _fetch_listed(_listing_cache(dest, key, listing), entry.files, api, dest, result, mirror)


def _fetch_listed(files, wanted, api: str, dest: Path, result: _Result, mirror: str | None) -> None:
    for f in _select(files, wanted, api):
        path = _dest_for(dest, f["name"], api)
        transferred = download_file(
            mirror_url(f["url"], mirror), path, size=f.get("size"), md5=f.get("md5"), sha256=f.get("sha256")
        )
        result.add(path, transferred)


def _physionet(entry: PhysioNetEntry, dest: Path, result: _Result, mirror: str | None) -> None:
    user, password = os.environ.get(entry.user_env), os.environ.get(entry.password_env)
    if not user or not password:
        raise MissingCredentials(
            f"physionet {entry.project}: set {entry.user_env} and {entry.password_env} to your "
            "physionet.org user name and password (and sign the project's data use agreement)"
        )
    auth = (user, password)
    hint = (
        f"sign the data use agreement for {entry.project} on physionet.org and check "
        f"{entry.user_env}/{entry.password_env}"
    )
    base = f"{_base('UNIMED_PHYSIONET_FILES', PHYSIONET_FILES)}/{entry.project.strip('/')}"
    sums: dict[str, str] = {}
    try:
        text = fetch_bytes(f"{base}/SHA256SUMS.txt", auth=auth, auth_hint=hint).decode("utf-8")
        for line in text.splitlines():
            digest, _, name = line.strip().partition(" ")
            if digest and name:
                sums[name.strip().lstrip("*")] = digest.lower()
    except NotFoundError:
        if not entry.files:
            raise DownloadError(
                f"physionet {entry.project}: no SHA256SUMS.txt to list the files; set `files:`"
            ) from None
    names = entry.files or sorted(sums)
    for name in names:
        path = _dest_for(dest, name, f"physionet {entry.project}")
        transferred = download_file(f"{base}/{name}", path, sha256=sums.get(name), auth=auth, auth_hint=hint)
        result.add(path, transferred)


def _huggingface(entry: HuggingFaceEntry, dest: Path, result: _Result, mirror: str | None) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DownloadError("huggingface fetcher needs the `huggingface_hub` package") from None
    token = os.environ.get(entry.token_env) or None
    before = _listing(dest)
    try:
        snapshot_download(
            repo_id=entry.repo_id,
            repo_type=entry.repo_type,
            revision=entry.revision,
            allow_patterns=entry.allow_patterns or None,
            local_dir=str(dest),
            token=token,
        )
    except Exception as err:  # the hub client raises many types; never echo the token
        msg = str(err).replace(token, "***") if token else str(err)
        raise DownloadError(
            f"huggingface {entry.repo_id}: {type(err).__name__}: {msg} "
            f"(gated or private repos need a token in {entry.token_env})"
        ) from None
    after = _listing(dest)
    for path in sorted(after):
        result.add(path, after[path] != before.get(path))


def _listing(dest: Path) -> dict[Path, tuple[int, int]]:
    out = {}
    for p in dest.rglob("*"):
        rel = p.relative_to(dest).parts
        if p.is_file() and not any(part.startswith(".") for part in rel):
            st = p.stat()
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def _kaggle(entry: KaggleEntry, dest: Path, result: _Result, mirror: str | None) -> None:
    slug = entry.dataset.rstrip("/").rsplit("/", 1)[-1]
    zip_path = dest / f"{slug}.zip"
    if not entry.files and zip_path.is_file():
        result.add(zip_path, False)
        return
    missing = MissingCredentials(
        f"kaggle {entry.dataset}: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or put kaggle.json "
        "in ~/.kaggle/ (Account > Create New API Token on kaggle.com), and accept the dataset's rules"
    )
    try:
        # The kaggle package authenticates when it is imported and exits the process when it cannot.
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise DownloadError(
            "kaggle fetcher needs the `kaggle` package (the project's `download` extra)"
        ) from None
    except (SystemExit, Exception):
        raise missing from None
    api = KaggleApi()
    try:
        api.authenticate()
    except (SystemExit, Exception):
        raise missing from None
    try:
        if entry.files:
            for name in entry.files:
                path = _dest_for(dest, name, f"kaggle {entry.dataset}")
                if path.is_file():
                    result.add(path, False)
                    continue
                api.dataset_download_file(entry.dataset, name, path=str(path.parent), quiet=True)
                result.add(path, True)
        else:
            tmp = dest / ".kaggle-download"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            api.dataset_download_files(entry.dataset, path=str(tmp), unzip=False, quiet=False)
            got = sorted(tmp.iterdir())
            if len(got) != 1:
                raise DownloadError(
                    f"kaggle {entry.dataset}: expected one archive, got {[p.name for p in got]}"
                )
            os.replace(got[0], zip_path)
            shutil.rmtree(tmp, ignore_errors=True)
            result.add(zip_path, True)
    except DownloadError:
        raise
    except Exception as err:
        raise DownloadError(f"kaggle {entry.dataset}: {type(err).__name__}: {err}") from None


def _manual(entry: ManualEntry, dest: Path, result: _Result, mirror: str | None) -> None:
    problems: list[str] = []
    for f in entry.expect:
        path = _dest_for(dest, f.name, "manual")
        problems += verify_file(path, sha256=f.sha256, size=f.size)
    if not entry.expect and not any(p for p in dest.iterdir() if not p.name.startswith(".")):
        problems.append(f"{dest}: empty")
    if problems:
        text = manual_instructions(entry, dest)
        raise ManualDownloadRequired(text + "\nproblems:\n" + "\n".join(f"  {p}" for p in problems))
    for f in entry.expect:
        result.add(_dest_for(dest, f.name, "manual"), False)


def manual_instructions(entry: ManualEntry, dest: Path) -> str:
    lines = ["This dataset must be downloaded by hand:", f"  {entry.instructions.strip()}"]
    if entry.url:
        lines.append(f"  URL: {entry.url}")
    if entry.expect:
        lines.append(f"Place these files in {dest}:")
        for f in entry.expect:
            extra = [f"{f.size} bytes"] if f.size is not None else []
            extra += [f"sha256 {f.sha256}"] if f.sha256 else []
            lines.append(f"  {f.name}" + (f"  ({', '.join(extra)})" if extra else ""))
    else:
        lines.append(f"Put its files in {dest}")
    lines.append("or pass the archive you downloaded with --from-file.")
    return "\n".join(lines)


def _from_file(entry, src: Path, dest: Path, result: _Result) -> None:
    if not src.is_file():
        raise DownloadError(f"{src}: no such file")
    sha256 = size = None
    name = src.name
    if isinstance(entry, HttpEntry):
        sha256, size = entry.sha256, entry.size
        name = entry.file_name or src.name
    elif isinstance(entry, ManualEntry):
        match = [f for f in entry.expect if Path(f.name).name == src.name]
        if len(match) == 1:
            sha256, size, name = match[0].sha256, match[0].size, match[0].name
    problems = verify_file(src, sha256=sha256, size=size)
    if problems:
        raise DownloadError(
            f"--from-file {src} does not verify: " + "; ".join(p.split(": ", 1)[1] for p in problems)
        )
    if is_archive(src) and entry.extract:
        result.add(src, False)  # unpacked by the caller; "changed" then comes from the extraction
        return
    path = _dest_for(dest, name, str(src))
    copy = path.resolve() != src.resolve() and verify_file(path, sha256=sha256, size=size) != []
    if copy:
        tmp = temp_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp)
        os.replace(tmp, path)
    result.add(path, copy)


_FETCHERS: dict[str, Callable] = {
    "http": _http,
    "zenodo": _zenodo,
    "figshare": _figshare,
    "huggingface": _huggingface,
    "kaggle": _kaggle,
    "physionet": _physionet,
    "manual": _manual,
}
