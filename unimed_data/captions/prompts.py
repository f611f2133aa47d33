"""Chat prompts for the LLM caption backend, rendered from Jinja2 templates.

A label unit renders `llm/labels_<modality>.j2` (or `llm/labels_generic.j2`), a report unit
`llm/report_findings.j2`; an evaluation set's class renders `llm/class_prompts.j2` (`unimed-data
prompts`). Each template holds the system message, a line `---USER---`, then the user message.
Templates in a user folder win over the bundled ones by path, as for the offline template backend.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import jinja2

from unimed_data.bundled import bundled
from unimed_data.captions.base import CaptionUnit
from unimed_data.captions.labelsets import split_labels
from unimed_data.captions.template import MODALITY_NAMES, clinical, join_and, with_article

USER_MARKER = "---USER---"
"""The line that separates a prompt template's system message from its user message."""

REPORT_TEMPLATE = "llm/report_findings.j2"
GENERIC_LABELS_TEMPLATE = "llm/labels_generic.j2"
CLASS_PROMPTS_TEMPLATE = "llm/class_prompts.j2"

_BLANK_RUNS = re.compile(r"\n{3,}")


class NothingToCaption(ValueError):
    """A unit with no finding, no uncertain finding, no normal class and no report: no prompt."""


class PromptBuilder:
    """Renders the system and user messages that ask an LLM for one unit's captions."""

    def __init__(self, templates_dir: Path | None = None):
        folders = [bundled("prompts")]
        if templates_dir is not None:
            if not Path(templates_dir).is_dir():
                raise FileNotFoundError(f"prompt template folder {templates_dir} does not exist")
            folders.insert(0, Path(templates_dir))  # the user's templates win over bundled ones
        self.folders = folders
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(f) for f in folders]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(join_and=join_and, clinical=clinical, a=with_article)

    @functools.cached_property
    def identity(self) -> str:
        """SHA-256 over the names and texts of the caption templates (every `llm/` template but the
        class prompts one) of both folders: a template edit changes it, and so the cache key of the
        captions, while editing the class prompts re-bills no caption. Read once: every request's
        cache key needs it, and the templates do not change during a run."""
        return self._digest(lambda name: name != CLASS_PROMPTS_TEMPLATE)

    @functools.cached_property
    def class_prompts_identity(self) -> str:
        """`identity` of the class prompts template alone: part of the class prompts' cache keys."""
        return self._digest(lambda name: name == CLASS_PROMPTS_TEMPLATE)

    def _digest(self, chosen: Callable[[str], bool]) -> str:
        digest = hashlib.sha256()
        for folder in self.folders:
            tag = "bundled" if folder == self.folders[-1] else "user"
            for path in sorted((folder / "llm").rglob("*.j2")):
                name = path.relative_to(folder)
                if chosen(name.as_posix()):
                    digest.update(f"{tag}\0{name}\0{path.read_text()}\0".encode())
        return digest.hexdigest()

    def template_name(self, unit: CaptionUnit) -> str:
        """The template that `messages` renders for `unit` (after the fallback to the generic one)."""
        if unit.is_report:
            return REPORT_TEMPLATE
        return self.env.select_template([f"llm/labels_{unit.modality}.j2", GENERIC_LABELS_TEMPLATE]).name

    def messages(self, unit: CaptionUnit, count: int, definitions: dict[str, str]) -> list[dict[str, str]]:
        """`[{"role": "system", ...}, {"role": "user", ...}]` asking for `count` captions of `unit`
        (exactly `count` for a label set, at most `count` findings for a report).

        `definitions` maps readable labels to definitions (a manifest's `definitions`); only those
        of the unit's labels reach the prompt. Raises NothingToCaption (a ValueError whose message
        suits the errors table) for a unit with no finding, no uncertain finding, no normal class
        and no report, and ValueError for a template without its `---USER---` line.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        modality_name = MODALITY_NAMES.get(unit.modality, unit.modality)
        if unit.is_report:
            context = {"report": unit.report.strip(), "modality_name": modality_name, "count": count}
        else:
            labels = split_labels(unit.labels, unit.uncertain)
            if labels.empty:
                raise NothingToCaption("nothing to caption from: no labels, no report")
            context = {
                "dataset": unit.dataset,
                "modality_name": modality_name,
                "findings": list(labels.findings),
                "uncertain": list(labels.uncertain),
                "normal": labels.normal,
                "definitions": _definitions_for((*unit.labels, *unit.uncertain), definitions),
                "count": count,
            }
        return self._render(self.template_name(unit), context)

    def class_messages(
        self, modality: str, wording: str, classes: list[str], count: int
    ) -> list[dict[str, str]]:
        """The messages asking for `count` zero-shot prompts of one class of an evaluation set:
        `wording` is the class as a reader words it, `classes` every class of the set (so the
        descriptions can tell them apart), `modality` a modality id (`xray`)."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        context = {
            "modality_name": MODALITY_NAMES.get(modality, modality),
            "classname": wording,
            "others": [name for name in classes if name != wording],
            "count": count,
        }
        return self._render(CLASS_PROMPTS_TEMPLATE, context)

    def _render(self, name: str, context: dict) -> list[dict[str, str]]:
        system, user = _split(self.env.get_template(name).render(**context), name)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _definitions_for(labels: tuple[str, ...], definitions: dict[str, str]) -> dict[str, str]:
    """The definitions of `labels`, in label order; a label matches its key exactly or, failing
    that, case-insensitively (`Pleural Effusion` finds `pleural effusion`)."""
    folded = {key.casefold(): value for key, value in definitions.items()}
    chosen: dict[str, str] = {}
    for label in dict.fromkeys(labels):
        definition = definitions.get(label, folded.get(label.casefold()))
        if definition:
            chosen[label] = definition
    return chosen


def _split(text: str, name: str) -> tuple[str, str]:
    """The rendered template's system and user messages, split at the first `---USER---` line."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.strip() == USER_MARKER:
            system, user = _tidy("\n".join(lines[:index])), _tidy("\n".join(lines[index + 1 :]))
            if not system or not user:
                raise ValueError(f"prompt template {name} renders an empty system or user message")
            return system, user
    raise ValueError(f"prompt template {name} has no {USER_MARKER} line between system and user messages")


def _tidy(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()
