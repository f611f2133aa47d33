"""Where every stage reads and writes: one place that knows the output folder's layout.

OUT/
  work/datasets/<dataset>/records.parquet        ingest
  work/datasets/<dataset>/images/<xx>/<key>.jpg  convert (xx: last two key characters, small folders)
  work/datasets/<dataset>/converted.parquet      convert
  work/datasets/<dataset>/captioned.parquet      caption
  work/datasets/<dataset>/errors-<stage>.parquet
  work/shuffle/                                  shard (seeded external shuffle buckets)
  work/salt                                      patient-id salt when none is given
  <split>/<prefix>-000000.tar, sizes.json, index.parquet
  stats.json, errors.parquet, README.md
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGES = ("ingest", "convert", "caption", "shard")


@dataclass(frozen=True)
class Workspace:
    out: Path

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def datasets(self) -> Path:
        """Per-dataset folders live apart from the build's own files (salt, shuffle, demo input)."""
        return self.work / "datasets"

    def dataset_dir(self, slug: str) -> Path:
        return self.datasets / slug

    def records(self, slug: str) -> Path:
        return self.dataset_dir(slug) / "records.parquet"

    def converted(self, slug: str) -> Path:
        return self.dataset_dir(slug) / "converted.parquet"

    def captioned(self, slug: str) -> Path:
        return self.dataset_dir(slug) / "captioned.parquet"

    def errors(self, slug: str, stage: str) -> Path:
        return self.dataset_dir(slug) / f"errors-{stage}.parquet"

    def images(self, slug: str) -> Path:
        return self.dataset_dir(slug) / "images"

    def image_file(self, slug: str, key: str) -> Path:
        return self.images(slug) / key[-2:] / f"{key}.jpg"

    @property
    def shuffle(self) -> Path:
        return self.work / "shuffle"

    @property
    def salt(self) -> Path:
        return self.work / "salt"

    def split_dir(self, split: str) -> Path:
        return self.out / split

    @property
    def stats(self) -> Path:
        return self.out / "stats.json"

    @property
    def all_errors(self) -> Path:
        return self.out / "errors.parquet"

    @property
    def card(self) -> Path:
        return self.out / "README.md"
