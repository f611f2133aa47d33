"""Caption backends behind one interface (see `base.Captioner`): offline templates, or an LLM.

`template.py` is the offline backend. The `openai` one is `openai_backend.py` (imported when
chosen: the SDK takes most of a second to load), which ties the
cache (`cache.py`) to the Batch API (`batch.py`) or the chat client (`client.py`) and to validation
(`answers.py`); `requests.py` builds what it sends from `prompts.py`, and `planning.py` chooses a
pilot's units and estimates a dry run's cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from unimed_data.captions.base import Captioner, CaptionFailure, CaptionUnit
from unimed_data.captions.requests import DatasetHints
from unimed_data.captions.template import TemplateCaptioner
from unimed_data.config import CaptionConfig

__all__ = [
    "CaptionFailure",
    "CaptionUnit",
    "Captioner",
    "DatasetHints",
    "TemplateCaptioner",
    "make_captioner",
]

BACKENDS: tuple[str, ...] = get_args(CaptionConfig.model_fields["backend"].annotation)


def make_captioner(
    captions: CaptionConfig | str,
    *,
    seed: int = 0,
    cache_path: Path | None = None,
    hints: dict[str, DatasetHints] | None = None,
) -> Captioner:
    """The backend the config names (or just a backend name, with its default settings).

    `cache_path` is the build's caption cache file (OUT/work/llm-cache/captions.sqlite), which
    `captions.llm.cache_dir` moves; `hints` are what each dataset's manifest tells the prompts, by
    manifest name.
    """
    if isinstance(captions, str):
        if captions not in BACKENDS:
            raise ValueError(f"unknown caption backend {captions!r} (available: {', '.join(BACKENDS)})")
        captions = CaptionConfig(backend=captions)
    if captions.backend == "template":
        return TemplateCaptioner(
            seed=seed, per_record=captions.per_record, templates_dir=captions.templates_dir
        )
    from unimed_data.captions.openai_backend import OpenAICaptioner  # the SDK loads only when used

    llm = captions.llm
    if not llm.model:
        raise ValueError("the openai caption backend needs a model: captions.llm.model or --llm-model")
    return OpenAICaptioner(
        llm,
        cache_path=cache_file(captions, cache_path),
        per_record=captions.per_record,
        templates_dir=captions.templates_dir,
        hints=hints,
        limit=captions.limit,
    )


def cache_file(captions: CaptionConfig, default: Path | None) -> Path | None:
    """The caption cache file: in `captions.llm.cache_dir` when the config names one, else `default`."""
    cache_dir = captions.llm.cache_dir
    return cache_dir / "captions.sqlite" if cache_dir is not None else default
