"""MIMIC-CXR-JPG: gzipped metadata/split/label CSVs, view filter, uncertain policy, reports, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from unimed_data.layouts import mimic_cxr
from unimed_data.layouts.chexpert import OBSERVATIONS
from unimed_data.layouts.item import Filtered, Item, ItemError, LayoutError
from unimed_data.layouts.mimic_cxr import MimicCxrLayout

D1 = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"  # p10000032 s50414267 PA
D2 = "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"  # p10000032 s50414267 LATERAL
D3 = "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"  # p10000032 s53189527 AP
D4 = "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714"  # p11000011 s51029426 PA, bad labels
D5 = "fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818"  # p12000004 s52000004 PA, not in label csv
D6 = "0a0b0c0d-11111111-22222222-33333333-44444444"  # p19999999 s59999999 AP, bad split

METADATA = [
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,"
    "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning",
    f"{D1},10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),"
    "postero-anterior,Erect",
    f"{D2},10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),"
    "lateral,Erect",
    f"{D3},10000032,53189527,CHEST (PORTABLE AP),AP,2705,2539,21800626,165500.312,CHEST (PORTABLE AP),"
    "antero-posterior,",
    f"{D4},11000011,51029426,CHEST (PA AND LAT),pa,3056,2544,21840504,100000,CHEST (PA AND LAT),"
    "postero-anterior,Erect",
    f"{D5},12000004,52000004,,PA,3056,2544,21500101,90000,,postero-anterior,Erect",
    f"{D6},19999999,59999999,,AP,3056,2544,21500101,90000,,antero-posterior,",
    "../../etc/passwd,10000032,50414267,,PA,1,1,1,1,,,",
    f"{D1},1000x032,50414267,,PA,1,1,1,1,,,",
    f"{D1},10000032,50414267",
    ",,,,,,,,,,,",
]
SPLIT = [
    "dicom_id,study_id,subject_id,split",
    f"{D1},50414267,10000032,train",
    f"{D2},50414267,10000032,train",
    f"{D3},53189527,10000032,train",
    f"{D4},51029426,11000011,validate",
    f"{D5},52000004,12000004,test",
    f"{D6},59999999,19999999,holdout",
]
LABEL_COLUMNS = sorted(OBSERVATIONS)  # the real file lists them alphabetically


def label_row(subject: str, study: str, **cells: str) -> str:
    return ",".join([subject, study, *(cells.get(column.replace(" ", "_"), "") for column in LABEL_COLUMNS)])


LABELS = [
    "subject_id,study_id," + ",".join(LABEL_COLUMNS),
    label_row("10000032", "50414267", No_Finding="1.0"),
    label_row("10000032", "53189527", Cardiomegaly="1.0", Edema="-1.0", Pleural_Effusion="0.0"),
    label_row("11000011", "51029426", Atelectasis="maybe"),
    label_row("19999999", "59999999", Pneumothorax="1.0"),
]

REPORT_1 = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.

 IMPRESSION:

 No acute cardiopulmonary process.
"""
REPORT_2 = """                                 FINAL REPORT
 INDICATION:  ___-year-old man with dyspnea.

 IMPRESSION:  Mild cardiomegaly. Possible mild pulmonary edema.
"""


def write_gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(lines) + "\n")


def write_report(root: Path, subject: str, study: str, text: str) -> None:
    path = root / "mimic-cxr-reports" / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_gz(tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz", METADATA)
    write_gz(tmp_path / "mimic-cxr-2.0.0-split.csv.gz", SPLIT)
    write_gz(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", LABELS)
    write_report(tmp_path, "10000032", "50414267", REPORT_1)
    write_report(tmp_path, "10000032", "53189527", REPORT_2)
    write_report(tmp_path, "19999999", "59999999", "FINAL REPORT\n INDICATION: test\n")
    return tmp_path


def layout(**options) -> MimicCxrLayout:
    return MimicCxrLayout.model_validate({"type": "mimic_cxr", **options})


def run(root: Path, **options):
    entries = list(mimic_cxr.iter_items(layout(**options), root))
    items = {entry.item_id: entry for entry in entries if isinstance(entry, Item)}
    errors = [entry for entry in entries if isinstance(entry, ItemError)]
    filtered = [entry for entry in entries if isinstance(entry, Filtered)]
    return items, errors, filtered


def image(subject: str, study: str, dicom: str) -> str:
    return f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg"


def test_items_paths_labels_splits_and_reports(root):
    items, _, _ = run(root)
    first = items[image("10000032", "50414267", D1)]
    assert first.source_path == first.item_id
    assert first.labels == ["No Finding"] and first.uncertain_labels == []
    assert first.patient == "10000032" and first.split == "train"
    assert first.origin == "mimic-cxr-2.0.0-metadata.csv.gz:2"
    assert (
        first.report
        == "There is no focal consolidation, pleural effusion or pneumothorax. No acute cardiopulmonary process."
    )
    second = items[image("10000032", "53189527", D3)]
    assert second.labels == ["Cardiomegaly", "Edema"] and second.uncertain_labels == ["Edema"]
    assert second.report == "Mild cardiomegaly. Possible mild pulmonary edema."
    unlabelled = items[image("12000004", "52000004", D5)]
    assert unlabelled.labels == [] and unlabelled.split == "test" and unlabelled.report is None
    assert len(items) == 3


def test_views_are_filtered(root):
    _, _, filtered = run(root)
    assert [entry.item_id for entry in filtered] == [image("10000032", "50414267", D2)]
    assert "LATERAL" in filtered[0].reason
    items, _, filtered = run(root, views=["pa", "ap", "lateral"])
    assert image("10000032", "50414267", D2) in items and not filtered
    items, _, filtered = run(root, views=["AP"])
    assert set(items) == {image("10000032", "53189527", D3)}
    assert run(root, views="frontal")[2] == run(root)[2]
    items, _, filtered = run(root, views="all")
    assert len(items) == 4 and not filtered
    with pytest.raises(ValueError, match="frontal, lateral or all"):
        layout(views="oblique")


@pytest.mark.parametrize(
    ("policy", "labels", "uncertain"),
    [
        ("positive", ["Cardiomegaly", "Edema"], ["Edema"]),
        ("negative", ["Cardiomegaly"], []),
        ("ignore", ["Cardiomegaly"], ["Edema"]),
    ],
)
def test_uncertain_policy(root, policy, labels, uncertain):
    items, _, _ = run(root, uncertain=policy)
    item = items[image("10000032", "53189527", D3)]
    assert item.labels == labels and item.uncertain_labels == uncertain


def test_row_errors_name_file_and_line(root):
    _, errors, _ = run(root)
    reasons = [error.reason for error in errors]
    assert len(reasons) == 5
    assert reasons[0].startswith("mimic-cxr-2.0.0-metadata.csv.gz:5: labels of study 51029426:")
    assert "mimic-cxr-2.0.0-chexpert.csv.gz:4" in reasons[0] and "'maybe'" in reasons[0]
    assert reasons[1].startswith("mimic-cxr-2.0.0-metadata.csv.gz:7: mimic-cxr-2.0.0-split.csv.gz:7:")
    assert "'holdout'" in reasons[1]
    assert reasons[2].startswith("mimic-cxr-2.0.0-metadata.csv.gz:8: column 'dicom_id'")
    assert reasons[3].startswith("mimic-cxr-2.0.0-metadata.csv.gz:9: column 'subject_id'")
    assert reasons[4] == "mimic-cxr-2.0.0-metadata.csv.gz:10: expected 12 fields, found 3"


def test_require_report(root):
    items, errors, _ = run(root, require_report=True)
    assert set(items) == {image("10000032", "50414267", D1), image("10000032", "53189527", D3)}
    missing = [error.reason for error in errors if "report" in error.reason]
    assert missing == [
        "mimic-cxr-2.0.0-metadata.csv.gz:6: report mimic-cxr-reports/files/p12/p12000004/s52000004.txt not found"
    ]
    items, _, _ = run(root, with_reports=False)
    assert all(item.report is None for item in items.values())


def test_plain_csvs_and_optional_files(root):
    for name in ("metadata", "split", "chexpert"):
        gz = root / f"mimic-cxr-2.0.0-{name}.csv.gz"
        (root / f"mimic-cxr-2.0.0-{name}.csv").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    items, _, _ = run(root, split_csv=None, labels_csv=None, metadata_csv="mimic-cxr-2.0.0-metadata.csv.gz")
    assert len(items) == 5  # without labels the bad-label study is fine; without splits so is the bad split
    assert all(item.split is None and item.labels == [] for item in items.values())
    assert [path.name for path in mimic_cxr.annotation_files(layout(), root)] == [
        "mimic-cxr-2.0.0-metadata.csv",
        "mimic-cxr-2.0.0-split.csv",
        "mimic-cxr-2.0.0-chexpert.csv",
    ]


def test_file_level_errors(root):
    (root / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(LayoutError, match=r"mimic-cxr-2.0.0-split.csv: annotation file not found"):
        run(root)
    write_gz(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id,subject_id,split"])
    with pytest.raises(LayoutError, match=r"header lacks column\(s\) \['study_id'\]"):
        run(root)
    (root / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(gzip.compress(b"dicom_id,study_id,split\n" * 50)[:40])
    with pytest.raises(LayoutError, match="unreadable gzip data"):
        run(root)


def test_model_rejects_unknown_options():
    with pytest.raises(ValueError, match="extra"):
        layout(view="PA")
    with pytest.raises(ValueError, match="leaves the dataset root"):
        layout(reports_dir="../reports")
