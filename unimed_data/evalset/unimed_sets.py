"""UniMed-CLIP's 21 zero-shot evaluation sets, as data.

Every fact here comes from UniMed-CLIP's public repository: the set names and folders from
`clipeval/dataset_catalog.json` and `clipeval/datasets.py` (the catalog minus `imagenet`,
`radimagenet` and `SICAPv2`, which `src/training/slip_evaluate.py` skips), the layout each loader
reads, its mapping from raw label to class index, the prompt dictionary `slip_evaluate.py` pairs
with the set, and that dictionary's keys in `constants.py`, in order: UniMed scores class index i
against key i, so the keys are the class list. The metric follows `clipeval/eval_zeroshot.py`
(sets it scores by top-1 accuracy, and the binary sets whose AUROC the paper reports).

The readable wording of each class is ours: it fills the bundled zero-shot templates, since keys
such as `A` (FIVES) or `ADI` (NCT-CRC) make poor prompts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from unimed_data.evalset.unimed_readers import (
    ClassFolders,
    ColumnsCsv,
    FlairCsv,
    LabelInName,
    Layout,
    OneHotCsv,
)

# The one definition of the headline metrics and of the columns of UniMed's table, in its order;
# the evaluator's `--protocol unimed` (unimed_train.eval.protocols) checks and averages by them.
METRICS = ("auroc", "top1")
COLUMNS = ("X-ray", "Retinal fundus", "CT", "MRI", "US", "Histopathology")


@dataclass(frozen=True)
class UniMedSet:
    name: str  # UniMed's catalog name
    folder: str  # the set's folder in the extracted archive
    layout: Layout
    modality: str
    column: str  # the column of UniMed's results table the set is averaged into
    metric: str  # auroc | top1
    prompt_dict: str  # the dictionary of UniMed's constants.py the set is scored with
    classes: tuple[str, ...]  # that dictionary's keys, in order: index = UniMed's label
    readable: tuple[str, ...]  # our wording of each class, for the bundled templates
    labels: Mapping[str, int] | None = field(default=None)  # raw label -> index; None: the label is the index
    max_prompts: int | None = None  # UniMed averages only this many prompts per class (None: all)

    def __post_init__(self) -> None:
        if (
            len(self.readable) != len(self.classes)
            or self.metric not in METRICS
            or self.column not in COLUMNS
        ):
            raise ValueError(f"{self.name}: inconsistent entry")
        if self.labels is not None and set(self.labels.values()) != set(range(len(self.classes))):
            raise ValueError(f"{self.name}: the label mapping does not cover the classes")


def _identity(keys: tuple[str, ...]) -> dict[str, int]:
    return {key: index for index, key in enumerate(keys)}


_CHEXPERT = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
_ORGANS = (
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
)
_ORGANS_READABLE = tuple(f"the {organ}" for organ in _ORGANS)
_ORGANS_TEST = ColumnsCsv("annotations.csv", image=0, label=2, keep=("split", "test"))
_SKIN_TUMOURS = (
    "tumor_skin_epithelial_sqcc",
    "tumor_skin_melanoma_melanoma",
    "tumor_skin_epithelial_bcc",
    "tumor_skin_naevus_naevus",
)
_SKIN_TUMOURS_READABLE = ("cutaneous squamous cell carcinoma", "melanoma", "basal cell carcinoma", "a naevus")
_SKIN_TISSUES = (
    "nontumor_skin_necrosis_necrosis",
    "nontumor_skin_muscle_skeletal",
    "nontumor_skin_sweatglands_sweatglands",
    "nontumor_skin_vessel_vessel",
    "nontumor_skin_elastosis_elastosis",
    "nontumor_skin_chondraltissue_chondraltissue",
    "nontumor_skin_hairfollicle_hairfollicle",
    "nontumor_skin_epidermis_epidermis",
    "nontumor_skin_nerves_nerves",
    "nontumor_skin_subcutis_subcutis",
    "nontumor_skin_dermis_dermis",
    "nontumor_skin_sebaceousglands_sebaceousglands",
)
_SKIN_TISSUES_READABLE = (
    "necrotic tissue",
    "skeletal muscle",
    "sweat glands",
    "blood vessels",
    "solar elastosis of the dermis",
    "cartilage",
    "hair follicles",
    "epidermis",
    "peripheral nerves",
    "subcutaneous fat",
    "dermis",
    "sebaceous glands",
)
_NCT_CRC = ("ADI", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
_BINARY = ("benign", "malignant")
_NO_YES = ("no", "yes")


SETS: tuple[UniMedSet, ...] = (
    UniMedSet(
        "chexpert-5x200",
        "chexpert",
        OneHotCsv("chexpert-5x200.csv"),
        "xray",
        "X-ray",
        "top1",
        "CHEXPERT_CLASS_PROMPTS_webdataset",
        _CHEXPERT,
        ("atelectasis", "cardiomegaly", "consolidation", "pulmonary edema", "pleural effusion"),
        _identity(_CHEXPERT),
    ),
    UniMedSet(
        "rsna_pneumonia",
        "rsna_custom_test_set",
        ColumnsCsv("RSNA_pneumonia_balanced_testfile.csv", image=1, label=2),
        "xray",
        "X-ray",
        "top1",
        "RSNA_CLASS_PROMPTS_webdataset",
        ("Normal", "Pneumonia"),
        ("clear lungs without pneumonia", "pneumonia"),
        max_prompts=1,  # its evaluation keeps the first prompt of each class
    ),
    *(
        UniMedSet(
            name,
            folder,
            _ORGANS_TEST,
            "ct",
            "CT",
            "top1",
            "ct_scan_labels",
            _ORGANS,
            _ORGANS_READABLE,
        )
        for name, folder in (
            ("CT_axial", "organs_axial"),
            ("CT_coronal", "organs_coronal"),
            ("CT_sagittal", "organs_sagittal"),
        )
    ),
    UniMedSet(
        "dr_regular",
        "dr_regular",
        _ORGANS_TEST,
        "fundus",
        "Retinal fundus",
        "top1",
        "diabetic_retinopathy_prompts",
        ("no_dr", "mild_dr", "moderate_dr", "severe_dr", "full_stage4_dr"),
        (
            "no diabetic retinopathy",
            "mild diabetic retinopathy",
            "moderate diabetic retinopathy",
            "severe diabetic retinopathy",
            "proliferative diabetic retinopathy",
        ),
    ),
    UniMedSet(
        "LC25000_lung",
        "LC25000_test",
        ClassFolders(),
        "pathology",
        "Histopathology",
        "top1",
        "LC25000_lung",
        ("Lung adenocarcinoma", "Benign lung", "Lung squamous cell carcinoma"),
        ("lung adenocarcinoma", "benign lung tissue", "squamous cell carcinoma of the lung"),
        {"lung_aca": 0, "lung_n": 1, "lung_scc": 2},
    ),
    UniMedSet(
        "LC25000_colon",
        "LC25000_test",
        ClassFolders(),
        "pathology",
        "Histopathology",
        "top1",
        "LC25000_colon",
        ("Colon adenocarcinoma", "Benign colonic tissue"),
        ("colon adenocarcinoma", "benign colonic mucosa"),
        {"colon_aca": 0, "colon_n": 1},
    ),
    UniMedSet(
        "PCAM",
        "PCam_Test_preprocessed",
        LabelInName(),
        "pathology",
        "Histopathology",
        "top1",
        "PCAM",
        ("Lymph node", "Lymph node containing metastatic tumor tissue"),
        ("normal lymph node tissue", "metastatic tumour cells in a lymph node"),
    ),
    UniMedSet(
        "NCK_CRC",
        "CRC-VAL-HE-7K",
        ClassFolders(),
        "pathology",
        "Histopathology",
        "top1",
        "NCK_CRC_prompts",
        _NCT_CRC,
        (
            "adipose tissue",
            "necrotic debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colonic mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        _identity(_NCT_CRC),
    ),
    UniMedSet(
        "BACH",
        "BACH",
        ColumnsCsv("microscopy_ground_truth.csv", image=0, label=1, image_under_label=True),
        "pathology",
        "Histopathology",
        "top1",
        "BACH_prompts",
        (
            "Breast non-malignant benign tissue",
            "Breast malignant in-situ carcinoma",
            "Breast malignant invasive carcinoma",
            "Breast normal breast tissue",
        ),
        (
            "a benign breast lesion",
            "breast carcinoma in situ",
            "invasive breast carcinoma",
            "normal breast tissue",
        ),
        {"Benign": 0, "InSitu": 1, "Invasive": 2, "Normal": 3},
    ),
    UniMedSet(
        "Osteo",
        "Osteosarcoma",
        ColumnsCsv("annotations_final.csv", image=0, label=1),
        "pathology",
        "Histopathology",
        "top1",
        "Osteo_prompts",
        ("Normal non-tumor", "Necrotic", "Tumor"),
        ("non-tumour bone tissue", "necrotic osteosarcoma", "viable osteosarcoma"),
        {"Non-Tumor": 0, "Non-Viable-Tumor": 1, "Viable": 2},
    ),
    UniMedSet(
        "skin_cancer",
        "skin_tumor",
        ColumnsCsv("data/tiles-v2.csv", image=1, label=2, keep=("set", "Test")),
        "pathology",
        "Histopathology",
        "top1",
        "skin_cancer_prompts",
        (*_SKIN_TISSUES, *_SKIN_TUMOURS),
        (*_SKIN_TISSUES_READABLE, *_SKIN_TUMOURS_READABLE),
        _identity((*_SKIN_TISSUES, *_SKIN_TUMOURS)),
    ),
    UniMedSet(
        "skin_tumor",
        "skin_tumor",
        ColumnsCsv("data/SkinTumorSubset.csv", image=1, label=2, keep=("set", "Test")),
        "pathology",
        "Histopathology",
        "top1",
        "skin_tumor_prompts",
        _SKIN_TUMOURS,
        _SKIN_TUMOURS_READABLE,
        _identity(_SKIN_TUMOURS),
    ),
    UniMedSet(
        "refuge_retina",
        "REFUGE-Training400",
        FlairCsv("25_REFUGE.csv"),
        "fundus",
        "Retinal fundus",
        "auroc",
        "refuge_prompts",
        ("no glaucoma", "glaucoma"),
        ("a healthy optic disc", "glaucomatous optic disc damage"),
        _identity(("no glaucoma", "glaucoma")),
    ),
    UniMedSet(
        "five_retina",
        "fives_retina",
        FlairCsv("13_FIVES.csv"),
        "fundus",
        "Retinal fundus",
        "top1",
        "five_prompts",
        ("A", "D", "G", "N"),
        ("age-related macular degeneration", "diabetic retinopathy", "glaucoma", "a normal retina"),
        {"age related macular degeneration": 0, "diabetic retinopathy": 1, "glaucoma": 2, "normal": 3},
    ),
    UniMedSet(
        "odir_retina",
        "08_ODIR-5K",
        FlairCsv("08_ODIR200x3.csv"),
        "fundus",
        "Retinal fundus",
        "top1",
        "odir_retina_prompts",
        ("normal", "pathologic myopia", "cataract"),
        ("a normal retina", "pathologic myopia", "cataract"),
        _identity(("normal", "pathologic myopia", "cataract")),
    ),
    UniMedSet(
        "acl_mri",
        "acl_mri",
        ColumnsCsv("test_fold1.csv", image=0, label=1),
        "mri",
        "MRI",
        "auroc",
        "acl_mri_prompts",
        _NO_YES,
        ("an intact anterior cruciate ligament", "a torn anterior cruciate ligament"),
        _identity(_NO_YES),
    ),
    UniMedSet(
        "meniscal_mri",
        "meniscal_mri",
        ColumnsCsv("meniscus_test_fold1.csv", image=0, label=1),
        "mri",
        "MRI",
        "auroc",
        "meniscus_mri_prompts",
        _NO_YES,
        ("an intact meniscus", "a meniscal tear"),
        {"n": 0, "p": 1},
    ),
    UniMedSet(
        "breast_us",
        "breast_us",
        ColumnsCsv("breast_test_fold1.csv", image=0, label=1),
        "ultrasound",
        "US",
        "auroc",
        "breast_us_prompts",
        _BINARY,
        ("a benign breast lesion", "a malignant breast tumour"),
        _identity(_BINARY),
    ),
    UniMedSet(
        "thyroid_us",
        "thyroid_us",
        ColumnsCsv("thyroid_test_fold1.csv", image=0, label=1),
        "ultrasound",
        "US",
        "auroc",
        "thyroid_us_prompts",
        _BINARY,
        ("a benign thyroid nodule", "a malignant thyroid nodule"),
        _identity(_BINARY),
    ),
)
BY_NAME = {spec.name: spec for spec in SETS}


def select(names: list[str] | None) -> list[UniMedSet]:
    """The sets asked for, in the table's order (all when `names` is empty); unknown names are refused."""
    if unknown := sorted(set(names or ()) - set(BY_NAME)):
        raise ValueError(f"unknown set(s) {', '.join(unknown)}; UniMed's sets are: {', '.join(BY_NAME)}")
    return [spec for spec in SETS if not names or spec.name in names]


def protocol_info(spec: UniMedSet) -> dict:
    """The info.json fields an evaluator reads to score the set as UniMed does."""
    unimed = {"metric": spec.metric, "column": spec.column}
    if spec.max_prompts is not None:
        unimed["max_prompts"] = spec.max_prompts
    return {
        "prompt_dict": spec.prompt_dict,
        "protocol": {"unimed": unimed},
        "readable_names": dict(zip(spec.classes, spec.readable, strict=True)),
    }
