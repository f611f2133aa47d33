import importlib.util
import io

import pytest
from rich.console import Console

from unimed_data.layouts import ItemError, iter_items
from unimed_data.manifest import bundled_manifest_paths, find_manifest, load_manifest
from unimed_data.sources import render_sources, source_rows

NEW_LAYOUTS = {"rocov2", "pmc_oa", "quilt", "llava_med", "mimic_cxr", "openi"}
UNIMED_MODALITIES = {"xray", "ct", "mri", "ultrasound", "pathology", "fundus"}
CONFIRMED_EVAL_SETS = 21  # UniMed-CLIP's eval catalog minus the skipped imagenet, radimagenet, SICAPv2
# Linear-probe sets (MedSLIP's CBIS-DDSM tasks): the source's train/test CSVs, val carved from train.
PROBE_EVAL_SETS = {"cbis-ddsm", "cbis-calc", "cbis-mass"}
# WhyXrayCLIP's sets keep their source's own split (folders, lists, CSVs) or a hash where it has none.
SOURCE_SPLIT_EVAL_SETS = {
    *("pediatric-pneumonia", "covid-qu-ex", "nih-chestxray14-eval", "openi-nlmcxr-eval", "vindr-cxr"),
}

# UniMed's retinal table (docs/UniMed-DATA.md): FLAIR number -> the bundled manifest reading that set's CSV.
UNIMED_RETINA_TABLE = {
    "03": "idrid", "04": "rfmid", "06": "deepeyenet", "08": "odir-5k", "09": "papila", "10": "paraguay-dr",
    "11": "stare", "12": "aria", "14": "agar300", "15": "aptos-2019", "16": "fund-oct", "17": "diaretdb1",
    "18": "drions-db", "19": "drishti-gs1", "20": "e-ophtha", "21": "g1020", "23": "hrf", "24": "origa",
    "26": "roc", "27": "brset", "29": "airogs", "30": "sustech-sysu", "31": "jichi", "32": "chaksu",
    "33": "dr1-2", "34": "cataract", "35": "scardat",
}  # fmt: skip
OTHER_FLAIR_SETS = {
    "01": "eyepacs", "02": "messidor-2", "05": "jsiec", "07": "lag", "13": "fives", "25": "refuge", "28": "oia-ddr",
}  # fmt: skip
FLAIR_PRETRAINING = (set(UNIMED_RETINA_TABLE.values()) | set(OTHER_FLAIR_SETS.values())) - {
    "odir-5k", "fives", "refuge",  # UniMed-CLIP's zero-shot CSVs: evaluation-only
}  # fmt: skip


def _layout_type(path) -> str:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))["layout"]["type"]


def _registered(layout_type: str) -> bool:
    """The layout's module exists and the manifest model accepts its type (it is registered)."""
    if importlib.util.find_spec(f"unimed_data.layouts.{layout_type}") is None:
        return False
    from unimed_data.layouts import LAYOUT_TYPES

    return layout_type in LAYOUT_TYPES


def _loadable():
    """Manifests whose layout type is implemented; the others are skipped until it is registered."""
    return [p for p in bundled_manifest_paths() if _registered(_layout_type(p))]


@pytest.mark.parametrize("path", bundled_manifest_paths(), ids=lambda p: p.name)
def test_every_bundled_manifest_validates(path):
    layout_type = _layout_type(path)
    if layout_type in NEW_LAYOUTS and not _registered(layout_type):
        pytest.skip(f"layout {layout_type!r} not registered yet")
    manifest = load_manifest(path)
    assert path.name == f"{manifest.name}.yaml"
    assert not any("sha256" in entry.model_dump(exclude_none=True) for entry in manifest.download)


def test_names_are_unique():
    import yaml

    names = [yaml.safe_load(p.read_text(encoding="utf-8"))["name"] for p in bundled_manifest_paths()]
    assert len(names) == len(set(names))


def test_every_unimed_modality_has_a_pretraining_source():
    import yaml

    data = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in bundled_manifest_paths()]
    pretrain = {d["modality"] for d in data if d.get("role", "pretrain") == "pretrain"}
    assert pretrain >= UNIMED_MODALITIES


def test_eval_sets_have_a_test_split_and_cover_six_modalities():
    """UniMed-CLIP's zero-shot sets are all test; probe sets keep their source's split (MedSLIP's CBIS
    sets by column with a patient-level val, WhyXrayCLIP's by column or a hash where the source has
    none), and every eval set has a test split."""
    import yaml

    evals = [
        d
        for d in (yaml.safe_load(p.read_text(encoding="utf-8")) for p in bundled_manifest_paths())
        if d.get("role") == "eval"
    ]
    fixed = [d for d in evals if d["split"].get("by") == "fixed"]
    assert len(fixed) >= CONFIRMED_EVAL_SETS
    for data in fixed:
        assert data["split"] == {"by": "fixed", "split": "test"}, data["name"]
    for data in evals:
        if data["name"] in PROBE_EVAL_SETS:
            assert data["split"] == {"by": "column", "val_fraction": 0.1}, data["name"]
        elif data["name"] not in SOURCE_SPLIT_EVAL_SETS:
            assert data["split"] == {"by": "fixed", "split": "test"}, data["name"]
        assert data["split"]["by"] in ("fixed", "column", "hash"), data["name"]
        assert data["split"].get("fractions", {"test": 1}).get("test", 0) > 0, data["name"]
    assert {d["modality"] for d in evals} == UNIMED_MODALITIES


@pytest.mark.parametrize(
    "name", ["pediatric-pneumonia", "covid-qu-ex", "nih-chestxray14-eval", "openi-nlmcxr-eval", "vindr-cxr"]
)
def test_whyxrayclip_sets_are_xray_eval_manifests_with_download_instructions(name):
    manifest = _manifest(name)
    assert manifest.modality == "xray" and manifest.role == "eval" and manifest.download
    assert manifest.name in {row["name"] for row in source_rows(_loadable())}


def test_source_rows_for_a_known_manifest():
    rows = {row["name"]: row for row in source_rows(_loadable())}
    assert rows["nih-chestxray14"] == {
        "name": "nih-chestxray14",
        "modality": "xray",
        "role": "pretrain",
        "access": "open",
        "license": rows["nih-chestxray14"]["license"],
        "homepage": rows["nih-chestxray14"]["homepage"],
        "expected_images": 112120,
        "fetchers": ["kaggle", "manual"],
    }
    assert rows["pcam"]["role"] == "eval"


def test_render_sources_sorts_by_role_then_modality_then_name():
    rows = source_rows(_loadable())
    out = io.StringIO()
    render_sources(rows, Console(file=out, width=400))
    text = out.getvalue()
    # eval before pretrain; within a role fundus before xray; names in order
    assert text.index("odir-5k") < text.index("chexpert-5x200") < text.index("eyepacs")
    assert text.index("eyepacs") < text.index("chexpert-v1.0-small")


def _rendered(rows, width: int, **options) -> str:
    out = io.StringIO()
    render_sources(rows, Console(file=out, width=width), **options)
    return out.getvalue()


def test_the_default_table_is_one_line_per_source_at_80_columns():
    rows = source_rows(_loadable())
    lines = _rendered(rows, 80).splitlines()
    assert len(lines) <= len(rows) + 6  # title, borders and header
    assert all(len(line) <= 80 for line in lines) and "…" not in "".join(lines)
    assert all(any(row["name"] in line for line in lines) for row in rows)


def test_long_gives_each_source_its_full_licence_homepage_and_fetchers():
    rows = source_rows(_loadable())
    text = _rendered(rows, 80, long=True)
    assert "…" not in text
    for row in rows:
        assert f"licence: {row['license']}" in text and f"homepage: {row['homepage'] or '-'}" in text


def test_markup_like_text_in_a_licence_is_printed_as_is():
    row = {**source_rows(_loadable())[0], "license": "see [bold]terms[/bold]"}
    assert "see [bold]terms[/bold]" in _rendered([row], 400, long=True)


def test_a_narrow_terminal_gets_the_whole_table_for_it_to_wrap_not_a_cut_one():
    console = Console(width=40, force_terminal=True, record=True, file=io.StringIO())
    rows = source_rows()
    render_sources(rows, console)
    text = console.export_text()
    assert "…" not in text
    for row in rows:
        assert row["name"] in text and row["modality"] in text


def _manifest(name: str):
    return load_manifest(find_manifest(name))


@pytest.mark.parametrize("number, name", sorted({**UNIMED_RETINA_TABLE, **OTHER_FLAIR_SETS}.items()))
def test_each_flair_set_has_a_fundus_manifest_reading_the_csv_of_its_number(number, name):
    manifest = _manifest(name)
    assert manifest.modality == "fundus"
    assert manifest.layout.type == "flair" and manifest.layout.csv.startswith(f"{number}_")


def test_no_two_manifests_read_the_same_flair_set():
    """One manifest per FLAIR number: FLAIR's ODIR pretraining CSV shares images with the
    evaluation CSV 08_ODIR200x3.csv, so a second ODIR manifest would leak test images."""
    numbers = [
        manifest.layout.csv[:2]
        for manifest in map(load_manifest, _loadable())
        if manifest.layout.type == "flair"
    ]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("name", sorted(FLAIR_PRETRAINING | {"mm-retinal"}))
def test_retinal_pretraining_manifests_state_licence_homepage_and_access(name):
    import yaml

    data = yaml.safe_load(find_manifest(name).read_text(encoding="utf-8"))
    manifest = _manifest(name)
    assert manifest.name == name and manifest.modality == "fundus" and manifest.role == "pretrain"
    assert data["license"].strip() and data["homepage"].startswith("http") and data["access"]
    assert data.get("citation")


def _write_flair_csv(folder, rows: list[tuple[str, str]], name: str) -> None:
    lines = [",image,atributes,categories"]
    lines += [f'{index},{image},[],"{categories}"' for index, (image, categories) in enumerate(rows)]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    "name, first, second, other",
    [
        ("papila", "09_PAPILA/FundusImages/RET002OD.jpg", "09_PAPILA/FundusImages/RET002OS.jpg",
         "09_PAPILA/FundusImages/RET004OD.jpg"),
        ("jichi", "31_JICHI/dmr/931_3_R.jpg", "31_JICHI/dmr/931_1_L.jpg", "31_JICHI/dmr/93_1_L.jpg"),
        ("fund-oct", "16_FUND-OCT/Dataset/OD/Glaucoma/P_11/Right Eye/1_Color_R_001.jpg",
         "16_FUND-OCT/Dataset/OD/Glaucoma/P_11/Left Eye/2_Color_L_001.jpg",
         "16_FUND-OCT/Dataset/OD/Healthy/P_11/Left Eye/3_Color_L_001.jpg"),
    ],
)  # fmt: skip
def test_a_patients_photographs_share_a_patient_id(tmp_path, name, first, second, other):
    manifest = _manifest(name)
    rows = [(first, "['normal']"), (second, "['normal']"), (other, "['normal']")]
    _write_flair_csv(tmp_path, rows, manifest.layout.csv)
    patients = [item.patient for item in iter_items(manifest, tmp_path)]
    assert patients[0] is not None and patients[0] == patients[1] != patients[2]


def test_flair_labels_with_typos_get_readable_names():
    assert _manifest("jichi").readable("tractionalretinaldetachment") == "tractional retinal detachment"
    assert _manifest("stare").readable("htr") == "hypertensive retinopathy"
    assert _manifest("brset").readable("severe diabetic retinopathy.") == "severe diabetic retinopathy"
    assert _manifest("papila").readable("glaucoma") == "glaucoma"


def test_an_ungradable_flair_row_without_categories_is_an_error_row(tmp_path):
    manifest = _manifest("oia-ddr")
    rows = [
        ("28_OIA-DDR/DR_grading/train/1.jpg", "['no diabetic retinopathy']"),
        ("28_OIA-DDR/2.jpg", "['']"),
    ]
    _write_flair_csv(tmp_path, rows, manifest.layout.csv)
    entries = list(iter_items(manifest, tmp_path))
    assert [type(entry) is ItemError for entry in entries] == [False, True]


def test_mm_retinal_reads_the_published_image_caption_table(tmp_path):
    manifest = _manifest("mm-retinal")
    (tmp_path / manifest.layout.table).write_text(
        ",image,caption\n"
        "0,39_MM_Retinal_dataset/CFP/figure01-01A.jpg,Colour fundus image of a normal right eye\n"
        "1,39_MM_Retinal_dataset/CFP/figure01-02B.png,\n",
        encoding="utf-8",
    )
    first, second = iter_items(manifest, tmp_path)
    assert first.source_path == "39_MM_Retinal_dataset/CFP/figure01-01A.jpg"
    assert first.captions == ["Colour fundus image of a normal right eye"]
    assert isinstance(second, ItemError) and "no caption" in second.reason
