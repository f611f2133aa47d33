"""`unimed-data prompts`: an LLM writes each class's zero-shot prompt ensemble into an evaluation
set's prompts.json, as WhyXrayCLIP had GPT-4 describe what each class looks like.

The classes go through the caption backend itself (`OpenAICaptioner` with `ClassPromptRequests`):
a class is a `CaptionUnit` whose one label is the class as a reader words it, so it gets the
captions' cache, retries, validation (exact count, none empty or duplicate, within the token
budget, no raw class id) and accounting. prompts.json is written whole or not at all, so the
evaluator never mixes LLM prompts with template ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from unimed_data.captions.answers import leak_ids
from unimed_data.captions.base import CaptionFailure, CaptionUnit
from unimed_data.captions.openai_backend import OpenAICaptioner
from unimed_data.captions.prompts import CLASS_PROMPTS_TEMPLATE
from unimed_data.captions.requests import ClassPromptRequests, DatasetHints
from unimed_data.config import LLMConfig
from unimed_data.evalset.samples import EvalSetError
from unimed_data.tables import atomic_write_text

CACHE_FOLDER = ".llm-cache"
"""The default cache folder, inside the set: a rerun, even after `evalset` rewrote the set, pays
for nothing already answered. The file in it is named as a build's (`--cache` may share one)."""
CACHE_FILE = "captions.sqlite"


@dataclass(frozen=True)
class ClassSet:
    """What the prompts are asked from: an evaluation set's classes, in classnames.txt order."""

    root: Path
    name: str
    modality: str
    classes: list[str]
    wording: list[str]  # each class as a reader words it: info.json's readable_names, else the class
    info: dict | None  # info.json, extended with where the prompts came from; None when absent

    def units(self) -> dict[str, CaptionUnit]:
        """Each class's unit, by class."""
        return {
            name: CaptionUnit(self.name, self.modality, (words,))
            for name, words in zip(self.classes, self.wording, strict=True)
        }

    def distinct_units(self) -> list[CaptionUnit]:
        """The units to ask for: classes worded alike share one."""
        return list(dict.fromkeys(self.units().values()))


def read_class_set(root: Path) -> ClassSet:
    """The classes of the evaluation set in `root`; `EvalSetError` naming the folder otherwise."""
    if not root.is_dir():
        raise EvalSetError(f"{root}: {'not a folder' if root.exists() else 'no such folder'}")
    if not any((root / marker).exists() for marker in ("test", "classnames.txt", "info.json")):
        raise EvalSetError(f"{root}: not an evaluation set (no test/, classnames.txt or info.json)")
    kind = root / "dataset_type.txt"
    if kind.is_file() and kind.read_text(encoding="utf-8").strip() == "retrieval":
        raise EvalSetError(f"{root}: a retrieval set has no classes to write prompts for")
    names = root / "classnames.txt"
    if not names.is_file():
        raise EvalSetError(f"{root}: no classnames.txt, so no classes to write prompts for")
    classes = [line.strip() for line in names.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not classes:
        raise EvalSetError(f"{names}: empty")
    if len(set(classes)) != len(classes):
        raise EvalSetError(f"{names}: repeats a class name")
    info = _read_info(root / "info.json")
    readable = (info or {}).get("readable_names")
    readable = readable if isinstance(readable, dict) else {}
    return ClassSet(
        root=root,
        name=str((info or {}).get("name") or root.name),
        modality=str((info or {}).get("modality") or "other"),
        classes=classes,
        wording=[str(readable.get(name) or name) for name in classes],
        info=info,
    )


def _read_info(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalSetError(f"{path}: not JSON ({exc})") from None
    if not isinstance(info, dict):
        raise EvalSetError(f"{path}: not a JSON object")
    return info


def prompt_writer(
    classes: ClassSet, settings: LLMConfig, *, per_class: int, cache_path: Path
) -> OpenAICaptioner:
    """The caption backend asking for `per_class` prompts per class. A raw class name that reads as
    code (`Pleural_Effusion` worded `pleural effusion`) or the set's name (`chexpert-5x200`) in a
    prompt makes the answer invalid, as in a caption."""
    forbidden = leak_ids(dict(zip(classes.classes, classes.wording, strict=True)), classes.name)
    return OpenAICaptioner(
        settings,
        cache_path=cache_path,
        hints={classes.name: DatasetHints(raw_label_ids=tuple(forbidden))},
        requests=ClassPromptRequests(
            settings, per_record=per_class, classes=list(dict.fromkeys(classes.wording))
        ),
    )


def failures(classes: ClassSet, answers: dict) -> list[tuple[str, str]]:
    """(class, reason) of every class the LLM gave no valid prompts for."""
    return [
        (name, answers[unit].reason)
        for name, unit in classes.units().items()
        if isinstance(answers[unit], CaptionFailure)
    ]


def write_prompts(classes: ClassSet, answers: dict, writer: OpenAICaptioner) -> dict[str, list[str]]:
    """prompts.json, whole (a temporary name, then renamed), classes in classnames.txt order; then
    info.json, when the set has one, notes where the prompts came from (the evaluator reads only
    its own fields of it). Every class must have its prompts: see `failures`."""
    prompts = {name: list(answers[unit]) for name, unit in classes.units().items()}
    atomic_write_text(classes.root / "prompts.json", json.dumps(prompts, indent=2, ensure_ascii=False) + "\n")
    if classes.info is not None:
        note = {
            "source": writer.source,
            "template": CLASS_PROMPTS_TEMPLATE,
            "template_sha256": writer.requests.prompts.class_prompts_identity,
            "per_class": writer.requests.per_record,
        }
        info = {**classes.info, "prompt_source": note}
        atomic_write_text(classes.root / "info.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return prompts
