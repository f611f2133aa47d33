"""UniMed-CLIP's evaluation archive in miniature, and the details of reading its layouts.

`make_archive` makes each set's real layout (CSV shapes, folder nesting, file names) with one image
per class. Each image's colour encodes the class index UniMed's own loader gives it, so reading the
written samples back checks the whole chain: raw label -> loader index -> class key in
`classnames.txt` -> the sample's `cls`. The command's own tests are in `test_evalset_unimed.py`.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from tests.conftest import run_cli
from unimed_data.evalset.unimed_recipe import find_set_folder
from unimed_data.evalset.unimed_sets import SETS
from unimed_data.layouts.chexpert import OBSERVATIONS

ORGANS = [
    "heart",
    "left lung",
    "right lung",
    "liver",
    "spleen",
    "pancreas",
    "left kidney",
    "right kidney",
    "bladder",
    "left femoral head",
    "right femoral head",
]
SKIN_TUMOURS = [
    "tumor_skin_epithelial_sqcc",
    "tumor_skin_melanoma_melanoma",
    "tumor_skin_epithelial_bcc",
    "tumor_skin_naevus_naevus",
]
SKIN = [
    *(
        f"nontumor_skin_{tissue}"
        for tissue in (
            "necrosis_necrosis",
            "muscle_skeletal",
            "sweatglands_sweatglands",
            "vessel_vessel",
            "elastosis_elastosis",
            "chondraltissue_chondraltissue",
            "hairfollicle_hairfollicle",
            "epidermis_epidermis",
            "nerves_nerves",
            "subcutis_subcutis",
            "dermis_dermis",
            "sebaceousglands_sebaceousglands",
        )
    ),
    *SKIN_TUMOURS,
]
CHEXPERT = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
# Each set's classes: the keys of its prompt dictionary in UniMed's constants.py, in order.
KEYS = {
    "chexpert-5x200": CHEXPERT,
    "rsna_pneumonia": ["Normal", "Pneumonia"],
    "CT_axial": ORGANS,
    "CT_coronal": ORGANS,
    "CT_sagittal": ORGANS,
    "dr_regular": ["no_dr", "mild_dr", "moderate_dr", "severe_dr", "full_stage4_dr"],
    "LC25000_lung": ["Lung adenocarcinoma", "Benign lung", "Lung squamous cell carcinoma"],
    "LC25000_colon": ["Colon adenocarcinoma", "Benign colonic tissue"],
    "PCAM": ["Lymph node", "Lymph node containing metastatic tumor tissue"],
    "NCK_CRC": ["ADI", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"],
    "BACH": [
        "Breast non-malignant benign tissue",
        "Breast malignant in-situ carcinoma",
        "Breast malignant invasive carcinoma",
        "Breast normal breast tissue",
    ],
    "Osteo": ["Normal non-tumor", "Necrotic", "Tumor"],
    "skin_cancer": SKIN,
    "skin_tumor": SKIN_TUMOURS,
    "refuge_retina": ["no glaucoma", "glaucoma"],
    "five_retina": ["A", "D", "G", "N"],
    "odir_retina": ["normal", "pathologic myopia", "cataract"],
    "acl_mri": ["no", "yes"],
    "meniscal_mri": ["no", "yes"],
    "breast_us": ["benign", "malignant"],
    "thyroid_us": ["benign", "malignant"],
}
# The raw label UniMed's loader maps to class index 0, 1, ... (sets absent here use the index itself).
RAW = {
    "LC25000_lung": ["lung_aca", "lung_n", "lung_scc"],
    "LC25000_colon": ["colon_aca", "colon_n"],
    "NCK_CRC": KEYS["NCK_CRC"],
    "BACH": ["Benign", "InSitu", "Invasive", "Normal"],
    "Osteo": ["Non-Tumor", "Non-Viable-Tumor", "Viable"],
    "skin_cancer": SKIN,
    "skin_tumor": SKIN_TUMOURS,
    "refuge_retina": ["no glaucoma", "glaucoma"],
    "five_retina": ["age related macular degeneration", "diabetic retinopathy", "glaucoma", "normal"],
    "odir_retina": ["normal", "pathologic myopia", "cataract"],
    "acl_mri": ["no", "yes"],
    "meniscal_mri": ["n", "p"],
    "breast_us": ["benign", "malignant"],
    "thyroid_us": ["benign", "malignant"],
}
AUROC = {"acl_mri", "meniscal_mri", "breast_us", "thyroid_us", "refuge_retina"}
COLUMNS = {
    "X-ray": {"chexpert-5x200", "rsna_pneumonia"},
    "Retinal fundus": {"dr_regular", "refuge_retina", "five_retina", "odir_retina"},
    "CT": {"CT_axial", "CT_coronal", "CT_sagittal"},
    "MRI": {"acl_mri", "meniscal_mri"},
    "US": {"breast_us", "thyroid_us"},
    "Histopathology": {
        *("LC25000_lung", "LC25000_colon", "PCAM", "NCK_CRC", "BACH", "Osteo", "skin_cancer", "skin_tumor")
    },
}
FLAIR = {"refuge_retina": "25_REFUGE.csv", "five_retina": "13_FIVES.csv", "odir_retina": "08_ODIR200x3.csv"}
FROM_ANNOTATIONS = {"chexpert-5x200", *FLAIR}
# Inputs listed in the miniature archive that cannot be samples (see `make_archive`).
BAD_ROWS = {"chexpert-5x200": 1, "CT_axial": 1, "PCAM": 2, "Osteo": 1}


def picture(path: Path, index: int) -> None:
    """A small flat image whose red channel encodes `index`; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 32), (10 + 12 * index, 90, 160)).save(path)


def index_of(jpg: bytes) -> int:
    red = Image.open(io.BytesIO(jpg)).convert("RGB").getpixel((20, 16))[0]
    return round((red - 10) / 12)


def write_csv(path: Path, header: list[str] | None, rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([header, *rows] if header else rows)


def chexpert_csv(path: Path, rows: list[tuple[str, str | None]]) -> None:
    """chexpert-5x200.csv: an index column, `imgpath`, CheXpert's columns, a multi-line report."""
    findings = OBSERVATIONS
    header = ["", "imgpath", "Sex", "Age", "Frontal/Lateral", "AP/PA", *findings, "Report Impression"]
    body = []
    for number, (image, positive) in enumerate(rows):
        values = ["1.0" if name == positive else "0.0" for name in findings]
        body.append([number, image, "Male", 60, "Frontal", "AP", *values, "\n1. first finding.\n2. second."])
    write_csv(path, header, body)


def flair_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    write_csv(
        path,
        ["", "image", "atributes", "categories"],
        [[n, i, "[]", f"['{c}']"] for n, (i, c) in enumerate(rows)],
    )


def make_archive(root: Path, notes: Path) -> None:
    """One image per class of every set, in the archive's layouts, plus the rows in BAD_ROWS.
    PCAM lies one folder down (as UniMed's catalog has it) and thyroid_us is spelt `Thyroid_US`."""
    _x_ray_ct_and_dr_regular(root, notes)
    _pathology(root)
    _fundus_mri_and_us(root, notes)


def _x_ray_ct_and_dr_regular(root: Path, notes: Path) -> None:
    chexpert = []
    for index, finding in enumerate(CHEXPERT):
        image = f"CheXpert-v1.0-small/train/patient{index}/study1/view1_frontal.jpg"
        picture(root / "chexpert" / image, index)
        chexpert.append((image, finding))
    chexpert_csv(notes / "chexpert-5x200.csv", [*chexpert, ("CheXpert-v1.0-small/x.jpg", None)])

    picture(root / "rsna_custom_test_set" / "stage_2_train_images" / "a.png", 0)
    picture(root / "rsna_custom_test_set" / "stage_2_train_images" / "b.png", 1)
    write_csv(
        root / "rsna_custom_test_set" / "RSNA_pneumonia_balanced_testfile.csv",
        ["", "Path", "Target"],
        [[0, "stage_2_train_images/a.png", 0], [1, "stage_2_train_images/b.png", 1]],
    )
    for folder, count in (
        ("organs_axial", 11),
        ("organs_coronal", 11),
        ("organs_sagittal", 11),
        ("dr_regular", 5),
    ):
        rows = [["images/train.png", "p0", 0, "train"]]  # not a test row: not an input
        for index in range(count):
            picture(root / folder / "images" / f"{index}.png", index)
            rows.append([f"images/{index}.png", f"p{index}", index, "test"])
        if folder == "organs_axial":
            rows.append(["images/missing.png", "p9", 3, "test"])
        write_csv(root / folder / "annotations.csv", ["image_path", "patient_id", "label", "split"], rows)


def _pathology(root: Path) -> None:
    for name in ("LC25000_lung", "LC25000_colon", "NCK_CRC"):
        folder = root / ("CRC-VAL-HE-7K" if name == "NCK_CRC" else "LC25000_test")
        for index, raw in enumerate(RAW[name]):
            picture(folder / raw / f"{raw}1.{'tif' if name == 'NCK_CRC' else 'jpeg'}", index)
    (root / "LC25000_test" / "lung_n" / ".DS_Store").write_bytes(b"\0")  # hidden: not an input

    pcam = root / "uzair" / "PCam_Test_preprocessed"
    picture(pcam / "0001_0.png", 0)
    picture(pcam / "0002_1.png", 1)
    picture(pcam / "0003_7.png", 1)  # no class 7
    picture(pcam / "scan.png", 0)  # no label in the name

    bach = [[f"{raw.lower()}1.tif", raw] for raw in RAW["BACH"]]  # ships without a header row
    for index, (image, raw) in enumerate(bach):
        picture(root / "BACH" / raw / image, index)
    write_csv(root / "BACH" / "microscopy_ground_truth.csv", None, bach)

    osteo = [[f"tiles/{raw}.jpg", raw] for raw in RAW["Osteo"]]
    for index, (image, _) in enumerate(osteo):
        picture(root / "Osteosarcoma" / image, index)
    write_csv(
        root / "Osteosarcoma" / "annotations_final.csv",
        ["image.name", "classification"],
        [*osteo, ["tiles/x.jpg", "viable: non-viable"]],
    )

    for name, table in (("skin_cancer", "tiles-v2.csv"), ("skin_tumor", "SkinTumorSubset.csv")):
        rows = [["t0", f"data/{name}/train.jpg", RAW[name][0], "Train"]]
        for index, raw in enumerate(RAW[name]):
            picture(root / "skin_tumor" / "data" / name / f"{raw}.jpg", index)
            rows.append([f"t{index + 1}", f"data/{name}/{raw}.jpg", raw, "Test"])
        write_csv(root / "skin_tumor" / "data" / table, ["uuid", "file", "class", "set"], rows)


def _fundus_mri_and_us(root: Path, notes: Path) -> None:
    for name, folder, images in (
        ("refuge_retina", "REFUGE-Training400", "{index}.jpg"),
        ("five_retina", "fives_retina", "test/Original/{index}.png"),
        ("odir_retina", "08_ODIR-5K", "preprocessed_images/{index}_right.jpg"),
    ):
        rows = []
        for index, raw in enumerate(RAW[name]):
            image = f"{folder}/{images.format(index=index)}"
            picture(root / image, index)
            rows.append((image, raw))
        flair_csv(notes / FLAIR[name], rows)

    for name, folder, table in (
        ("acl_mri", "acl_mri", "test_fold1.csv"),
        ("meniscal_mri", "meniscal_mri", "meniscus_test_fold1.csv"),
        ("breast_us", "breast_us", "breast_test_fold1.csv"),
        ("thyroid_us", "Thyroid_US", "thyroid_test_fold1.csv"),
    ):
        rows = []
        for index, raw in enumerate(RAW[name]):
            picture(root / folder / "test" / f"{index}.png", index)
            rows.append([f"test/{index}.png", raw])
        write_csv(root / folder / table, ["image", "label"], rows)


def extracted(tmp_path: Path) -> tuple[Path, Path]:
    """The miniature archive in `tmp_path/extracted` and its four CSVs in `tmp_path/local_data`."""
    root, notes = tmp_path / "extracted", tmp_path / "local_data"
    make_archive(root, notes)
    return root, notes


def read_set(folder: Path) -> list[tuple[int, int, dict]]:
    """(cls, class index encoded in the image, json) for every test sample of a written set."""
    members = {}
    for index in range(int((folder / "test" / "nshards.txt").read_text())):
        with tarfile.open(folder / "test" / f"{index}.tar") as tar:
            members.update({m.name: tar.extractfile(m).read() for m in tar})
    keys = sorted(name.split(".")[0] for name in members if name.endswith(".jpg"))
    return [
        (int(members[f"{k}.cls"]), index_of(members[f"{k}.jpg"]), json.loads(members[f"{k}.json"]))
        for k in keys
    ]


def evalsets(root: Path, out: Path, *extra: object):
    return run_cli("evalset", "--recipe", "unimed", "--root", root, "--out", out, "--workers", "1", *extra)


def test_the_table_holds_unimeds_21_sets():
    assert [spec.name for spec in SETS] == list(KEYS)
    for spec in SETS:
        assert list(spec.classes) == KEYS[spec.name], spec.name
        assert spec.metric == ("auroc" if spec.name in AUROC else "top1"), spec.name
        assert spec.name in COLUMNS[spec.column], spec.name


def test_a_headerless_csvs_first_line_is_an_input_and_info_json_says_so(tmp_path):
    """BACH's ground truth has no header row: its first line is an image here, while UniMed's
    `pd.read_csv` takes it for the header; the set's info.json records the difference."""
    root, _ = extracted(tmp_path)
    out = tmp_path / "evals"
    assert evalsets(root, out, "--sets", "BACH,Osteo").exit_code == 0
    info = json.loads((out / "BACH" / "info.json").read_text())
    assert info["inputs"] == info["splits"]["test"] == 4
    assert info["note"] == (
        "microscopy_ground_truth.csv has no header row: its first line (benign1.tif) is read as an image "
        "here, while UniMed's loader (pandas.read_csv) takes it for the header, so UniMed scores one image fewer"
    )
    assert "note" not in json.loads((out / "Osteo" / "info.json").read_text())  # a CSV with a header


def test_a_header_row_is_not_an_input(tmp_path):
    root, _ = extracted(tmp_path)
    rows = [[f"{raw.lower()}1.tif", raw] for raw in RAW["BACH"]]
    write_csv(root / "BACH" / "microscopy_ground_truth.csv", ["image", "label"], rows)
    out = tmp_path / "evals"
    assert evalsets(root, out, "--sets", "BACH").exit_code == 0
    info = json.loads((out / "BACH" / "info.json").read_text())
    assert info["inputs"] == info["splits"]["test"] == 4 and "note" not in info


def test_a_set_folder_is_found_in_the_root_or_one_folder_down_whatever_its_case(tmp_path):
    for folder in ("root/BACH", "root/a/Thyroid_US/deeper", "root/b/acl_MRI", "root/b/ACL_mri"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "root" / "PCAM").write_text("a file, not a folder")
    root = tmp_path / "root"
    assert find_set_folder(root, "BACH") == root / "BACH"
    assert find_set_folder(root, "thyroid_us") == root / "a" / "Thyroid_US"
    assert find_set_folder(root, "acl_mri") is None  # two spellings, neither exact: not a unique match
    assert find_set_folder(root, "PCAM") is None  # a file is not a set folder
    assert find_set_folder(root, "deeper") is None  # two levels down: not looked for


def test_a_row_listed_twice_is_kept_twice_with_distinct_keys(tmp_path):
    root, notes = extracted(tmp_path)
    rows = [("REFUGE-Training400/0.jpg", "no glaucoma"), ("REFUGE-Training400/1.jpg", "glaucoma")]
    flair_csv(notes / "25_REFUGE.csv", [*rows, rows[1]])
    out = tmp_path / "evals"
    assert evalsets(root, out, "--annotations", notes, "--sets", "refuge_retina").exit_code == 0
    assert Counter(cls for cls, _, _ in read_set(out / "refuge_retina")) == {0: 1, 1: 2}


def test_real_flair_csvs_load_with_the_images_they_name(shared_data, tmp_path):
    notes, root = tmp_path / "local_data", tmp_path / "extracted"
    notes.mkdir()
    made = {}
    for name, expected_rows in (("08_ODIR200x3.csv", 600), ("25_REFUGE.csv", 400)):
        shutil.copy(shared_data / "annotations" / name, notes / name)
        with (notes / name).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == expected_rows
        images = sorted({row["image"] for row in rows})
        for image in images[::10]:  # a subset; the other rows become error rows
            picture(root / image, 0)
        made[name] = sum(row["image"] in images[::10] for row in rows)
    out = tmp_path / "evals"
    result = evalsets(root, out, "--annotations", notes, "--sets", "odir_retina,refuge_retina")
    assert result.exit_code == 0, result.output
    for name, file, rows in (
        ("odir_retina", "08_ODIR200x3.csv", 600),
        ("refuge_retina", "25_REFUGE.csv", 400),
    ):
        info = json.loads((out / name / "info.json").read_text())
        assert info["inputs"] == rows and info["splits"]["test"] == made[file]
        assert info["errors"] == rows - made[file] == pq.read_table(out / name / "errors.parquet").num_rows
