"""The Open-i Indiana University chest X-ray collection (NLMCXR): one XML report per study.

`ecgen-radiology/<n>.xml` (from NLMCXR_reports.tgz) looks like::

    <eCitation>
      <uId id="CXR1"/> ... <IUXRId id="1"/>
      <MedlineCitation><Article><Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">Positive TB test</AbstractText>
        <AbstractText Label="FINDINGS">The cardiac silhouette and mediastinum size are within normal
          limits. There is no pulmonary edema. ...</AbstractText>
        <AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
      </Abstract></Article></MedlineCitation>
      <MeSH><major>normal</major></MeSH>
      <parentImage id="CXR1_1_IM-0001-3001"> <caption>...</caption> <panel>...</panel> </parentImage>
      <parentImage id="CXR1_1_IM-0001-4001"> ... </parentImage>
    </eCitation>

One item per `parentImage`: `<images_dir>/<id>.png` (NLMCXR_png.tgz). Its `report` is FINDINGS then
IMPRESSION (`reports.join_findings`: whitespace collapsed, the `XXXX` de-identification placeholders
removed), or None when the report has neither. With `labels_from_mesh`, the labels are the `major`
MeSH terms' first component (`Cardiomegaly/mild` -> `Cardiomegaly`; `normal` stays "normal"; the
indexers' `No Indexing` is dropped), deduplicated in order. Patient = the report's `uId` (`CXR1`),
else the file name's stem, so that all images of one report share a split.

The files are trusted local data, but `xml.etree` would still expand internal entities, so a file
declaring a DOCTYPE or an ENTITY is rejected as an ItemError, as is malformed XML (with its line and
column). A report listing no images is `Filtered`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from unimed_data.layouts.item import Filtered, Item, ItemError, LayoutError, RelPath, relative_path
from unimed_data.reports import join_findings

_IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UNSAFE = (b"<!DOCTYPE", b"<!ENTITY")
_NOT_LABELS = {"no indexing"}


class OpenILayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["openi"]
    reports_dir: RelPath = "ecgen-radiology"
    images_dir: RelPath = "NLMCXR_png"
    labels_from_mesh: bool = True


def _report_files(layout: OpenILayout, dataset_root: Path) -> list[Path]:
    folder = dataset_root / layout.reports_dir
    if not folder.is_dir():
        raise LayoutError(f"{layout.reports_dir}: report folder not found under {dataset_root}")
    # recursive, so that reports_dir may hold the unpacked ecgen-radiology/ folder itself
    files = [path for path in folder.rglob("*") if path.suffix.lower() == ".xml" and path.is_file()]
    # 1.xml, 2.xml, ..., 10.xml: numeric order where the stem is a number
    return sorted(
        files,
        key=lambda path: (
            not path.stem.isdigit(),
            int(path.stem or 0) if path.stem.isdigit() else 0,
            path.name,
        ),
    )


def annotation_files(layout: OpenILayout, dataset_root: Path) -> list[Path]:
    try:
        return _report_files(layout, dataset_root)
    except LayoutError:
        return [dataset_root / layout.reports_dir]


def iter_items(layout: OpenILayout, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    files = _report_files(layout, dataset_root)
    if not files:
        raise LayoutError(f"{layout.reports_dir}: no .xml reports under {dataset_root}")
    for path in files:
        yield from _parse_report(layout, path.relative_to(dataset_root).as_posix(), path.read_bytes())


def _text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def _section(root: ET.Element, label: str) -> str | None:
    parts = [_text(node) for node in root.iter("AbstractText") if (node.get("Label") or "").upper() == label]
    return " ".join(part for part in parts if part) or None


def mesh_labels(root: ET.Element) -> list[str]:
    labels: list[str] = []
    for mesh in root.iter("MeSH"):
        for major in mesh.iter("major"):
            term = " ".join(_text(major).split("/")[0].split())
            if term.lower() == "normal":
                term = "normal"
            if term and term.lower() not in _NOT_LABELS and term not in labels:
                labels.append(term)
    return labels


def _parse_report(layout: OpenILayout, relpath: str, data: bytes) -> Iterator[Item | ItemError | Filtered]:
    upper = data.upper()
    for marker in _UNSAFE:
        if marker in upper:
            line = data[: upper.index(marker)].count(b"\n") + 1
            yield ItemError(None, None, f"{relpath}:{line}: {marker.decode()} declarations are not accepted")
            return
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line, column = exc.position
        message = re.sub(r": line \d+, column \d+$", "", str(exc))
        yield ItemError(None, None, f"{relpath}:{line}:{column + 1}: malformed XML ({message})")
        return
    uid = root.find(".//uId")
    patient = ((uid.get("id") or "").strip() if uid is not None else "") or Path(relpath).stem
    report = join_findings(_section(root, "FINDINGS"), _section(root, "IMPRESSION"))
    labels = mesh_labels(root) if layout.labels_from_mesh else []
    images = root.findall(".//parentImage")
    if not images:
        yield Filtered(relpath, "report lists no parentImage")
        return
    seen: set[str] = set()
    for number, image in enumerate(images, start=1):
        where = f"{relpath}: parentImage {number}"
        image_id = (image.get("id") or "").strip()
        if not _IMAGE_ID.fullmatch(image_id):
            yield ItemError(
                None, None, f"{where}: bad id {image_id!r} (expected a file stem like CXR1_1_IM-0001-3001)"
            )
            continue
        if image_id in seen:
            continue
        seen.add(image_id)
        source = relative_path(layout.images_dir, f"{image_id}.png")
        yield Item(
            item_id=source,
            source_path=source,
            labels=list(labels),
            report=report,
            patient=patient,
            origin=where,
        )
