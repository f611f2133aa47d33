"""UniMed's list-cell caption CSVs, read by position: image-path list, labels, captions, (report)."""

from __future__ import annotations

import pandas as pd
import pytest
from pyarrow import parquet as pq
from pydantic import ValidationError

from tests.conftest import layout_manifest, write_list_csv
from unimed_data.layouts import Item, ItemError, LayoutError, annotation_files, iter_items
from unimed_data.manifest import Manifest
from unimed_data.stages.ingest import ingest_dataset

CHEXPERT_HEADER = ["Path", "labels", "captions"]  # names are never used: cells are read by position
MIMIC_HEADER = ["path", "label", "caption", "report"]


def manifest(**layout) -> Manifest:
    return layout_manifest("chexpert", "xray", type="unimed_csv", **layout)


def items(entries) -> list[Item]:
    return [entry for entry in entries if isinstance(entry, Item)]


def errors(entries) -> list[str]:
    return [entry.reason for entry in entries if isinstance(entry, ItemError)]


def test_chexpert_rows_become_items_with_the_files_captions_and_labels(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    captions = ["Frontal chest radiograph showing cardiomegaly.", "Enlarged cardiac silhouette, no effusion."]
    write_list_csv(
        root / "chexpert_with_captions_only_frontal_view.csv",
        CHEXPERT_HEADER,
        [
            [["CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"], ["Cardiomegaly"], captions],
            [
                ["CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg"],
                ["No Finding"],
                ["Clear lungs."],
            ],
        ],
    )
    (root / "train" / "patient00001" / "study1").mkdir(parents=True)
    (root / "train" / "patient00001" / "study1" / "view1_frontal.jpg").write_bytes(b"jpeg")
    entries = list(iter_items(manifest(csv="chexpert_with_captions_only_frontal_view.csv"), root))
    first, second = items(entries)
    assert first == Item(
        item_id="CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",  # as the file writes it
        source_path="train/patient00001/study1/view1_frontal.jpg",
        labels=["Cardiomegaly"],
        captions=captions,
        caption_source="unimed",
        origin="chexpert_with_captions_only_frontal_view.csv:2",
    )
    # no image on disk yet: the documented place is kept (the convert stage reports it missing there)
    assert second.source_path == "train/patient00002/study1/view1_frontal.jpg"
    assert second.item_id == "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg"
    assert second.report is None and second.captions == ["Clear lungs."]


def test_a_file_written_by_pandas_reads_the_same(tmp_path):
    frame = pd.DataFrame(
        {
            "filename": [str(["images/00000001_000.png"])],
            "labels": [str(["Cardiomegaly", "Effusion"])],
            "captions": [str(['Chest X-ray with an enlarged heart, and a "small" effusion.'])],
        }
    )
    frame.to_csv(tmp_path / "Chest-Xray8_with_captions.csv", index=False)
    [item] = iter_items(manifest(csv="Chest-Xray8_with_captions.csv"), tmp_path)
    assert item.source_path == "images/00000001_000.png"
    assert item.labels == ["Cardiomegaly", "Effusion"]
    assert item.captions == ['Chest X-ray with an enlarged heart, and a "small" effusion.']


MIMIC_ROWS = [
    [
        ["p10/p10000032/s50414267/a.jpg"],
        ["No Finding"],
        ["Normal chest.", "No acute process."],
        " No acute process. ",
    ],
    [["p10/p10000032/s53189527/b.jpg"], ["Edema"], ["Mild pulmonary edema."], ""],
    [["p10/p10000032/s53911762/c.jpg"], ["Edema"], ["Edema."], "NaN"],
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("captions", [["Normal chest.", "No acute process."], ["Mild pulmonary edema."], ["Edema."]]),
        ("report", [["No acute process."], ["Mild pulmonary edema."], ["Edema."]]),
        ("both", [["No acute process.", "Normal chest."], ["Mild pulmonary edema."], ["Edema."]]),
    ],
)
def test_mimic_report_column_and_text_modes(tmp_path, text, expected):
    relpath = "2.0.0/files/mimic_cxr_with_captions_and_reports_only_frontal_view.csv"
    write_list_csv(tmp_path / relpath, MIMIC_HEADER, MIMIC_ROWS)
    entries = list(iter_items(manifest(csv=relpath, text=text), tmp_path))
    assert [item.captions for item in items(entries)] == expected
    report = None if text == "captions" else "No acute process."  # column 4 is read only for a report
    assert [item.report for item in items(entries)] == [report, None, None]
    assert items(entries)[0].source_path == "p10/p10000032/s50414267/a.jpg"


def test_with_text_captions_an_extra_column_is_never_the_report(tmp_path):
    write_list_csv(
        tmp_path / "c.csv",
        ["Path", "labels", "captions", "Sex"],
        [[["train/p1/s1/view1_frontal.jpg"], ["Edema"], ["Pulmonary edema."], "Female"]],
    )
    [item] = iter_items(manifest(csv="c.csv"), tmp_path)
    assert item.report is None and item.captions == ["Pulmonary edema."]


@pytest.mark.parametrize("prefix", ["", "files/", "2.0.0/files/"])
def test_images_beside_the_csv_are_found_in_every_path_form(tmp_path, prefix):
    relpath = "2.0.0/files/mimic.csv"
    raw = f"{prefix}p10/p10000032/s50414267/a.jpg"
    write_list_csv(tmp_path / relpath, MIMIC_HEADER, [[[raw], ["No Finding"], ["Normal chest."], ""]])
    image = tmp_path / "2.0.0" / "files" / "p10" / "p10000032" / "s50414267" / "a.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"jpeg")
    [item] = iter_items(manifest(csv=relpath), tmp_path)
    assert item.source_path == "2.0.0/files/p10/p10000032/s50414267/a.jpg"
    assert item.item_id == raw  # the key does not depend on where the image lies


def test_blank_captions_are_dropped_and_a_row_without_any_is_an_error(tmp_path):
    write_list_csv(
        tmp_path / "r.csv",
        ["a", "b", "c", "d"],
        [
            [["CT/abd/a.png"], ["normal"], ["  ", " Axial CT of the abdomen. ", ""], ""],
            [["CT/abd/b.png"], ["normal"], ["", " "], ""],
            [["CT/abd/c.png"], ["normal"], [], "Report only."],
        ],
    )
    entries = list(iter_items(manifest(csv="r.csv"), tmp_path))
    assert [item.captions for item in items(entries)] == [["Axial CT of the abdomen."]]
    assert errors(entries) == ["r.csv:3: no caption", "r.csv:4: no caption"]
    [fallback] = items(iter_items(manifest(csv="r.csv", text="report"), tmp_path))[1:]
    assert fallback.captions == ["Report only."] and fallback.report == "Report only."


def test_bad_cells_and_short_rows_are_errors_naming_file_line_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text(
        "path,labels,captions\n"
        "\"['a.png']\",\"['x']\",\"['ok']\"\n"
        "a.png,\"['x']\",\"['c']\"\n"
        '"[]","[\'x\']","[\'c\']"\n'
        "\"['b.png']\",x,\"['c']\"\n"
        "\"['c.png']\",\"['x']\",\"__import__('os').system('echo hacked')\"\n"
        "\"['d.png']\",\"['x']\"\n"
        "\"['../e.png']\",\"['x']\",\"['c']\"\n"
        "\n"
        '"[\'f.png\']","[1]","[\'c\']"\n'
    )
    entries = list(iter_items(manifest(csv="bad.csv"), tmp_path))
    assert [item.source_path for item in items(entries)] == ["a.png"]
    assert errors(entries) == [
        "bad.csv:3: column 1 (image path): not a Python list literal: 'a.png'",
        "bad.csv:4: column 1 (image path): expected a list starting with the image path, got '[]'",
        "bad.csv:5: column 2 (labels): not a Python list literal: 'x'",
        "bad.csv:6: column 3 (captions): not a Python list literal: \"__import__('os').system('echo hacked')\"",
        "bad.csv:7: expected 3 fields, found 2",
        "bad.csv:8: column 1 (image path): path '../e.png' leaves the dataset root",
        "bad.csv:10: column 2 (labels): expected a list of strings, got '[1]'",
    ]
    assert len(entries) == 8  # every non-blank data row is an item or an error


def test_a_long_cell_is_cut_in_the_error_reason(tmp_path):
    long_path = "x" * 200
    long_captions = "[" + "'caption', " * 30
    write_list_csv(
        tmp_path / "c.csv", CHEXPERT_HEADER, [[long_path, ["x"], ["c"]], [["a.png"], ["x"], long_captions]]
    )
    first, second = errors(iter_items(manifest(csv="c.csv"), tmp_path))
    assert first == f"c.csv:2: column 1 (image path): not a Python list literal: '{'x' * 79}…'"
    assert second == f"c.csv:3: column 3 (captions): not a Python list literal: {long_captions[:79] + '…'!r}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("path,labels,captions\n", "no data rows"),
        ("path,captions\n\"['a.png']\",\"['c']\"\n", "at least 3 columns"),
        (b"path,labels,captions\n\xff\xfe\n", "not UTF-8"),
    ],
)
def test_unreadable_files_are_layout_errors(tmp_path, content, message):
    path = tmp_path / "c.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(LayoutError, match=message):
        list(iter_items(manifest(csv="c.csv"), tmp_path))
    with pytest.raises(LayoutError, match="not found"):
        list(iter_items(manifest(csv="missing.csv"), tmp_path))


def test_model_options(tmp_path):
    model = manifest(csv="a/b.csv")
    assert model.layout.image_root == "" and model.layout.text == "captions"
    assert annotation_files(model, tmp_path) == [tmp_path / "a" / "b.csv"]
    with pytest.raises(ValidationError):
        manifest(csv="a.csv", text="summary")
    with pytest.raises(ValidationError):
        manifest(csv="../a.csv")


def test_ingest_records_mark_the_captions_unimed_and_counts_add_up(tmp_path):
    raw = tmp_path / "raw"
    write_list_csv(
        raw / "chexpert" / "c.csv",
        CHEXPERT_HEADER,
        [
            [["train/p1/s1/view1_frontal.jpg"], ["Edema"], ["Pulmonary edema."]],
            [["train/p2/s1/view1_frontal.jpg"], ["Edema"], [" "]],
            [["train/p1/s1/view1_frontal.jpg"], ["Edema"], ["Listed twice."]],
        ],
    )
    summary = ingest_dataset(manifest(csv="c.csv"), raw, tmp_path / "work", salt="s", seed=0)
    # three rows: one record, one error (no caption), one repeated image merged into the record
    assert (summary.records, summary.errors, summary.filtered, summary.merged) == (1, 1, 0, 1)
    [record] = pq.read_table(tmp_path / "work" / "chexpert" / "records.parquet").to_pylist()
    assert (
        record["captions"] == ["Pulmonary edema.", "Listed twice."] and record["caption_source"] == "unimed"
    )
    assert record["labels"] == ["Edema"]
