"""Replaying a Dockerfile's install steps without Docker, for tests/test_dockerfile.py: the
instructions parsed, the stages run in folders standing for their images.


Replay rules (what an image build does that the replay does differently, and why):
- The final stage is replayed after the stages it takes files from (`--from=<stage>`), each in a folder of
  its own standing for its image. A stage with no instructions (`FROM <image> AS uv`) is an image the
  replay cannot build: `COPY --from` of it links the tool of that name from this machine's PATH into a
  folder first on the steps' PATH.
- Absolute paths written in WORKDIR, COPY and ENV are image paths: they live under that folder.
- `RUN --mount=type=cache` mounts are dropped: uv uses this machine's (warm) cache instead.
- `RUN --mount=type=bind,from=<stage>,source=S,target=T` links T, in the replayed image, to S in the
  replayed stage for that step only, and T written in the step's script means that link.
- A RUN preceded by a comment starting with `image-only:` is skipped (accounts, ownership); such a step
  may not run uv, so no install step can hide behind the mark.
- The steps see this machine's environment less every UV_* (but the cache folder) and virtual-environment
  variable, and less the PATH entries inside the environment running the tests (so nothing installs into
  it, and none of its executables masks a missing install), then the build's ARGs and ENVs, then:
  UV_LINK_MODE=hardlink and UV_COMPILE_BYTECODE=0 (copying and compiling 6 GB of torch and CUDA libraries
  takes minutes and checks nothing about the install), and the network fence below.
- Network: the tests reach nothing beyond loopback. Every step runs with UV_OFFLINE=1 (the lock's wheels
  and the pinned build backend come from the warm cache) and with every proxy variable naming a loopback
  proxy that refuses and records what it is asked, and NO_PROXY naming loopback. The one exception: uv's
  offline mode refuses even a loopback index, so a test that points an index at loopback replays the
  final stage with UV_OFFLINE=0, and the fence is then what keeps it on loopback.
- A cold cache is not a broken step: when a step fails because uv found a pinned package neither in its
  cache (offline) nor on loopback (the fence was asked), the test is skipped with uv's words as the reason.
  A step that asks the fence and still succeeds fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_ONLY = "image-only:"
HOST_OVERRIDES = {
    "UV_LINK_MODE": "hardlink",
    "UV_COMPILE_BYTECODE": "0",
}
PROXY_VARIABLES = [f"{name}_proxy" for name in ("http", "https", "all")]
COLD_CACHE = re.compile(r".*(?:was not|wasn't) found in the cache.*")
HOST_ONLY = re.compile(r"UV_(?!CACHE_DIR$)|VIRTUAL_ENV$|CONDA_PREFIX$|PYTHONPATH$|PYTHONHOME$")


@dataclass
class Instruction:
    keyword: str
    args: str
    image_only: bool = False


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comment lines inside a continuation are dropped, as
    Docker drops them."""
    found: list[Instruction] = []
    pending: list[str] = []
    image_only = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            image_only = image_only or (not pending and stripped.lstrip("# ").startswith(IMAGE_ONLY))
            continue
        if not stripped and not pending:
            continue
        pending.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            keyword, _, args = " ".join(pending).partition(" ")
            found.append(Instruction(keyword.upper(), args.strip(), image_only))
            pending, image_only = [], False
    return found


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    """Each stage's instructions after its FROM, by its name (`AS name`, else `stage-<index>` as Docker
    numbers them), in Dockerfile order; ARGs before the first FROM only serve FROM lines."""
    found: dict[str, list[Instruction]] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            name = words[-1] if len(words) > 2 and words[-2].upper() == "AS" else f"stage-{len(found)}"
            found[name] = []
        elif found:
            found[list(found)[-1]].append(ins)
    return found


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    return list(stages(instructions).values())[-1]


def taken_from(instructions: list[Instruction]) -> list[str]:
    """The stages a stage takes files from: `COPY --from=X` and `RUN --mount=...,from=X,...`."""
    return [name for ins in instructions for name in re.findall(r"(?:--|,)from=([\w.-]+)", ins.args)]


def flags(args: str) -> tuple[list[tuple[str, str]], str]:
    """Leading `--name=value` options of RUN or COPY, in order (RUN may repeat --mount), and the rest."""
    options: list[tuple[str, str]] = []
    while match := re.match(r"--([\w-]+)=(\S+)\s+", args):
        options.append((match[1], match[2]))
        args = args[match.end() :]
    return options, args


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match with `**`) as a regex over '/'-separated paths."""
    out, i = "", 0
    while i < len(pattern):
        for token, regex in (("**/", "(?:.*/)?"), ("**", ".*"), ("*", "[^/]*"), ("?", "[^/]")):
            if pattern.startswith(token, i):
                out, i = out + regex, i + len(token)
                break
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    lines = (line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines())
    return [
        (line.startswith("!"), glob_regex(line.removeprefix("!").strip().strip("/")))
        for line in lines
        if line and not line.startswith("#")
    ]


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for exception, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not exception
    return result


def host_environment(tools: Path) -> dict[str, str]:
    """This machine's environment as the replayed steps see it (see the module docstring)."""
    env = {name: value for name, value in os.environ.items() if not HOST_ONLY.match(name)}
    tests_env = Path(sys.prefix).resolve()
    kept = [
        entry
        for entry in env["PATH"].split(os.pathsep)
        if not Path(entry).resolve().is_relative_to(tests_env)
    ]
    env["PATH"] = os.pathsep.join([str(tools), *kept])
    return env


class StepFailed(AssertionError):
    """A RUN step exited non-zero; `state` is the replay as that step left it."""

    def __init__(self, message: str, state: Replay):
        super().__init__(message)
        self.state = state


@dataclass
class Recorder:
    """A loopback HTTP server that answers every request with `status` and records what it was asked."""

    status: int
    asked: list[str] = field(default_factory=list)

    def __enter__(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                recorder.asked.append(f"{self.command} {self.path}")
                self.send_error(recorder.status)

            do_CONNECT = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Replay:
    """Runs one stage's WORKDIR, ARG, ENV, SHELL, COPY and RUN steps under `root`; `stages` are the
    replays of the stages it takes files from."""

    root: Path
    fence: Recorder
    build_args: dict[str, str] = field(default_factory=dict)
    stages: dict[str, Replay] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    workdir: str = "/"
    offline: bool = True
    copied: dict[str, Path] = field(default_factory=dict)  # build-context path -> replayed image path
    host: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.tools = self.root / "host-tools"
        self.host = host_environment(self.tools)

    def image_path(self, path: str) -> Path:
        return self.root / (path if path.startswith("/") else f"{self.workdir}/{path}").lstrip("/")

    def expand(self, value: str) -> str:
        """Substitute $VAR and ${VAR} from the build's ARGs and ENVs, else this machine's environment;
        absolute paths written in the Dockerfile become image paths first."""
        value = re.sub(r"(?:^|(?<=:))/[^:\s]*", lambda m: str(self.image_path(m[0])), value)
        scope = {**self.host, **self.args, **self.env}
        return re.sub(r"\$\{?(\w+)\}?", lambda m: scope.get(m[1], ""), value)

    def step(self, ins: Instruction) -> None:
        handlers = {
            "ARG": self.arg,
            "ENV": self.set_env,
            "WORKDIR": self.change_dir,
            "SHELL": self.set_shell,
            "COPY": self.copy,
            "RUN": self.run,
        }
        handlers[ins.keyword](ins.args)

    def arg(self, args: str) -> None:
        name, _, default = args.partition("=")
        self.args[name] = self.build_args.get(name, shlex.split(default)[0] if default else "")

    def set_env(self, args: str) -> None:
        for item in shlex.split(args):
            name, _, value = item.partition("=")
            self.env[name] = self.expand(value)

    def change_dir(self, args: str) -> None:
        self.workdir = args if args.startswith("/") else f"{self.workdir}/{args}"
        self.image_path(self.workdir).mkdir(parents=True, exist_ok=True)

    def set_shell(self, args: str) -> None:
        self.shell = json.loads(args)

    def copy(self, args: str) -> None:
        pairs, rest = flags(args)
        options = dict(pairs)
        *sources, dest = shlex.split(rest)
        if image := options.pop("from", None):
            assert image not in self.stages and not options, f"COPY {args}: the replay links tools only"
            for source in sources:
                found = shutil.which(Path(source).name)
                assert found, f"COPY --from={image} {source}: not on this machine's PATH"
                self.tools.mkdir(parents=True, exist_ok=True)
                (self.tools / Path(source).name).symlink_to(found)
            return
        assert not options, f"COPY {args}: options the replay does not know"
        target = self.image_path(dest)
        rules = ignore_rules()
        for source in sources:
            src = ROOT / source
            assert src.exists(), f"COPY {source}: not in the build context"
            assert not ignored(source, rules), f"COPY {source}: excluded by .dockerignore"
            if src.is_file():
                self.place(source, target / src.name if dest.endswith("/") else target)
                continue
            for file in sorted(src.rglob("*")):
                relative = file.relative_to(ROOT).as_posix()
                if file.is_file() and not ignored(relative, rules):
                    self.place(relative, target / file.relative_to(src))

    def place(self, relative: str, copied: Path) -> None:
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, copied)
        self.copied[relative] = copied

    def bind(self, mount: str, script: str) -> tuple[Path, str]:
        """The link standing for a bind mount of a replayed stage's folder, and the script using it."""
        spec = dict(item.partition("=")[::2] for item in mount.split(","))
        assert spec.get("from") in self.stages, f"--mount={mount}: not from a replayed stage"
        link = self.image_path(spec["target"])
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(self.stages[spec["from"]].image_path(spec["source"]), target_is_directory=True)
        return link, re.sub(rf"{re.escape(spec['target'])}(?=[/\s]|$)", str(link), script)

    def run(self, args: str) -> None:
        options, script = flags(args + " ")
        mounts = [value for name, value in options if name == "mount"]
        assert len(mounts) == len(options), f"RUN {args}: options the replay does not know"
        links = []
        for mount in mounts:
            if "type=bind" in mount.split(","):
                link, script = self.bind(mount, script)
                links.append(link)
            else:
                assert "type=cache" in mount.split(","), f"--mount={mount}: a mount the replay does not know"
        proxies = {name: self.fence.url for name in PROXY_VARIABLES}
        network = {"UV_OFFLINE": "1" if self.offline else "0", **proxies, "no_proxy": "127.0.0.1,localhost"}
        network |= {name.upper(): value for name, value in network.items()}
        env = {**self.host, **self.args, **self.env, **HOST_OVERRIDES, **network}
        try:
            done = subprocess.run(
                [*self.shell, script.strip()],
                cwd=self.image_path(self.workdir),
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            for link in links:
                link.unlink()
        if done.returncode == 0:
            assert not self.fence.asked, f"RUN {script.strip()}: reached beyond loopback: {self.fence.asked}"
            return
        self.skip_if_cache_is_cold(done.stderr)
        message = f"RUN {script.strip()}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
        raise StepFailed(message, self)

    def skip_if_cache_is_cold(self, stderr: str) -> None:
        """A step that failed for want of a cached package says nothing about the Dockerfile."""
        if cold := COLD_CACHE.search(stderr):
            pytest.skip(
                f"uv's cache lacks a package this build pins (fill it online once): {cold[0].strip()}"
            )
        if self.fence.asked:
            pytest.skip(
                f"uv's cache lacks a package this build pins: uv asked {sorted(set(self.fence.asked))}"
            )


def replay(
    root: Path, fence: Recorder, build_args: dict[str, str] | None = None, offline: bool = True
) -> Replay:
    """The final stage of the default build (or one with `--build-arg`s) replayed under `root/<stage>`,
    after the stages it takes files from (always offline); raises StepFailed."""
    staged = stages(parse(DOCKERFILE.read_text()))
    done: dict[str, Replay] = {}

    def build(name: str, offline: bool) -> Replay:
        for needed in taken_from(staged[name]):
            if staged.get(needed) and needed not in done:
                done[needed] = build(needed, offline=True)
        state = Replay(root / name, fence, build_args or {}, stages=dict(done), offline=offline)
        for ins in staged[name]:
            if ins.keyword == "RUN" and ins.image_only:
                assert not re.search(r"\buv\b", ins.args), f"an image-only step runs uv: {ins.args}"
            elif ins.keyword not in {"USER", "ENTRYPOINT", "CMD"}:  # run time only
                state.step(ins)
        return state

    return build(list(staged)[-1], offline)
