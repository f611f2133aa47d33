"""The CheXpert CSV: 1.0 / 0.0 / -1.0 / blank cells, uncertainty policies, the view filter, bad cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimed_data.layouts import Filtered, Item, ItemError, LayoutError, iter_items
from unimed_data.manifest import Manifest

HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)
COLUMNS = HEADER.split(",")[5:]
PREFIX = "CheXpert-v1.0-small/"


def row(path: str, view: str = "Frontal", **cells: str) -> str:
    values = [cells.get(column.replace(" ", "_"), "") for column in COLUMNS]
    return ",".join([PREFIX + path, "Female", "68", view, "AP" if view == "Frontal" else "", *values])


TRAIN = [
    HEADER,
    row(
        "train/patient00001/study1/view1_frontal.jpg",
        Cardiomegaly="1.0",
        Edema="-1.0",
        Pleural_Effusion="0.0",
    ),
    row("train/patient00002/study1/view1_frontal.jpg", No_Finding="1.0", Support_Devices="1.0"),
    row("train/patient00003/study1/view1_frontal.jpg", Pneumonia="0.0"),
    row("train/patient00003/study1/view2_lateral.jpg", view="Lateral", Cardiomegaly="1.0"),
    row("train/patient00004/study1/view1_frontal.jpg", Edema="2.0"),
    row("train/patient00005/study2/view1_frontal.jpg", Fracture="yes", Lung_Lesion="1.0", Atelectasis="-1.0"),
    row("train/patient00006/study1/view1_frontal.jpg", Atelectasis="-1", Lung_Opacity="1"),
    row("train/patient00007/study1/view1_frontal.jpg", view="Oblique", Cardiomegaly="1.0"),
    PREFIX + "train/patient00008/study1/view1_frontal.jpg,Male,40,Frontal",
]
VALID = [HEADER, row("valid/patient64541/study1/view1_frontal.jpg", Edema="-1.0", Pneumothorax="1.0")]


def manifest(**layout) -> Manifest:
    base = {
        "type": "chexpert",
        "csvs": [{"path": "train.csv", "split": "train"}, {"path": "valid.csv", "split": "valid"}],
        "path_prefix": PREFIX,
    }
    return Manifest.model_validate(
        {"name": "chexpert", "modality": "xray", "license": "research", "layout": {**base, **layout}}
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "train.csv").write_text("\n".join(TRAIN) + "\n")
    (tmp_path / "valid.csv").write_text("\n".join(VALID) + "\n")
    return tmp_path


def by_patient(entries) -> dict[str, Item]:
    return {entry.patient: entry for entry in entries if isinstance(entry, Item)}


def test_cells_become_labels_with_uncertain_as_positive(root):
    entries = list(iter_items(manifest(uncertain="positive", views="frontal"), root))
    items = by_patient(entries)
    first = items["patient00001"]
    assert first.source_path == first.item_id == "train/patient00001/study1/view1_frontal.jpg"
    assert first.labels == ["Cardiomegaly", "Edema"] and first.uncertain_labels == ["Edema"]
    assert first.split == "train" and first.origin == "train.csv:2"
    assert items["patient00002"].labels == ["No Finding", "Support Devices"]
    assert items["patient00003"].labels == [] and items["patient00003"].uncertain_labels == []
    assert items["patient00006"].labels == ["Lung Opacity", "Atelectasis"]
    assert (
        items["patient64541"].labels == ["Edema", "Pneumothorax"] and items["patient64541"].split == "valid"
    )


@pytest.mark.parametrize(
    ("policy", "labels", "uncertain"),
    [
        ("positive", ["Cardiomegaly", "Edema"], ["Edema"]),
        ("negative", ["Cardiomegaly"], []),
        ("ignore", ["Cardiomegaly"], ["Edema"]),
    ],
)
def test_uncertainty_policies(root, policy, labels, uncertain):
    first = by_patient(iter_items(manifest(uncertain=policy), root))["patient00001"]
    assert (first.labels, first.uncertain_labels) == (labels, uncertain)


def test_bad_cells_are_item_errors_naming_file_line_and_column(root):
    reasons = [e.reason for e in iter_items(manifest(views="frontal"), root) if isinstance(e, ItemError)]
    assert reasons == [
        "train.csv:6: column 'Edema': bad value '2.0' (expected 1.0, 0.0, -1.0 or blank)",
        "train.csv:7: column 'Fracture': bad value 'yes' (expected 1.0, 0.0, -1.0 or blank)",
        "train.csv:9: column 'Frontal/Lateral': bad value 'oblique'",
        "train.csv:10: expected 19 fields, found 4",
    ]


def test_view_filter_drops_rows_without_calling_them_errors(root):
    entries = list(iter_items(manifest(views="frontal"), root))
    assert [e.item_id for e in entries if isinstance(e, Filtered)] == [
        "train/patient00003/study1/view2_lateral.jpg"
    ]
    lateral_only = list(iter_items(manifest(views="lateral"), root))
    assert [e.item_id for e in lateral_only if isinstance(e, Item)] == [
        "train/patient00003/study1/view2_lateral.jpg"
    ]
    everything = list(iter_items(manifest(views="all"), root))
    assert not any(isinstance(e, Filtered) for e in everything)
    assert (
        len([e for e in everything if isinstance(e, Item)]) == 7
    )  # the oblique row is fine without a filter


def test_a_wrong_header_names_the_file(root):
    (root / "valid.csv").write_text(
        "Path,Sex,Age\n" + PREFIX + "valid/patient1/study1/view1_frontal.jpg,F,1\n"
    )
    with pytest.raises(
        LayoutError, match=r"valid.csv: header lacks column\(s\) \['Frontal/Lateral', 'No Finding'"
    ):
        list(iter_items(manifest(), root))


def test_a_missing_csv_names_the_file(root):
    (root / "valid.csv").unlink()
    with pytest.raises(LayoutError, match=r"valid\.csv: annotation file not found"):
        list(iter_items(manifest(), root))
