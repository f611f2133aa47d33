"""Zero-shot prompt templates: bundled per modality (`prompts/eval/<modality>.txt`) or the user's file.

CLIP_benchmark formats each line with `template.format(c=classname)`, so every line must hold
`{c}` and no other braces; a bad line fails here, naming the file and line, instead of deep inside
an evaluation run.
"""

from __future__ import annotations

from pathlib import Path

from unimed_data.bundled import bundled
from unimed_data.evalset.samples import EvalSetError

GENERIC = "generic"


def bundled_templates_file(modality: str):
    """The bundled template file for a modality; the generic one where there is none (or `mixed`)."""
    folder = bundled("prompts") / "eval"
    specific = folder / f"{modality}.txt"
    return specific if specific.is_file() else folder / f"{GENERIC}.txt"


def load_templates(modality: str, path: Path | None = None) -> list[str]:
    """The templates of `path`, else the bundled ones for `modality`; one per non-blank line."""
    source = path if path is not None else bundled_templates_file(modality)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalSetError(f"{source}: cannot read templates ({exc.strerror or exc})") from None
    templates = []
    for number, line in enumerate(text.splitlines(), 1):
        template = line.strip()
        if not template:
            continue
        try:
            usable = "{c}" in template and template.format(c="x") is not None
        except (IndexError, KeyError, ValueError):
            usable = False
        if not usable:
            raise EvalSetError(f"{source}:{number}: a template needs {{c}} and no other braces: {template!r}")
        templates.append(template)
    if not templates:
        raise EvalSetError(f"{source}: no templates")
    return templates


def prompt_ensemble(
    classes: list[str], templates: list[str], definitions: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Every class's prompts: each template filled in, plus the class definition where a manifest
    gives one, as the class-specific wording an evaluator can add to the ensemble."""
    definitions = definitions or {}
    prompts = {}
    for name in classes:
        filled = [template.format(c=name) for template in templates]
        if definition := definitions.get(name):
            filled.append(f"{filled[0].rstrip('.')}, {definition.rstrip('.')}.")
        prompts[name] = filled
    return prompts
