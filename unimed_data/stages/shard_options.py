"""The shard stage's options, apart from the stage so that the build config (which takes its
defaults from them) does not import the stage and everything it writes with."""

from __future__ import annotations

from dataclasses import dataclass

from unimed_data.unimed_txt import TXT_FORMATS


@dataclass(frozen=True)
class ShardOptions:
    shard_size: int = 1000
    prefix: str = "unimed"
    seed: int = 0
    txt_format: str = "plain"  # plain: the primary caption; unimed: see unimed_txt.py
    txt_tags: tuple[tuple[str, str], ...] = ()  # (dataset, its manifest's unimed_tag), for unimed

    def __post_init__(self):
        if self.shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        if not self.prefix or any(c in self.prefix for c in "/.\\ "):
            raise ValueError(
                f"shard prefix {self.prefix!r} must be non-empty, without dots, slashes or spaces"
            )
        if self.txt_format not in TXT_FORMATS:
            raise ValueError(f"txt_format {self.txt_format!r} must be one of {', '.join(TXT_FORMATS)}")
