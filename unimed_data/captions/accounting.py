"""What an LLM caption run cost: calls, cache hits, retries, failures, tokens and dollars."""

from __future__ import annotations

from dataclasses import asdict, dataclass


def cost_usd(prompt: int, completion: int, *, prices: tuple[float, float], batch: bool) -> float:
    """The price of tokens at `prices` (input, output) per million tokens; the Batch API costs half."""
    factor = 0.5 if batch else 1.0
    return factor * (prompt * prices[0] + completion * prices[1]) / 1e6


@dataclass
class Usage:
    calls: int = 0
    batch_requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    invalid_answers: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add_tokens(self, prompt: int, completion: int, *, prices: tuple[float, float], batch: bool) -> None:
        """Count tokens and their price (see `cost_usd`)."""
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost_usd += cost_usd(prompt, completion, prices=prices, batch=batch)

    def merged(self, other: dict) -> Usage:
        return Usage(**{k: v + other.get(k, 0) for k, v in asdict(self).items()})

    def as_dict(self) -> dict:
        data = asdict(self)
        data["cost_usd"] = round(data["cost_usd"], 6)
        return data

    def line(self) -> str:
        return (
            f"LLM: {self.calls} calls, {self.batch_requests} batch requests, {self.cache_hits} cache hits, "
            f"{self.retries} retries, {self.invalid_answers} invalid answers re-asked, {self.failures} failed; "
            f"tokens in {self.prompt_tokens}, out {self.completion_tokens}; estimated cost ${self.cost_usd:.4f}"
        )
