"""CBIS-DDSM (TCIA): the four case-description CSVs and the DICOM tree of the NBIA download.

CSVs at the dataset root: `calc_case_description_{train,test}_set.csv` and
`mass_case_description_{train,test}_set.csv`, one row per abnormality (`patient_id`,
`left or right breast`, `image view`, `abnormality id`, `abnormality type`, `pathology`,
`image file path`, `cropped image file path`, `ROI mask file path`, plus BI-RADS descriptors that
differ between calc and mass and are not read). The file says the split (train or test).

Paths: a CSV path reads `<series folder>/<study uid>/<series uid>/000000.dcm`, but the NBIA Data
Retriever writes `CBIS-DDSM/<series folder>/<date-and-study>/<number-description-series>/1-1.dcm`,
so only the first component can be trusted. An image is found as the DICOM file(s) under
`<image_root>/<first component>/`: the full mammogram's folder (`Calc-Training_P_00005_RIGHT_CC`)
holds exactly one; an abnormality's folder (`..._CC_1`) holds its cropped image and its ROI mask,
told apart by the header's SeriesDescription (`cropped images` / `ROI mask images`), read without
pixels. None, several, or no cropped one is an error row naming the folder.

Labels: one item per image, so the rows of an image's several abnormalities combine: the image is
`malignant` when any of its abnormalities is MALIGNANT, else `benign` (BENIGN and
BENIGN_WITHOUT_CALLBACK, a lesion marked but not called back for biopsy, are both benign). With
`abnormality: both` the type is part of the label (`malignant mass`), as a calcification image and
a mass image are different series. Patient = `patient_id`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from unimed_data.layouts.item import Item, ItemError, RelPath, relative_path
from unimed_data.layouts.tabular import read_csv

PATHOLOGIES = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
TYPES = {"calcification": "calc", "mass": "mass"}  # abnormality type -> CSV prefix
SPLITS = ("train", "test")
PATH_COLUMNS = {"full": "image file path", "cropped": "cropped image file path"}
COLUMNS = ("patient_id", "abnormality type", "pathology", *PATH_COLUMNS.values())
CROPPED = "cropped images"  # the SeriesDescription of an abnormality's cropped image


class CbisDdsmLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["cbis_ddsm"]
    abnormality: Literal["calcification", "mass", "both"] = "both"
    image: Literal["full", "cropped"] = "full"  # the full mammogram, or each abnormality's crop
    image_root: RelPath = "CBIS-DDSM"  # the folder the NBIA Data Retriever writes
    csv_dir: RelPath = ""


def _csvs(layout: CbisDdsmLayout) -> list[tuple[str, str, str]]:
    """(relative CSV path, abnormality type, split) of every CSV the layout reads."""
    types = list(TYPES) if layout.abnormality == "both" else [layout.abnormality]
    return [
        (relative_path(layout.csv_dir, f"{TYPES[kind]}_case_description_{split}_set.csv"), kind, split)
        for kind in types
        for split in SPLITS
    ]


def annotation_files(layout: CbisDdsmLayout, dataset_root: Path) -> list[Path]:
    return [dataset_root / relpath for relpath, _, _ in _csvs(layout)]


def iter_items(layout: CbisDdsmLayout, dataset_root: Path) -> Iterator[Item | ItemError]:
    for relpath, kind, split in _csvs(layout):
        images: dict[str, dict] = {}  # series folder -> the image's combined rows
        for where, row in read_csv(dataset_root, relpath, COLUMNS):
            problem = row if isinstance(row, str) else _add_row(images, layout, kind, where, row)
            if problem:
                yield ItemError(None, None, f"{where}: {problem}")
        for folder, image in images.items():
            yield _item(layout, dataset_root, kind, split, folder, image)


def _add_row(images: dict[str, dict], layout: CbisDdsmLayout, kind: str, where: str, row: dict) -> str | None:
    """Fold one abnormality row into its image's entry; the reason when the row is unusable."""
    pathology = row["pathology"].strip().upper()
    if pathology not in PATHOLOGIES:
        return f"column 'pathology': bad value {row['pathology']!r} (expected {', '.join(PATHOLOGIES)})"
    if row["abnormality type"].strip().lower() != kind:
        return f"column 'abnormality type': {row['abnormality type']!r} in the {kind} CSV"
    patient = row["patient_id"].strip()
    if not patient:
        return "column 'patient_id': empty"
    column = PATH_COLUMNS[layout.image]
    folder = row[column].strip().split("/")[0]
    try:
        folder = relative_path(folder)
    except ValueError as exc:
        return f"column {column!r}: {exc}"
    image = images.setdefault(folder, {"patient": patient, "where": where, "malignant": False})
    if image["patient"] != patient:
        return f"{folder} belongs to patient {image['patient']} ({image['where']}), not {patient}"
    image["malignant"] |= PATHOLOGIES[pathology] == "malignant"
    return None


def _item(
    layout: CbisDdsmLayout, dataset_root: Path, kind: str, split: str, folder: str, image: dict
) -> Item | ItemError:
    where, folder = image["where"], relative_path(layout.image_root, folder)
    try:
        relpath = _find_dicom(dataset_root, folder, layout.image)
    except LookupError as exc:
        return ItemError(folder, folder, f"{where}: {exc}")
    label = "malignant" if image["malignant"] else "benign"
    return Item(
        item_id=relpath,
        source_path=relpath,
        labels=[label if layout.abnormality != "both" else f"{label} {kind}"],
        patient=image["patient"],
        split=split,
        origin=where,
    )


def _find_dicom(dataset_root: Path, folder: str, image: str) -> str:
    """The one DICOM file of the image under `folder` (see the module doc); LookupError says why not."""
    found = sorted(path for path in (dataset_root / folder).rglob("*.dcm") if path.is_file())
    if image == "cropped":
        found = [path for path in found if _series_description(path) == CROPPED]
    what = "full mammogram DICOM" if image == "full" else f"DICOM with SeriesDescription {CROPPED!r}"
    if len(found) != 1:
        count = "no" if not found else f"{len(found)}"
        raise LookupError(f"{count} {what} under {folder}/ (expected exactly one)")
    return found[0].relative_to(dataset_root).as_posix()


def _series_description(path: Path) -> str | None:
    """The header's SeriesDescription, lower-cased; None for a file pydicom cannot read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesDescription"])
    except (InvalidDicomError, OSError, ValueError):
        return None
    value = header.get("SeriesDescription")
    return str(value).strip().lower() if value is not None else None
