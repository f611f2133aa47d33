"""A miniature UniMed raw tree: a few real images per part, placed where UniMed-CLIP's
docs/UniMed-DATA.md puts them, with each part's annotation file in its real format.

`make_unimed_raw(root)` returns, per recipe part, the caption lists the annotation files give for
each image that exists (None where the captions are our own wording), and the images the
annotations name that are absent (error rows).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import write_list_csv

LIST_HEADER = ["image_path", "labels", "captions"]  # never read: UniMed's CSVs are read by position


def _image(path: Path, shade: int) -> None:
    """A 48x40 image of coarse random blocks seeded by `shade`: each shade a distinct picture,
    so the dedupe stage keeps every image as its own sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = np.random.default_rng(shade).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(blocks).resize((48, 40), Image.Resampling.NEAREST).save(path)


def _rows_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _list_part(root: Path, csv_path: str, image_dir: str, rows: list[tuple[str, list, list]], shade: int):
    """Rows (image path as written in the CSV, labels, captions); images are made under `image_dir`."""
    for index, (written, _, _) in enumerate(rows):
        _image(root / image_dir / written, shade + index)
    write_list_csv(root / csv_path, LIST_HEADER, [[[path], labels, texts] for path, labels, texts in rows])
    return {written: texts for written, _, texts in rows}


def radimagenet(raw: Path) -> dict:
    """Paths relative to radimagenet/, the CSV inside radiology_ai/, CT and MR images in one file."""
    rows = [
        ("radiology_ai/CT/abd/normal/1.png", ["normal"], ["An abdominal CT slice.", "Axial CT, normal."]),
        ("radiology_ai/MR/knee/acl/2.png", ["acl"], ["Knee MRI with an ACL tear."]),
    ]
    return _list_part(
        raw / "radimagenet", "radiology_ai/radimagenet_with_captions_training_set.csv", "", rows, 10
    )


def chexpert(raw: Path) -> tuple[dict, list[str]]:
    """The CSV's paths repeat the root's own name, as UniMed's CheXpert file does; a blank caption
    is dropped; the third image is listed but never downloaded (an error row)."""
    root = raw / "CheXpert-v1.0-small"
    prefix = "CheXpert-v1.0-small/train"
    rows = [
        (f"{prefix}/patient1/study1/view1_frontal.jpg", ["Edema"], ["Edema.", "Fluid in lungs."]),
        (f"{prefix}/patient2/study1/view1_frontal.jpg", ["No Finding"], ["Normal chest.", " "]),
        (f"{prefix}/patient3/study1/view1_frontal.jpg", ["Cardiomegaly"], ["Big heart."]),
    ]
    write_list_csv(
        root / "chexpert_with_captions_only_frontal_view.csv",
        LIST_HEADER,
        [[[path], labels, texts] for path, labels, texts in rows],
    )
    (root / "train.csv").write_text("Path,Sex\n")
    for index, (path, _, _) in enumerate(rows[:2]):
        _image(root / path.split("/", 1)[1], 30 + index)
    expected = {path: [t for t in texts if t.strip()] for path, _, texts in rows[:2]}
    return expected, [rows[2][0]]


def openi(raw: Path) -> dict:
    """filter_cap.json paired by position with openai_refined_concepts.json, in a folder spelt `OpenI`."""
    root = raw / "OpenI"
    annotations = [
        {"image_id": "CXR1_1_IM-0001-3001", "caption": "The heart is normal in size."},
        {"image_id": "CXR2_IM-0652-1001", "caption": "No acute disease."},
    ]
    refined = [["Normal heart size.", "No cardiomegaly."], ["Clear lungs."]]
    root.mkdir(parents=True)
    (root / "filter_cap.json").write_text(json.dumps({"annotations": annotations}))
    (root / "openai_refined_concepts.json").write_text(json.dumps({"refined_captions": refined}))
    for index, entry in enumerate(annotations):
        _image(root / "image" / f"{entry['image_id']}.png", 40 + index)
    return {e["image_id"]: [e["caption"], *more] for e, more in zip(annotations, refined, strict=True)}


def chestxray8(raw: Path) -> dict:
    rows = [("00000001_000.png", ["Effusion"], ["Pleural effusion on the left.", "Fluid at the base."])]
    return _list_part(raw / "chest_xray8", "Chest-Xray8_with_captions.csv", "images", rows, 50)


def mimic_cxr(raw: Path) -> dict:
    """Paths relative to the annotation file's folder; a fourth column holds the report (or is blank)."""
    files = raw / "mimic-cxr-jpg" / "2.0.0" / "files"
    rows = [
        ("p10/p10000032/s50414267/a.jpg", ["Pneumonia"], ["Right lower lobe pneumonia."], "FINDINGS: consolidation."),
        ("p10/p10000033/s50414268/b.jpg", ["No Finding"], ["Normal study.", "Clear lungs."], ""),
    ]  # fmt: skip
    _rows_csv(
        files / "mimic_cxr_with_captions_and_reports_only_frontal_view.csv",
        [*LIST_HEADER, "report"],
        [[repr([path]), repr(labels), repr(texts), report] for path, labels, texts, report in rows],
    )
    for index, (path, *_) in enumerate(rows):
        _image(files / path, 60 + index)
    return {path: [report, *texts] if report else texts for path, _, texts, report in rows}


def caption_sets(raw: Path) -> dict[str, dict]:
    """ROCOv2, PMC-OA and Quilt-1M, whose own captions UniMed uses as they are. Quilt's lookup lists
    one image twice with two captions: one sample holding both."""
    roco = raw / "ROCOV2"
    _rows_csv(
        roco / "train_captions.csv",
        ["ID", "Caption"],
        [["ROCOv2_2023_train_000001", "CT of the chest."], ["ROCOv2_2023_train_000002", "Knee MRI."]],
    )
    _image(roco / "train" / "ROCOv2_2023_train_000001.jpg", 70)
    _image(roco / "train" / "ROCOv2_2023_train_000002.jpg", 71)

    pmc = raw / "pmc_oa"
    pmc.mkdir()
    (pmc / "pmc_oa.jsonl").write_text(
        json.dumps({"image": "PMC1_F1.jpg", "caption": "A histology slide."}) + "\n"
    )
    _image(pmc / "caption_T060_filtered_top4_sep_v0_subfigures" / "PMC1_F1.jpg", 80)

    quilt = raw / "Quilt"
    _rows_csv(
        quilt / "quilt_1M_lookup.csv",
        ["", "caption", "image_path", "subset", "split", "pathology"],
        [
            [0, "Dermatopathology slide at low power.", "q1.jpg", "quilt", "train", "['Dermatopathology']"],
            [1, "Melanocytic nests at high power.", "q1.jpg", "quilt", "train", ""],
        ],
    )
    _image(quilt / "quilt_1m" / "q1.jpg", 95)
    return {
        "unimed-rocov2": {"000001": ["CT of the chest."], "000002": ["Knee MRI."]},
        "unimed-pmc-oa": {"PMC1_F1.jpg": ["A histology slide."]},
        "unimed-quilt": {
            "q1.jpg": ["Dermatopathology slide at low power.", "Melanocytic nests at high power."]
        },
    }


def llava_med(raw: Path) -> dict[str, dict]:
    """UniMed's filtered alignment array, and its instruct file: an object of entry lists."""
    root = raw / "llava_med"
    root.mkdir()
    turns = [
        {"from": "human", "value": "<image>\nDescribe."},
        {"from": "gpt", "value": "A chest radiograph."},
    ]
    (root / "llava_med_alignment_500k_filtered.json").write_text(
        json.dumps([{"id": "a1", "image": "a1.jpg", "conversations": turns}])
    )
    figure = {
        "pair_id": "PMC1_F2",
        "fig_caption": "Fundus photograph of the left eye.",
        "in_text_mention": [{"tokens": "as the fundus shows, the disc is pale"}],
    }
    (root / "llava_med_instruct_fig_captions.json").write_text(json.dumps({"PMC1": [figure]}))
    _image(root / "images" / "a1.jpg", 90)
    _image(root / "images" / "PMC1_F2.jpg", 91)
    return {
        "unimed-llava-med-alignment": {"a1.jpg": ["A chest radiograph."]},
        "unimed-llava-med-instruct": {
            "PMC1_F2.jpg": [figure["fig_caption"], "as the fundus shows, the disc is pale"]
        },
    }


def retina(raw: Path) -> dict[str, dict]:
    """Retina-Annotations/: a per-dataset CSV (one banned cataract row), a file UniMed skips,
    DeepEyeNet (one noisy category) and MM-Retinal."""
    root = raw / "Retina-Datasets"
    notes = root / "Retina-Annotations"
    _rows_csv(
        notes / "03_IDRiD.csv",
        ["filename", "captions", "sentence_level_captions"],
        [
            ["03_IDRiD/a.jpg", repr(["Mild diabetic retinopathy."]), "Microaneurysms are seen."],
            ["03_IDRiD/b.jpg", repr(["A cataract blurs the view."]), ""],
        ],
    )
    _rows_csv(
        notes / "01_EYEPACS_revised.csv",
        ["filename", "captions", "sentence_level_captions"],
        [["x", "['x']", "y"]],
    )
    _rows_csv(
        notes / "06_DEN.csv",
        ["image", "categories", "atributes"],
        [["06_DEN/d1.jpg", repr(["drusen", "age 65 year"]), "[]"]],
    )
    _rows_csv(
        notes / "39_MM_Retinal_dataset.csv",
        ["image", "caption"],
        [["MM-Retinal/CFP/m1.jpg", "Optic disc oedema."]],
    )
    for index, path in enumerate(
        ["03_IDRiD/a.jpg", "03_IDRiD/b.jpg", "06_DEN/d1.jpg", "MM-Retinal/CFP/m1.jpg"]
    ):
        _image(root / path, 100 + index)
    return {
        "unimed-retina-flair": {"03_IDRiD/a.jpg": ["Mild diabetic retinopathy.", "Microaneurysms are seen."]},
        "unimed-retina-den": {"06_DEN/d1.jpg": None},  # captions are our own wording of the category
        "unimed-mm-retinal": {"MM-Retinal/CFP/m1.jpg": ["Optic disc oedema."]},
    }  # fmt: skip


def make_unimed_raw(raw: Path) -> dict:
    expected_chexpert, missing_chexpert = chexpert(raw)
    captions = {
        "unimed-radimagenet": radimagenet(raw),
        "unimed-chexpert": expected_chexpert,
        "unimed-openi": openi(raw),
        "unimed-chestxray8": chestxray8(raw),
        "unimed-mimic-cxr": mimic_cxr(raw),
        **caption_sets(raw),
        **llava_med(raw),
        **retina(raw),
    }
    return {"captions": captions, "missing": {"unimed-chexpert": missing_chexpert}}
