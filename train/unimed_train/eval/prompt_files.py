"""`--prompts FILE`: per-class prompt ensembles from a file, replacing each set's own prompts.

Two forms. A Python file of dictionary literals, such as UniMed-CLIP's `constants.py`: it is parsed
with `ast` and never imported or run (a prompt file is data, and such files may hold anything);
every top-level `NAME = {"class": ["prompt", ...], ...}` whose value `ast.literal_eval` accepts as
str -> list of str is a dictionary, everything else is passed over. A set takes the dictionary its
info.json names in `prompt_dict`. Or a JSON file `{set name: {class: [prompts]}}`, keyed by the
name in the set's info.json (else its folder name).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unimed_train.eval.evalsets import EvalSet

Prompts = dict[str, list[str]]


class PromptFileError(ValueError):
    """A prompt file that cannot be read or does not cover a set; the message names the file."""


@dataclass
class PromptFile:
    path: Path
    keyed_by: str  # "prompt_dict" (a Python file) or "set name" (a JSON file)
    dicts: dict[str, Prompts]


def _prompt_dict(value: object) -> Prompts | None:
    """`value` as {class: [prompts]} when it has exactly that shape, else None."""
    if not isinstance(value, dict):
        return None
    for name, prompts in value.items():
        if not isinstance(name, str) or not isinstance(prompts, list):
            return None
        if not all(isinstance(p, str) for p in prompts):
            return None
    return value


def _assigned_name(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """(name, value) of `NAME = value` or `NAME: T = value` at top level, else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None


def _python_dicts(path: Path, text: str) -> dict[str, Prompts]:
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise PromptFileError(f"{path}:{exc.lineno}: not Python ({exc.msg})") from None
    found: dict[str, Prompts] = {}
    for node in tree.body:
        assigned = _assigned_name(node)
        if assigned is None:
            continue
        try:
            value = ast.literal_eval(assigned[1])
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue  # a call, a name, an f-string...: not a literal, so not a prompt dictionary
        prompts = _prompt_dict(value)
        if prompts is not None:
            found[assigned[0]] = prompts
    return found


def _json_dicts(path: Path, text: str) -> dict[str, Prompts]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptFileError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise PromptFileError(f'{path}: expected {{"set name": {{"class": ["prompt", ...]}}}}')
    for name, value in raw.items():
        if _prompt_dict(value) is None:
            raise PromptFileError(f'{path}: set {name}: expected {{"class": ["prompt", ...]}}')
    return raw


def read_prompt_file(path: str | Path) -> PromptFile:
    """The dictionaries of a `.py` or `.json` prompt file; `PromptFileError` when unreadable."""
    path = Path(path)
    if path.suffix not in (".py", ".json"):
        raise PromptFileError(f"{path}: expected a .py file of dictionary literals or a .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise PromptFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix == ".py":
        return PromptFile(path, "prompt_dict", _python_dicts(path, text))
    return PromptFile(path, "set name", _json_dicts(path, text))


def _dict_for(prompt_file: PromptFile, evalset: EvalSet) -> Prompts:
    where = f"{prompt_file.path}: set {evalset.name} ({evalset.root})"
    if prompt_file.keyed_by == "set name":
        key = evalset.name
    else:
        key = evalset.info.get("prompt_dict")
        if not isinstance(key, str) or not key:
            raise PromptFileError(f"{where}: its info.json names no prompt_dict to take from the file")
    if key not in prompt_file.dicts:
        have = ", ".join(sorted(prompt_file.dicts)) or "none"
        raise PromptFileError(f"{where}: the file has no prompt dictionary {key!r} (it has: {have})")
    return prompt_file.dicts[key]


def prompts_for(prompt_file: PromptFile, evalset: EvalSet) -> Prompts:
    """{class: prompts} for every class of `evalset`, in its class order (keys the set lacks are
    not used); `PromptFileError` naming the file, the set and the class when one is not covered."""
    chosen = _dict_for(prompt_file, evalset)
    out: Prompts = {}
    for name in evalset.classnames:
        if name not in chosen:
            raise PromptFileError(
                f"{prompt_file.path}: set {evalset.name}: class {name!r} has no prompts in the file"
            )
        prompts = [p for p in chosen[name] if p.strip()]
        if not prompts:
            raise PromptFileError(
                f"{prompt_file.path}: set {evalset.name}: class {name!r} has an empty prompt list"
            )
        out[name] = prompts
    return out


def use_prompt_file(prompt_file: PromptFile, evalset: EvalSet) -> None:
    """Make `evalset` score with the file's prompts only (no template fallback). Retrieval sets
    have no classes and are left as they are."""
    if evalset.kind == "retrieval":
        return
    evalset.prompts = prompts_for(prompt_file, evalset)
    evalset.templates = []
