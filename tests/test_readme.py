"""The README's walkthrough runs as written: its marked bash and python blocks, in order, in a fresh
folder, with `uv run [--all-extras]` standing for this test's own environment."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- walkthrough: tests/test_readme.py runs this block -->"
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def walkthrough_blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for part in text.split(MARKER)[1:]:
        match = BLOCK.match(part.lstrip("\n"))
        assert match, f"{MARKER} must be followed by a bash or python block"
        blocks.append((match[1], match[2]))
    return blocks


def test_the_first_command_of_the_readme_is_the_walkthroughs_build():
    first = BLOCK.search(README.read_text(encoding="utf-8"))[2].splitlines()[0]
    build = walkthrough_blocks()[0][1].splitlines()[0]
    assert first.split("#")[0].strip() == build.strip()


def test_the_walkthrough_runs_as_written(tmp_path: Path):
    blocks = walkthrough_blocks()
    assert [kind for kind, _ in blocks] == ["bash", "python", "bash"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for kind, code in blocks:
        if kind == "bash":
            script = re.sub(r"\buv run (--all-extras )?", "", code)
            command = ["bash", "-euo", "pipefail", "-c", script]
        else:
            command = [sys.executable, "-c", code]
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 0, (
            f"{kind} block failed:\n{code}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        if kind == "python":
            assert re.match(r"\(\d+, \d+\) \w+ \S", done.stdout), done.stdout
    report = (tmp_path / "demo" / "report" / "results.md").read_text()
    assert "## zeroshot" in report and "## linear_probe" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
