"""Where every stage reads and writes: one place that knows the output folder's layout.

OUT/
  work/datasets/<dataset>/records.parquet        ingest
  work/datasets/<dataset>/images/chunk-<n>.parquet, chunk-<n>.<digest>.tar
                                                 convert: a slice of records' results and JPEGs
  work/datasets/<dataset>/converted.parquet      convert
  work/datasets/<dataset>/captioned.parquet      caption
  work/datasets/<dataset>/deduped.parquet        dedupe (work/dedupe.json: its stamp and counts)
  work/datasets/<dataset>/errors-<stage>.parquet
  work/datasets/<dataset>/filtered-<stage>.parquet  items a rule dropped (convert: too small), with the reason
  work/datasets/<dataset>/<stage>.json           stage stamps (see stamps.py)
  work/datasets/<dataset>/llm-usage.json         caption (openai backend): what it cost
  work/shuffle/                                  shard (seeded external shuffle buckets)
  work/salt                                      patient-id salt when none is given
  <split>/<prefix>-000000.tar, sizes.json, index.parquet
  stats.json, errors.parquet, README.md
  duplicates.parquet, contamination.parquet      dedupe: what it removed, and why
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetPaths:
    """The files of one dataset's folder.

    Kept apart from `Workspace` so that ingest, which is also called with a bare work folder
    (evaluation sets), names its files exactly as the build's stages read them.
    """

    dir: Path

    @property
    def records(self) -> Path:
        return self.dir / "records.parquet"

    @property
    def converted(self) -> Path:
        return self.dir / "converted.parquet"

    @property
    def captioned(self) -> Path:
        return self.dir / "captioned.parquet"

    @property
    def deduped(self) -> Path:
        return self.dir / "deduped.parquet"

    def errors(self, stage: str) -> Path:
        return self.dir / f"errors-{stage}.parquet"

    def filtered(self, stage: str) -> Path:
        return self.dir / f"filtered-{stage}.parquet"

    def stamp(self, stage: str) -> Path:
        return self.dir / f"{stage}.json"

    @property
    def llm_usage(self) -> Path:
        return self.dir / "llm-usage.json"

    @property
    def images(self) -> Path:
        return self.dir / "images"


@dataclass(frozen=True)
class Workspace:
    out: Path

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def caption_cache(self) -> Path:
        """The LLM caption cache, unless `captions.llm.cache_dir` moves it (see `captions.cache_file`)."""
        return self.work / "llm-cache" / "captions.sqlite"

    @property
    def datasets(self) -> Path:
        """Per-dataset folders live apart from the build's own files (salt, shuffle, demo input)."""
        return self.work / "datasets"

    def dataset_dir(self, slug: str) -> Path:
        return self.datasets / slug

    def dataset(self, slug: str) -> DatasetPaths:
        return DatasetPaths(self.dataset_dir(slug))

    def records(self, slug: str) -> Path:
        return self.dataset(slug).records

    def converted(self, slug: str) -> Path:
        return self.dataset(slug).converted

    def captioned(self, slug: str) -> Path:
        return self.dataset(slug).captioned

    def deduped(self, slug: str) -> Path:
        return self.dataset(slug).deduped

    @property
    def duplicates(self) -> Path:
        return self.out / "duplicates.parquet"

    @property
    def contamination(self) -> Path:
        return self.out / "contamination.parquet"

    def errors(self, slug: str, stage: str) -> Path:
        return self.dataset(slug).errors(stage)

    def filtered(self, slug: str, stage: str) -> Path:
        return self.dataset(slug).filtered(stage)

    def stamp(self, slug: str, stage: str) -> Path:
        return self.dataset(slug).stamp(stage)

    def build_stamp(self, stage: str) -> Path:
        """The stamp of a stage that runs once on the whole build (dedupe)."""
        return self.work / f"{stage}.json"

    def llm_usage(self, slug: str) -> Path:
        return self.dataset(slug).llm_usage

    def images(self, slug: str) -> Path:
        return self.dataset(slug).images

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
