"""`teachers.yaml`: the teacher models, every entry checked before any model is loaded (a typo in
the last entry should not cost a model download first)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from unimed_train.cli import UsageError
from unimed_train.objectives.distill import teacher_name_problem

FIELDS = ("name", "model", "pretrained", "modalities")
EXAMPLE = "a list of {name, model, pretrained, modalities}"


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher: `model`/`pretrained` as the trainer and evaluator take them; `modalities` None
    means every sample, else only samples whose json `modality` is listed."""

    name: str
    model: str | None
    pretrained: str | None
    modalities: tuple[str, ...] | None

    def reads(self, modality: str | None) -> bool:
        return self.modalities is None or modality in self.modalities

    def source(self) -> dict:
        return {"model": self.model, "pretrained": self.pretrained, "modalities": self.modalities}


def read_teachers(path: Path) -> list[TeacherSpec]:
    """The teachers of `path`; a UsageError naming the file (and entry) for anything wrong."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, list) or not data:
        raise UsageError(f"{path}: expected {EXAMPLE}")
    specs = [_entry(path, number, item) for number, item in enumerate(data, 1)]
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"{path}: teacher name(s) used twice: {', '.join(twice)}")
    return specs


def _entry(path: Path, number: int, item) -> TeacherSpec:
    where = f"{path}: teacher {number}"
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected a mapping with {', '.join(FIELDS)}, not {item!r}")
    unknown = sorted(set(map(str, item)) - set(FIELDS))
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)} (fields: {', '.join(FIELDS)})")
    name = item.get("name")
    problem = teacher_name_problem(name) if isinstance(name, str) else "a name is required"
    if problem:
        raise UsageError(f"{where}: name {name!r}: {problem}")
    where = f"{path}: teacher {name}"
    model, pretrained = item.get("model"), item.get("pretrained")
    for field, value in (("model", model), ("pretrained", pretrained)):
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise UsageError(f"{where}: {field}: expected a name or path, not {value!r}")
    if model is None and pretrained is None:
        raise UsageError(f"{where}: give model, pretrained or both")
    modalities = item.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list) or not modalities:
            raise UsageError(f"{where}: modalities: expected a non-empty list, not {modalities!r}")
        if not all(isinstance(m, str) and m for m in modalities):
            raise UsageError(f"{where}: modalities: expected names, not {modalities!r}")
        modalities = tuple(modalities)
    return TeacherSpec(name, model, pretrained, modalities)
