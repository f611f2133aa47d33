"""The Dockerfile: hadolint-clean, its install steps replayed in a fresh virtual environment (so a broken
step fails here even where no Docker daemon exists), a non-root user, no baked-in secrets, and
`unimed-data` as the entrypoint.

Replay rules (what an image build does that the replay does differently, and why):
- Only the final stage is replayed; `COPY --from=<stage>` brings a tool from another image: the
  replay links the tool of that name from this machine's PATH (uv) into a folder first on its PATH.
- Absolute paths written in WORKDIR, COPY and ENV are image paths: they live under `tmp_path/image`.
- `RUN --mount=type=cache` mounts are dropped: uv uses this machine's (warm) cache instead.
- A RUN preceded by a comment starting with `image-only:` is skipped (accounts, ownership); such a step
  may not run uv, so no install step can hide behind the mark.
- The steps see this machine's environment less every UV_* (but the cache folder) and virtual-environment
  variable, and less the PATH entries inside the environment running the tests (so nothing installs into
  it, and none of its executables masks a missing install), then the build's ARGs and ENVs, then:
  UV_OFFLINE=1 (the tests have no network: the lock's wheels come from the warm cache),
  UV_LINK_MODE=hardlink and UV_COMPILE_BYTECODE=0 (copying and compiling 6 GB of torch and CUDA libraries
  takes minutes and checks nothing about the install).
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
HOST_ONLY = re.compile(r"UV_(?!CACHE_DIR$)|VIRTUAL_ENV$|CONDA_PREFIX$|PYTHONPATH$|PYTHONHOME$")
SECRET_NAME = re.compile(r"^AWS_|^HF_TOKEN$|KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


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


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from + 1 :]


def flags(args: str) -> tuple[dict[str, str], str]:
    """Leading `--name=value` options of RUN or COPY, and the rest."""
    options: dict[str, str] = {}
    while match := re.match(r"--([\w-]+)=(\S+)\s+", args):
        options[match[1]] = match[2]
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
class Replay:
    """Runs the final stage's WORKDIR, ARG, ENV, SHELL, COPY and RUN steps under `root`."""

    root: Path
    build_args: dict[str, str] = field(default_factory=dict)
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
        options, rest = flags(args)
        *sources, dest = shlex.split(rest)
        if "from" in options:
            for source in sources:
                found = shutil.which(Path(source).name)
                assert found, f"COPY --from={options['from']} {source}: not on this machine's PATH"
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

    def run(self, args: str) -> None:
        options, script = flags(args + " ")
        assert set(options) <= {"mount"} and "type=cache" in options.get("mount", "type=cache"), args
        env = {
            **self.host,
            **self.args,
            **self.env,
            **HOST_OVERRIDES,
            "UV_OFFLINE": "1" if self.offline else "0",
        }
        done = subprocess.run(
            [*self.shell, script.strip()],
            cwd=self.image_path(self.workdir),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            message = f"RUN {script.strip()}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
            raise StepFailed(message, self)


def replay(root: Path, build_args: dict[str, str] | None = None, offline: bool = True) -> Replay:
    """The default build (or one with `--build-arg`s) replayed under `root`; raises StepFailed."""
    state = Replay(root, build_args or {}, offline=offline)
    for ins in final_stage(parse(DOCKERFILE.read_text())):
        if ins.keyword == "RUN" and ins.image_only:
            assert not re.search(r"\buv\b", ins.args), f"an image-only step runs uv: {ins.args}"
        elif ins.keyword not in {"USER", "ENTRYPOINT", "CMD"}:  # run time only
            state.step(ins)
    return state


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_build_installs_a_working_cli_and_trainer(tmp_path: Path):
    state = replay(tmp_path / "image")
    venv = Path(state.env["VIRTUAL_ENV"])
    data = state.image_path(state.workdir)  # the final WORKDIR, the image's working folder
    env = {"PATH": f"{venv / 'bin'}:{state.host['PATH']}", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=data, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    assert "sources" in run("unimed-data", "--help")
    names = {source["name"] for source in json.loads(run("unimed-data", "sources", "--json"))}
    assert names == {path.stem for path in (ROOT / "manifests").glob("*.yaml")}
    where = run("python", "-c", "import unimed_data, unimed_train.main; print(unimed_data.__file__)")
    assert Path(where.strip()).is_relative_to(venv), "imported from outside the image's environment"
    assert (venv / "bin" / "torchrun").is_file()
    run("unimed-data", "build", "--demo", "--out", str(data / "out"))
    assert json.loads((data / "out" / "stats.json").read_text())["totals"]["samples"] > 0
    assert state.copied["uv.lock"].read_bytes() == (ROOT / "uv.lock").read_bytes()


def test_a_failing_install_step_fails_the_build(tmp_path: Path):
    with pytest.raises(StepFailed, match="no-such-extra"):
        replay(tmp_path / "extra", {"EXTRAS": "train no-such-extra"})
    with pytest.raises(StepFailed, match="TORCH=rocm: expected cuda or cpu"):
        replay(tmp_path / "torch", {"TORCH": "rocm"})


@pytest.fixture
def empty_index():
    """A package index on loopback that has nothing, and the paths uv asked it for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simple", asked
    server.shutdown()
    server.server_close()


def test_cpu_build_installs_the_lock_without_cuda_then_asks_the_cpu_index_for_locked_torch(
    tmp_path: Path, empty_index
):
    """Online only for loopback: the locked wheels come from the warm cache, and the CPU index (which
    has no torch here, so the step fails) is asked for torch at the version in uv.lock."""
    index, asked = empty_index
    with pytest.raises(StepFailed) as failed:
        replay(tmp_path / "image", {"TORCH": "cpu", "TORCH_CPU_INDEX": index}, offline=False)
    locked = re.search(r'name = "torch"\nversion = "([^"]+)"', (ROOT / "uv.lock").read_text())[1]
    assert f"torch=={locked}" in str(failed.value)
    assert "/simple/torch/" in asked
    venv = Path(failed.value.state.env["VIRTUAL_ENV"])
    installed = {p.name.split("-")[0].lower() for p in venv.glob("lib/python*/site-packages/*.dist-info")}
    assert {"sympy", "networkx", "open_clip_torch", "s3fs", "huggingface_hub"} <= installed
    assert not {name for name in installed if re.match(r"torch$|torchvision$|triton$|nvidia_|cuda_", name)}


def test_dockerignore_keeps_the_context_to_what_the_image_copies():
    rules = ignore_rules()
    for kept in ("pyproject.toml", "uv.lock", "unimed_data/cli.py", "train/unimed_train/main.py"):
        assert not ignored(kept, rules), kept
    for dropped in (".venv/bin/python", "demo/out/stats.json", "tests/test_cli.py", ".git/HEAD"):
        assert ignored(dropped, rules), dropped
    assert ignored("unimed_data/__pycache__/cli.cpython-311.pyc", rules)


def test_runs_unprivileged_without_baked_secrets_and_starts_the_cli():
    instructions = parse(DOCKERFILE.read_text())
    users = [ins.args for ins in final_stage(instructions) if ins.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, users
    declared = [
        item.partition("=")[0]
        for ins in instructions
        if ins.keyword in {"ENV", "ARG"}
        for item in shlex.split(ins.args)
    ]
    assert not [name for name in declared if SECRET_NAME.search(name)], declared
    entry = [json.loads(ins.args) for ins in instructions if ins.keyword == "ENTRYPOINT"]
    assert entry == [["unimed-data"]]


def test_every_uv_step_reads_the_lock_without_rewriting_it():
    """Offline, an unfrozen `uv sync` can leave uv.lock unchanged by luck; the flag is what guarantees it."""
    runs = [ins.args for ins in parse(DOCKERFILE.read_text()) if ins.keyword == "RUN"]
    lock_steps = [m[0] for run in runs for m in re.finditer(r"uv (?:sync|export|lock)\b[^;&|]*", run)]
    assert lock_steps, "no uv step reads uv.lock"
    assert all(" --frozen" in step for step in lock_steps), lock_steps
