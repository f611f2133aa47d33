"""Where a source's files come from: the `download:` entries of a manifest, one model per fetcher.

Each entry names a fetcher and what it needs (a URL, a Zenodo/Figshare record, a Hugging Face
repo, a Kaggle dataset, a PhysioNet project, or instructions for request-only sets), plus what the
downloaded files must be (sha256, size) and whether archives are unpacked. Credentials are never
part of a manifest: fetchers read them from the environment at run time.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(".", description="sub-folder of the dataset's raw folder to put the files in")
    extract: bool = Field(True, description="unpack zip/tar archives after verification")


class ExpectedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, ge=0)


class HttpEntry(_Entry):
    fetcher: Literal["http"]
    url: str
    filename: str | None = None  # default: the last path segment of the URL
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, ge=0)

    @property
    def file_name(self) -> str:
        """`filename`, else the URL's last path segment (no query string); "" if the URL has none."""
        return self.filename or urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]


class ZenodoEntry(_Entry):
    fetcher: Literal["zenodo"]
    record: str
    files: list[str] = Field(default_factory=list, description="file keys to fetch; default all")


class FigshareEntry(_Entry):
    fetcher: Literal["figshare"]
    article: str
    files: list[str] = Field(default_factory=list, description="file names to fetch; default all")


class HuggingFaceEntry(_Entry):
    fetcher: Literal["huggingface"]
    repo_id: str
    repo_type: Literal["dataset", "model"] = "dataset"
    revision: str | None = None
    allow_patterns: list[str] = Field(default_factory=list)
    token_env: str = "HF_TOKEN"


class KaggleEntry(_Entry):
    fetcher: Literal["kaggle"]
    dataset: str = Field(description="owner/dataset-slug")
    files: list[str] = Field(default_factory=list)


class PhysioNetEntry(_Entry):
    fetcher: Literal["physionet"]
    project: str = Field(description="e.g. mimic-cxr-jpg/2.1.0")
    files: list[str] = Field(
        default_factory=list, description="paths inside the project; default the listed files"
    )
    user_env: str = "PHYSIONET_USER"
    password_env: str = "PHYSIONET_PASSWORD"


class ManualEntry(_Entry):
    fetcher: Literal["manual"]
    instructions: str = Field(description="where and how to request access")
    url: str | None = None
    expect: list[ExpectedFile] = Field(
        default_factory=list, description="files the user must place; verified by `download`"
    )


DownloadEntry = Annotated[
    HttpEntry | ZenodoEntry | FigshareEntry | HuggingFaceEntry | KaggleEntry | PhysioNetEntry | ManualEntry,
    Field(discriminator="fetcher"),
]

FETCHER_TYPES = tuple(
    get_args(entry.model_fields["fetcher"].annotation)[0] for entry in get_args(get_args(DownloadEntry)[0])
)
"""The `fetcher:` names, read off the `DownloadEntry` members so the two cannot drift apart."""

Role = Literal["pretrain", "eval"]
Access = Literal["open", "credentialed", "request"]
