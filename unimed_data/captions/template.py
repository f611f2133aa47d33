"""The offline, deterministic caption backend: Jinja2 templates per modality.

Each template renders one candidate caption per line; the backend cleans them, drops
duplicates, keeps the first as the primary caption and picks the rest in a seeded order, so the
same unit and seed always give the same captions without any network.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import jinja2

from unimed_data.bundled import bundled
from unimed_data.captions.base import CaptionFailure, CaptionUnit
from unimed_data.captions.labelsets import split_labels

MODALITY_NAMES = {
    "xray": "X-ray",
    "ct": "CT",
    "mri": "MRI",
    "ultrasound": "ultrasound",
    "pathology": "histopathology",
    "fundus": "fundus",
    "oct": "OCT",
    "dermatology": "dermoscopy",
    "endoscopy": "endoscopy",
    "other": "medical",
}

_SPACES = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_VOWEL_SOUND = re.compile(r"^(?:[aeiou]|[AEIOU]|(?:MRI|OCT|X-ray|H&E|NM)\b)")


def join_and(items: list[str], word: str = "and") -> str:
    """'a', 'a and b', 'a, b and c': label combinations read as one phrase."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def clinical(label: str) -> str:
    """Title-case class names in running text ('Pleural Effusion' -> 'pleural effusion'),
    acronyms kept ('AMD', 'DR')."""
    return " ".join(
        w if (w.isupper() and len(w) > 1) or not w[:1].isupper() else w.lower() for w in label.split()
    )


def with_article(phrase: str) -> str:
    return f"{'an' if _VOWEL_SOUND.match(phrase) else 'a'} {phrase}"


def clean(line: str) -> str:
    line = _SPACES.sub(" ", line).strip()
    if not line:
        return ""
    line = line[0].upper() + line[1:]
    return line if line[-1] in ".!?" else line + "."


def report_sentences(report: str) -> list[str]:
    """A report's sentences as captions, as an offline stand-in for LLM findings rewriting."""
    return [s for s in (clean(part) for part in _SENTENCE.split(report)) if len(s) > 3]


class TemplateCaptioner:
    source = "template"
    needs_all_units = False

    def __init__(self, *, per_record: int = 10, seed: int = 0, templates_dir: Path | None = None):
        if per_record < 1:
            raise ValueError("per_record must be at least 1")
        self.per_record = per_record
        self.seed = seed
        folders = [bundled("prompts")]
        if templates_dir is not None:
            if not Path(templates_dir).is_dir():
                raise FileNotFoundError(f"caption template folder {templates_dir} does not exist")
            folders.insert(0, Path(templates_dir))  # the user's templates win over bundled ones
        self.folders = folders
        loader = jinja2.FileSystemLoader([str(f) for f in folders])
        self.env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=False)
        self.env.filters.update(join_and=join_and, clinical=clinical, a=with_article)

    @property
    def identity(self) -> dict:
        """Everything that decides the captions, so a change (even a template edit) re-captions."""
        texts = hashlib.sha256()
        for folder in self.folders:
            for path in sorted(folder.rglob("*.j2")):
                texts.update(f"{path.relative_to(folder)}\0{path.read_text()}\0".encode())
        return {
            "backend": self.source,
            "per_record": self.per_record,
            "seed": self.seed,
            "templates": texts.hexdigest(),
        }

    def choose_pilot(self, units: list[CaptionUnit]) -> None:
        """Templates cost nothing: every unit is captioned, there is no pilot."""

    def plan(self, units: list[CaptionUnit]) -> dict:
        return {"backend": "template", "units": len(set(units)), "calls": 0}

    def caption(self, units: list[CaptionUnit]) -> dict[CaptionUnit, list[str] | CaptionFailure]:
        return {unit: self._caption_one(unit) for unit in units}

    def spent(self) -> None:
        return None

    def usage_line(self) -> None:
        return None

    def _caption_one(self, unit: CaptionUnit) -> list[str] | CaptionFailure:
        candidates = report_sentences(unit.report) if unit.is_report else self._render(unit)
        unique = list(dict.fromkeys(c for c in candidates if c))
        if not unique:
            return CaptionFailure("nothing to caption from: no labels, no report")
        primary, rest = unique[0], unique[1:]
        random.Random(self._unit_seed(unit)).shuffle(rest)
        return [primary, *rest][: self.per_record]

    def _render(self, unit: CaptionUnit) -> list[str]:
        label_set = split_labels(unit.labels, unit.uncertain)
        if label_set.empty:
            return []
        template = self.env.select_template([f"captions/{unit.modality}.j2", "captions/generic.j2"])
        text = template.render(
            findings=list(label_set.findings),
            uncertain=list(label_set.uncertain),
            normal=label_set.normal,
            dataset=unit.dataset,
            modality_name=MODALITY_NAMES.get(unit.modality, unit.modality),
        )
        return [clean(line) for line in text.splitlines()]

    def _unit_seed(self, unit: CaptionUnit) -> int:
        digest = hashlib.sha256(repr((self.seed, unit)).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big")
