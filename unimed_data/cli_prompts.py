"""`unimed-data prompts`: an LLM writes an evaluation set's zero-shot prompt ensembles (prompts.json),
N descriptions per class, as WhyXrayCLIP did with GPT-4 (see `evalset.class_prompts`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from unimed_data import terminal
from unimed_data.cli_common import OFF, fail, os_problem, print_caption_plan
from unimed_data.config import LLMConfig

if TYPE_CHECKING:
    from unimed_data.captions.openai_backend import OpenAICaptioner
    from unimed_data.evalset.class_prompts import ClassSet

_DEFAULTS = LLMConfig()

_EvalSet = Annotated[
    Path, typer.Argument(help="An evaluation set folder, as `unimed-data evalset` writes it.")
]
_Captioner = Annotated[
    str,
    typer.Option(
        "--captioner",
        help="Who writes the prompts: openai (an LLM). template is refused: the templates are the "
        "prompts.json that evalset already wrote.",
    ),
]
_PerClass = Annotated[int, typer.Option("--per-class", min=1, max=100, help="Prompts per class.")]
_Model = Annotated[
    str | None,
    typer.Option("--model", help="Model name at the endpoint.", show_default="none; needed"),
]
_BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.",
        show_default="OpenAI's",
    ),
]
_KeyEnv = Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the API key.")]
_Concurrency = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight.")]
_Cache = Annotated[
    Path | None,
    typer.Option("--cache", help="LLM answer cache folder.", show_default="EVALSET/.llm-cache"),
]
_DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print the prompts, call count and token estimate; no network.", show_default=OFF
    ),
]


def prompts(
    evalset: _EvalSet,
    captioner: _Captioner = "openai",
    per_class: _PerClass = 10,
    model: _Model = None,
    base_url: _BaseUrl = None,
    api_key_env: _KeyEnv = _DEFAULTS.api_key_env,
    concurrency: _Concurrency = _DEFAULTS.concurrency,
    cache: _Cache = None,
    dry_run: _DryRun = False,
) -> None:
    """Write an evaluation set's prompts.json with an LLM: N descriptive prompts per class
    (WhyXrayCLIP's prompt ensembles), through the caption backend's cache, retries and validation."""
    from unimed_data.evalset.class_prompts import CACHE_FILE, CACHE_FOLDER, read_class_set
    from unimed_data.evalset.samples import EvalSetError

    if captioner != "openai":
        fail(
            f"--captioner {captioner}: only openai writes prompts; the offline templates are the "
            "prompts.json that `unimed-data evalset` wrote (rerun it to restore them)"
        )
    if not model:
        fail("--model is needed: the model name at the endpoint")
    try:
        classes = read_class_set(evalset)
    except EvalSetError as exc:
        fail(str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{evalset}: cannot read ({os_problem(exc) if isinstance(exc, OSError) else exc})")
    settings = LLMConfig(model=model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency)
    cache_path = (cache or evalset / CACHE_FOLDER) / CACHE_FILE
    if dry_run:
        _dry_run(classes, settings, per_class, cache_path)
    else:
        _ask(classes, settings, per_class, cache_path)


def _dry_run(classes: ClassSet, settings: LLMConfig, per_class: int, cache_path: Path) -> None:
    """Every prompt that would be sent, the call count and the token estimate; nothing written."""
    from unimed_data.captions.cache import scratch_copy
    from unimed_data.evalset.class_prompts import prompt_writer

    with tempfile.TemporaryDirectory(prefix="unimed-dry-run-") as scratch:
        copy = scratch_copy(cache_path, Path(scratch))
        writer = prompt_writer(classes, settings, per_class=per_class, cache_path=copy)
        units = classes.distinct_units()
        print_caption_plan(writer.plan(units, examples=len(units)))


def _ask(classes: ClassSet, settings: LLMConfig, per_class: int, cache_path: Path) -> None:
    """Ask for every class not cached, say what it cost, then write prompts.json (see `_write`)."""
    from unimed_data.evalset.class_prompts import failures, prompt_writer

    writer = prompt_writer(classes, settings, per_class=per_class, cache_path=cache_path)
    try:
        answers = writer.caption(classes.distinct_units())
    except RuntimeError as exc:  # no key, a refused key, an endpoint that is down: answers so far are cached
        fail(str(exc))
    except OSError as exc:
        fail(os_problem(exc))
    terminal.say(writer.usage_line())
    _write(classes, answers, writer, failures(classes, answers))


def _write(classes: ClassSet, answers: dict, writer: OpenAICaptioner, failed: list[tuple[str, str]]) -> None:
    """prompts.json when every class has its prompts; else the reasons, and exit 1."""
    from unimed_data.evalset.class_prompts import write_prompts

    if failed:
        for name, reason in failed:
            terminal.say(f"  class {name}: {reason}")
        terminal.error(
            f"{len(failed)} of {len(classes.classes)} classes got no valid prompts; prompts.json is left "
            "as it was (the answered classes are cached: a rerun asks only for the others)"
        )
        raise typer.Exit(1)
    try:
        written = write_prompts(classes, answers, writer)
    except OSError as exc:
        fail(os_problem(exc))
    count = sum(len(p) for p in written.values())
    terminal.say(
        f"{classes.root / 'prompts.json'}: {count} prompts for {len(written)} classes ({writer.source})"
    )
