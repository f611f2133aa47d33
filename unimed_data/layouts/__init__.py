"""Layout parsers: each turns one kind of source annotation into a stream of `Item`s.

One module per layout, each with a pydantic config model, `iter_items(layout, dataset_root)` and
`annotation_files(layout, dataset_root)` (the files whose size and mtime say whether the input
changed). This module picks the module from the manifest's `layout.type`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from unimed_data.layouts import (
    captions,
    cbis_ddsm,
    chexpert,
    csv_label,
    flair,
    folder,
    llava_med,
    mimic_cxr,
    openi,
    pmc_oa,
    quilt,
    rocov2,
    unimed_csv,
    unimed_openi,
    unimed_retina,
    vindr_cxr,
)
from unimed_data.layouts.captions import CaptionsLayout
from unimed_data.layouts.cbis_ddsm import CbisDdsmLayout
from unimed_data.layouts.chexpert import ChexpertLayout
from unimed_data.layouts.csv_label import CsvLabelLayout
from unimed_data.layouts.flair import FlairLayout
from unimed_data.layouts.folder import FolderLayout
from unimed_data.layouts.item import Filtered, Item, ItemError, LayoutError
from unimed_data.layouts.llava_med import LlavaMedLayout
from unimed_data.layouts.mimic_cxr import MimicCxrLayout
from unimed_data.layouts.openi import OpenILayout
from unimed_data.layouts.pmc_oa import PmcOaLayout
from unimed_data.layouts.quilt import QuiltLayout
from unimed_data.layouts.rocov2 import Rocov2Layout
from unimed_data.layouts.unimed_csv import UnimedCsvLayout
from unimed_data.layouts.unimed_openi import UnimedOpenILayout
from unimed_data.layouts.unimed_retina import UnimedRetinaLayout
from unimed_data.layouts.vindr_cxr import VindrCxrLayout

if TYPE_CHECKING:
    from unimed_data.manifest import Manifest

__all__ = ["Filtered", "Item", "ItemError", "Layout", "LayoutError", "annotation_files", "iter_items"]

Layout = Annotated[
    FolderLayout
    | CsvLabelLayout
    | ChexpertLayout
    | FlairLayout
    | CaptionsLayout
    | Rocov2Layout
    | PmcOaLayout
    | QuiltLayout
    | LlavaMedLayout
    | MimicCxrLayout
    | OpenILayout
    | UnimedCsvLayout
    | UnimedOpenILayout
    | UnimedRetinaLayout
    | CbisDdsmLayout
    | VindrCxrLayout,
    Field(discriminator="type"),
]

_MODULES = {
    "folder": folder,
    "csv_label": csv_label,
    "chexpert": chexpert,
    "flair": flair,
    "captions": captions,
    "rocov2": rocov2,
    "pmc_oa": pmc_oa,
    "quilt": quilt,
    "llava_med": llava_med,
    "mimic_cxr": mimic_cxr,
    "openi": openi,
    "unimed_csv": unimed_csv,
    "unimed_openi": unimed_openi,
    "unimed_retina": unimed_retina,
    "cbis_ddsm": cbis_ddsm,
    "vindr_cxr": vindr_cxr,
}
LAYOUT_TYPES = tuple(_MODULES)


def iter_items(manifest: Manifest, dataset_root: Path) -> Iterator[Item | ItemError | Filtered]:
    """The dataset's items in source order; raises `LayoutError` if the annotations are unreadable."""
    return _MODULES[manifest.layout.type].iter_items(manifest.layout, dataset_root)


def annotation_files(manifest: Manifest, dataset_root: Path) -> list[Path]:
    return _MODULES[manifest.layout.type].annotation_files(manifest.layout, dataset_root)
