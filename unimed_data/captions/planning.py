"""Which units an LLM run captions (`--limit` pilots), and what a run would cost (`--dry-run`)."""

from __future__ import annotations

from unimed_data.captions.accounting import cost_usd
from unimed_data.captions.base import CaptionUnit


def pilot_units(units_in_order: list[CaptionUnit], limit: int) -> frozenset[CaptionUnit]:
    """For `--limit N`: the first N distinct units over all datasets, chosen once, up front,
    so reruns, resumed runs and `--dry-run` all pick the same ones."""
    return frozenset(list(dict.fromkeys(units_in_order))[:limit])


def estimate(
    uncached: list[list[dict]], *, per_record: int, prices: tuple[float, float], batch: bool
) -> tuple[int, int, float]:
    """Prompt tokens, completion tokens and dollars of the requests (each a list of chat messages)
    a run would send. About four characters a token for English prompts; a caption about 25 tokens."""
    prompt_tokens = sum(len(m["content"]) // 4 + 4 for messages in uncached for m in messages)
    completion_tokens = len(uncached) * per_record * 25
    return (
        prompt_tokens,
        completion_tokens,
        cost_usd(prompt_tokens, completion_tokens, prices=prices, batch=batch),
    )


def dry_run_report(
    *,
    model: str,
    units: int,
    selected: int,
    uncached: list[list[dict]],
    per_record: int,
    prices: tuple[float, float],
    batch: bool,
    examples: int,
) -> dict:
    """What `--dry-run` prints: units, the calls still needed (`uncached`), their estimated tokens and
    cost, and the first few prompts."""
    prompt_tokens, completion_tokens, cost = estimate(
        uncached, per_record=per_record, prices=prices, batch=batch
    )
    return {
        "backend": "openai",
        "model": model,
        "units": units,
        "selected": selected,
        "cached": selected - len(uncached),
        "calls": len(uncached),
        "estimated_prompt_tokens": prompt_tokens,
        "estimated_completion_tokens": completion_tokens,
        "estimated_cost_usd": round(cost, 4),
        "example_prompts": uncached[:examples],
    }
