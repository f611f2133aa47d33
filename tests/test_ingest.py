"""The ingest stage: records and errors tables from real and written annotations."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from unimed_data.layouts import LayoutError
from unimed_data.manifest import Manifest, find_manifest, load_manifest
from unimed_data.schema import ERROR_SCHEMA, RECORD_SCHEMA, hash_patient, make_key
from unimed_data.stages.ingest import IngestSummary, ingest_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
SALT = "test-salt-4f1c"

CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)


def tables(work: Path, slug: str) -> tuple[list[dict], list[dict]]:
    records = pq.read_table(work / slug / "records.parquet")
    errors = pq.read_table(work / slug / "errors-ingest.parquet")
    assert records.schema.equals(RECORD_SCHEMA) and errors.schema.equals(ERROR_SCHEMA)
    return records.to_pylist(), errors.to_pylist()


def bundled(name: str, **update) -> Manifest:
    return load_manifest(find_manifest(name)).model_copy(update=update)


@needs_shared
@pytest.mark.parametrize(("name", "csv_name"), [("odir-5k", "08_ODIR200x3.csv"), ("refuge", "25_REFUGE.csv")])
def test_real_flair_csvs_ingest_with_the_right_label_counts(tmp_path, name, csv_name):
    manifest = bundled(name, root="annotations")  # the shared folder holds the CSVs; images are not needed
    summary = ingest_dataset(manifest, SHARED, tmp_path, salt=SALT, seed=0)

    first_seen: dict[str, str] = {}  # independent reading: one record per distinct image, first row wins
    with (SHARED / "annotations" / csv_name).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        first_seen.setdefault(row["image"], row["categories"].strip("[]'"))
    expected = Counter(manifest.readable(category) for category in first_seen.values())

    records, errors = tables(tmp_path, manifest.slug)
    assert summary == IngestSummary(name, len(first_seen), len(rows) - len(first_seen), 0)
    assert len(records) + len(errors) == len(rows)
    assert Counter(label for record in records for label in record["labels"]) == expected
    assert all(error["reason"].split(": ")[1].startswith("duplicate item") for error in errors)
    assert {record["modality"] for record in records} == {"fundus"}
    assert {record["license"] for record in records} == {manifest.license}
    assert records[0]["source_path"] == str(SHARED / "annotations" / rows[0]["image"])
    assert records[0]["key"] == make_key(name, rows[0]["image"])
    assert all(r["image_path"] is None and r["sha256"] is None and r["width"] is None for r in records)
    assert all(r["captions"] == [] and r["caption_source"] is None for r in records)


@needs_shared
def test_odir_duplicates_are_error_rows_that_name_the_csv_line(tmp_path):
    ingest_dataset(bundled("odir-5k", root="annotations"), SHARED, tmp_path, salt=SALT, seed=0)
    _, errors = tables(tmp_path, "odir-5k")
    assert errors[0]["reason"] == (
        "08_ODIR200x3.csv:582: duplicate item '08_ODIR-5K/preprocessed_images/13_right.jpg', already ingested"
    )
    assert errors[0]["stage"] == "ingest" and errors[0]["key"] == make_key(
        "odir-5k", "08_ODIR-5K/preprocessed_images/13_right.jpg"
    )


@needs_shared
def test_biomedica_demo_ingests_eight_original_caption_records(tmp_path):
    manifest = bundled("biomedica-demo", root="biomedica_demo")
    summary = ingest_dataset(manifest, SHARED, tmp_path, salt=SALT, seed=0)
    assert summary == IngestSummary("biomedica-demo", 8, 0, 0)
    records, _ = tables(tmp_path, "biomedica-demo")
    lines = {
        json.loads(line)["id"]: json.loads(line) for line in (SHARED / "biomedica_demo/meta.jsonl").open()
    }
    assert {r["key"] for r in records} == {make_key("biomedica-demo", item_id) for item_id in lines}
    assert sorted(r["captions"][0] for r in records) == sorted(line["txt"] for line in lines.values())
    assert {r["caption_source"] for r in records} == {"original"}
    assert Counter(r["modality"] for r in records) == {"pathology": 4, "ct": 1, "endoscopy": 1, "other": 2}
    assert all(Path(r["source_path"]).is_file() for r in records)


def chexpert_raw(tmp_path: Path) -> Path:
    """A CheXpert-v1.0-small layout under raw/chexpert-v1.0-small/ with tricky rows."""
    root = tmp_path / "raw" / "chexpert-v1.0-small"
    root.mkdir(parents=True)
    prefix = "CheXpert-v1.0-small/"
    blank = [""] * 14

    def line(path, view, **cells):
        columns = CHEXPERT_HEADER.split(",")[5:]
        return ",".join([prefix + path, "Male", "50", view, "PA", *[cells.get(c, "") for c in columns]])

    train = [
        CHEXPERT_HEADER,
        line("train/patient00001/study1/view1_frontal.jpg", "Frontal", Cardiomegaly="1.0", Edema="-1.0"),
        line("train/patient00001/study1/view2_lateral.jpg", "Lateral", Cardiomegaly="1.0"),
        line("train/patient00002/study1/view1_frontal.jpg", "Frontal", **{"No Finding": "1.0"}),
        line("train/patient00003/study1/view1_frontal.jpg", "Frontal", **{"Pleural Effusion": "2.0"}),
        line(
            "train/patient00001/study1/view1_frontal.jpg", "Frontal", Cardiomegaly="1.0"
        ),  # same image again
        ",".join([prefix + "train/patient00004/study1/view1_frontal.jpg", "F", "1", "Frontal", "AP", *blank]),
    ]
    valid = [
        CHEXPERT_HEADER,
        line("valid/patient64541/study1/view1_frontal.jpg", "Frontal", Pneumothorax="1.0"),
    ]
    (root / "train.csv").write_text("\n".join(train) + "\n")
    (root / "valid.csv").write_text("\n".join(valid) + "\n")
    return tmp_path / "raw"


def test_chexpert_with_the_bundled_manifest(tmp_path):
    raw = chexpert_raw(tmp_path)
    manifest = bundled("chexpert-v1.0-small")
    summary = ingest_dataset(manifest, raw, tmp_path / "work", salt=SALT, seed=0)
    assert summary == IngestSummary("chexpert-v1.0-small", records=4, errors=2, filtered=1)
    assert summary.records + summary.errors + summary.filtered == 7  # every data row accounted for

    records, errors = tables(tmp_path / "work", "chexpert-v1-0-small")
    by_path = {Path(r["source_path"]).relative_to(raw / "chexpert-v1.0-small").as_posix(): r for r in records}
    first = by_path["train/patient00001/study1/view1_frontal.jpg"]
    assert first["labels"] == ["cardiomegaly", "pulmonary edema"] and first["uncertain_labels"] == [
        "pulmonary edema"
    ]
    assert first["patient_id"] == hash_patient("patient00001", SALT) and first["split"] == "train"
    assert by_path["train/patient00002/study1/view1_frontal.jpg"]["labels"] == ["no finding"]
    assert by_path["train/patient00004/study1/view1_frontal.jpg"]["labels"] == []
    assert by_path["valid/patient64541/study1/view1_frontal.jpg"]["split"] == "val"
    assert [e["reason"] for e in errors] == [
        "train.csv:5: column 'Pleural Effusion': bad value '2.0' (expected 1.0, 0.0, -1.0 or blank)",
        "train.csv:6: duplicate item 'train/patient00001/study1/view1_frontal.jpg', already ingested",
    ]


def test_an_unusable_source_split_is_an_error_row(tmp_path):
    root = tmp_path / "raw" / "set"
    root.mkdir(parents=True)
    (root / "labels.csv").write_text("file,label,split\na.png,x,train\nb.png,y,holdout\nc.png,z,\n")
    manifest = Manifest.model_validate(
        {
            "name": "set",
            "modality": "ct",
            "license": "MIT",
            "split": {"by": "column"},
            "layout": {
                "type": "csv_label",
                "csv": "labels.csv",
                "image_column": "file",
                "label_column": "label",
                "split_column": "split",
            },
        }
    )
    summary = ingest_dataset(manifest, tmp_path / "raw", tmp_path / "work", salt=SALT, seed=0)
    assert (summary.records, summary.errors) == (1, 2)
    _, errors = tables(tmp_path / "work", "set")
    assert errors[0]["reason"].startswith("labels.csv:3: unknown split 'holdout'")
    assert (
        errors[1]["reason"]
        == "labels.csv:4: split rule is 'column' but the source gives no split for this item"
    )
    assert errors[1]["source_path"] == str(root / "c.png")


def patients_manifest(**changes) -> Manifest:
    data = {
        "name": "cohort",
        "modality": "mri",
        "license": "CC-BY-4.0",
        "layout": {
            "type": "csv_label",
            "csv": "labels.csv",
            "image_column": "image",
            "label_column": "finding",
            "patient_column": "patient",
        },
        "classes": {"glioma_grade_2": "grade 2 glioma"},
    }
    return Manifest.model_validate({**data, **changes})


def patients_raw(tmp_path: Path, patients: int = 1000, images: int = 5) -> Path:
    root = tmp_path / "raw" / "cohort"
    root.mkdir(parents=True)
    lines = ["image,finding,patient"]
    lines += [
        f"scans/{p}_{i}.dcm,glioma_grade_2,MRN-RAW-{p:06d}" for p in range(patients) for i in range(images)
    ]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "raw"


def test_patients_never_straddle_splits_and_raw_ids_never_reach_the_outputs(tmp_path):
    raw, work = patients_raw(tmp_path), tmp_path / "work"
    summary = ingest_dataset(patients_manifest(), raw, work, salt=SALT, seed=0)
    assert summary == IngestSummary("cohort", 5000, 0, 0)  # more rows than one write batch
    records, _ = tables(work, "cohort")
    splits_of: dict[str, set] = {}
    for record in records:
        splits_of.setdefault(record["patient_id"], set()).add(record["split"])
    assert len(splits_of) == 1000 and all(len(found) == 1 for found in splits_of.values())
    counts = Counter(next(iter(found)) for found in splits_of.values())
    assert abs(counts["train"] / 1000 - 0.9) < 0.03
    assert {tuple(record["labels"]) for record in records} == {("grade 2 glioma",)}

    for path in (work / "cohort").iterdir():
        data = path.read_bytes()
        assert b"MRN-RAW" not in data and SALT.encode() not in data, path.name
    decoded = json.dumps(records) + json.dumps(tables(work, "cohort")[1])
    assert "MRN-RAW" not in decoded  # also checked after decompression


def test_reingest_is_skipped_until_an_input_changes(tmp_path):
    raw, work = patients_raw(tmp_path, patients=20), tmp_path / "work"
    records_path = work / "cohort" / "records.parquet"
    first = ingest_dataset(patients_manifest(), raw, work, salt=SALT, seed=0)
    mtime = records_path.stat().st_mtime_ns

    again = ingest_dataset(patients_manifest(), raw, work, salt=SALT, seed=0)
    assert again == IngestSummary(first.dataset, first.records, first.errors, first.filtered, skipped=True)
    assert records_path.stat().st_mtime_ns == mtime

    changed = patients_manifest(classes={"glioma_grade_2": "WHO grade 2 glioma"})
    assert not ingest_dataset(changed, raw, work, salt=SALT, seed=0).skipped
    assert tables(work, "cohort")[0][0]["labels"] == ["WHO grade 2 glioma"]
    assert ingest_dataset(changed, raw, work, salt=SALT, seed=0).skipped
    assert not ingest_dataset(changed, raw, work, salt=SALT, seed=1).skipped
    assert not ingest_dataset(changed, raw, work, salt="another-salt", seed=1).skipped

    csv_path = raw / "cohort" / "labels.csv"
    csv_path.write_text(csv_path.read_text() + "scans/new.dcm,glioma_grade_2,MRN-RAW-999999\n")
    rebuilt = ingest_dataset(changed, raw, work, salt="another-salt", seed=1)
    assert (rebuilt.skipped, rebuilt.records) == (False, first.records + 1)

    (work / "cohort" / "errors-ingest.parquet").unlink()
    assert not ingest_dataset(changed, raw, work, salt="another-salt", seed=1).skipped
    assert "another-salt" not in (work / "cohort" / "ingest.json").read_text()


def test_folder_layout_ingests_an_extension_less_dicom(tmp_path):
    import shutil

    import pydicom

    root = tmp_path / "raw" / "scans" / "abdomen"
    root.mkdir(parents=True)
    shutil.copyfile(Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm", root / "IM000001")
    (root / "notes").write_bytes(b"not dicom" * 20)
    manifest = Manifest.model_validate(
        {
            "name": "scans",
            "modality": "ct",
            "license": "MIT",
            "layout": {"type": "folder"},
            "split": {"by": "fixed", "split": "test"},
        }
    )
    assert ingest_dataset(manifest, tmp_path / "raw", tmp_path / "work", salt=SALT, seed=0) == IngestSummary(
        "scans", 1, 0, 0
    )
    [record], _ = tables(tmp_path / "work", "scans")
    assert record["labels"] == ["abdomen"] and record["split"] == "test" and record["patient_id"] is None
    assert record["source_path"] == str(root / "IM000001")


def test_an_unreadable_dataset_raises_and_leaves_no_outputs(tmp_path):
    manifest = patients_manifest()
    (tmp_path / "raw" / "cohort").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"labels\.csv: annotation file not found"):
        ingest_dataset(manifest, tmp_path / "raw", tmp_path / "work", salt=SALT, seed=0)
    assert os.listdir(tmp_path / "work" / "cohort") == []  # no partial table, no stamp


def test_a_folder_in_the_path_can_give_each_item_its_modality(tmp_path):
    root = tmp_path / "raw" / "rad"
    for path in ("CT/liver/1.png", "MR/knee/2.png", "other/3.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x")
    manifest = Manifest.model_validate(
        {
            "name": "rad",
            "modality": "other",
            "license": "test",
            "layout": {"type": "folder", "path": ""},
            "modality_from_folder": {"CT": "ct", "MR": "mri"},
        }
    )
    ingest_dataset(manifest, tmp_path / "raw", tmp_path / "work", salt=SALT, seed=0)
    records, _ = tables(tmp_path / "work", "rad")
    by_folder = {
        record["source_path"].split("/rad/")[1].split("/")[0]: record["modality"] for record in records
    }
    assert by_folder == {"CT": "ct", "MR": "mri", "other": "other"}


def test_an_image_listed_with_several_captions_is_one_record_holding_them_all(tmp_path):
    root = tmp_path / "raw" / "quilt-1m"
    root.mkdir(parents=True)
    with (root / "quilt_1M_lookup.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "caption", "image_path", "subset", "split", "pathology"])
        writer.writerow([0, "Low power view.", "a.jpg", "quilt", "train", "['Dermatopathology']"])
        writer.writerow([1, "Nests of melanocytes.", "b.jpg", "quilt", "train", ""])
        writer.writerow([2, "High power: atypia.", "a.jpg", "quilt", "train", "['Soft tissue']"])
        writer.writerow([3, "Low power view.", "a.jpg", "quilt", "train", ""])  # a repeated caption
    manifest = bundled("quilt-1m")
    summary = ingest_dataset(manifest, tmp_path / "raw", tmp_path / "work", salt=SALT, seed=0)
    records, errors = tables(tmp_path / "work", manifest.slug)
    assert summary == IngestSummary("quilt-1m", records=2, errors=0, filtered=0, merged=2)
    by_image = {Path(r["source_path"]).name: r for r in records}
    assert by_image["a.jpg"]["captions"] == ["Low power view.", "High power: atypia."]
    assert by_image["a.jpg"]["labels"] == ["Dermatopathology", "Soft tissue"]
    assert by_image["b.jpg"]["captions"] == ["Nests of melanocytes."] and errors == []
