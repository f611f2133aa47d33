"""The embedded demo corpus: the DICOM files that pydicom ships, sorted into folder-per-class trees.

Nothing is downloaded: pydicom's own test files cover CT, MR, ultrasound, CR and secondary
captures in many transfer syntaxes (raw, big-endian, deflate, JPEG, JPEG-LS, JPEG 2000, RLE), and
some are deliberately broken, so the demo exercises the converter and the error accounting on
real files. Each header `Modality` becomes one dataset; its classes are the examined body part.
Only non-identifying header values (Modality, BodyPartExamined) are read here.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import pydicom
import pydicom.data

from unimed_data.manifest import Manifest, validate_manifest

DICOM_MODALITY = {"CT": "ct", "MR": "mri", "US": "ultrasound", "CR": "xray", "DX": "xray"}
BODY_PARTS = {
    "head": "head region",
    "cspine": "cervical spine",
    "abdomen": "abdominal region",
    "whole-body": "whole-body tracer uptake",
    "unspecified": "anatomical structures",
}
# Most of pydicom's test images are 16×16 px: the demo keeps those and still shows the minimum-side
# filter at work on the 10 px and 3 px ones (a real corpus keeps the default, 32 px).
DEMO_MIN_SIDE = 16
PYDICOM_LICENSE = "MIT (pydicom test files; see pydicom's LICENSE for third-party test data)"


def pydicom_test_files() -> list[Path]:
    """The DICOM test files inside the installed pydicom package (never the downloadable ones)."""
    root = Path(pydicom.data.__file__).parent / "test_files"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in ("", ".dcm"))


def _header(path: Path) -> pydicom.Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, force=True, defer_size=256)
        except Exception:
            return None


def stage_demo(raw_root: Path) -> list[Manifest]:
    """Copy pydicom's image-bearing test files to raw_root/<dataset>/<class>/ and return manifests."""
    modalities: set[str] = set()  # one dataset per modality, named after it
    for path in pydicom_test_files():
        header = _header(path)
        if header is None or "PixelData" not in header:
            continue
        modality = DICOM_MODALITY.get(str(header.get("Modality", "")), "other")
        part = str(header.get("BodyPartExamined", "") or "unspecified").strip().lower().replace(" ", "-")
        part = part if part in BODY_PARTS else "unspecified"
        dataset = _dataset_name(modality)
        # pydicom's DICOMDIR test tree names folders after patient IDs: only a digest of the
        # relative path and the bare file name may appear in our file names.
        relative = path.relative_to(Path(pydicom.data.__file__).parent / "test_files").as_posix()
        digest = hashlib.sha1(relative.encode()).hexdigest()[:8]
        target = raw_root / dataset / part / f"{digest}-{path.name}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        modalities.add(modality)
    return [_manifest(_dataset_name(modality), modality) for modality in sorted(modalities)]


def _dataset_name(modality: str) -> str:
    return f"pydicom-{modality}"


def _manifest(dataset: str, modality: str) -> Manifest:
    return validate_manifest(
        {
            "name": dataset,
            "modality": modality,
            "license": PYDICOM_LICENSE,
            "homepage": "https://github.com/pydicom/pydicom",
            "description": f"{modality} images among the DICOM test files shipped with pydicom",
            "layout": {"type": "folder"},
            "classes": BODY_PARTS,
            "split": {"by": "hash", "fractions": {"train": 0.7, "val": 0.15, "test": 0.15}},
        },
        f"<demo manifest {dataset}>",
    )
