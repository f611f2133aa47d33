"""The record schema: one row per image, shared by every stage.

This module is the single owner of column names and types, of how keys are made and of how
patient identifiers are hashed, so that no stage invents its own variant.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import pyarrow as pa

MODALITIES = (
    "xray",
    "ct",
    "mri",
    "ultrasound",
    "pathology",
    "fundus",
    "oct",
    "dermatology",
    "endoscopy",
    "other",
)

SPLITS = ("train", "val", "test")

RECORD_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        # The converted JPEG: a byte range of a chunk file (image_chunks.py).
        pa.field("image_path", pa.string()),
        pa.field("image_offset", pa.int64()),
        pa.field("image_size", pa.int64()),
        pa.field("labels", pa.list_(pa.string())),
        # Labels the source marks as uncertain (CheXpert -1.0) and that the uncertainty
        # policy kept; captioners word them as possible, never as findings.
        pa.field("uncertain_labels", pa.list_(pa.string())),
        pa.field("report", pa.string()),
        pa.field("captions", pa.list_(pa.string())),
        pa.field("caption_source", pa.string()),
        pa.field("patient_id", pa.string()),
        pa.field("split", pa.string(), nullable=False),
        pa.field("license", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("sha256", pa.string()),
        # The converted image's fingerprint (imaging/fingerprint.py), for the dedupe stage.
        pa.field("pixels_sha256", pa.string()),
        pa.field("phash", pa.int64()),
        pa.field("thumb", pa.binary()),
    ]
)

# The `json` member of every shard sample (see stages/shard.py `to_sample`).
SAMPLE_JSON_FIELDS = (
    "captions",
    "labels",
    "report",
    "uncertain_labels",
    "modality",
    "dataset",
    "caption_source",
    "license",
    "split",
    "width",
    "height",
)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("key", pa.string()),
        pa.field("source_path", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


def error_row(dataset: str, stage: str, key: str | None, source_path: str | None, reason: str) -> dict:
    """One row of an `errors-<stage>` table (ERROR_SCHEMA); every stage words its errors alike."""
    return {"dataset": dataset, "stage": stage, "key": key, "source_path": source_path, "reason": reason}


_UNSAFE = re.compile(r"[^a-z0-9_-]+")


SLUG_MAX = 48  # keeps `<slug>_<20 hex>.json` inside the 100-byte name field of a ustar tar member


def dataset_slug(name: str) -> str:
    """A dataset name reduced to characters that are safe in keys and folder names.

    Long names are cut and given a digest of the full name, so they stay distinct.
    """
    slug = _UNSAFE.sub("-", name.lower()).strip("-")
    if not slug:
        raise ValueError(f"dataset name {name!r} has no usable characters")
    if len(slug) > SLUG_MAX:
        slug = f"{slug[: SLUG_MAX - 9].rstrip('-')}-{hashlib.sha1(slug.encode()).hexdigest()[:8]}"
    return slug


def make_key(dataset: str, item_id: str) -> str:
    """A stable WebDataset key for one item of a dataset.

    WebDataset splits member names at the first dot and treats slashes as folders, so the key
    is the dataset slug plus a digest of the item's identity (usually its path relative to the
    dataset root): unique, reproducible, and free of anything from the file's content.
    """
    digest = hashlib.sha1(item_id.encode("utf-8")).hexdigest()[:20]
    return f"{dataset_slug(dataset)}_{digest}"


def hash_patient(raw_id: str, salt: str) -> str:
    """A salted keyed hash of a patient identifier; the raw id is never stored."""
    return hmac.new(salt.encode("utf-8"), raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
