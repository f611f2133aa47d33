"""UniMed's Retina-Annotations folder: the FLAIR part (many CSVs), DeepEyeNet and MM-Retinal, with
UniMed's banned categories filtered out by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import layout_manifest, write_list_csv
from unimed_data.layouts import Filtered, Item, ItemError, LayoutError, annotation_files, iter_items
from unimed_data.layouts.unimed_retina import BANNED_BY_UNIMED, SKIPPED_BY_UNIMED, skipped_files
from unimed_data.manifest import Manifest

FLAIR_HEADER = ["", "filename", "captions", "sentence_level_captions"]  # pandas' unnamed index first


@pytest.fixture
def root(tmp_path) -> Path:
    """A Retina-Datasets root whose annotation folder holds every kind of UniMed file."""
    root = tmp_path / "Retina-Datasets"
    notes = root / "Retina-Annotations"
    write_list_csv(
        notes / "08_ODIR.csv",
        FLAIR_HEADER,
        [
            [
                0,
                "08_ODIR-5K/preprocessed_images/0_left.jpg",
                ["Fundus with glaucoma.", " "],
                "Optic disc cupping.",
            ],
            [1, "08_ODIR-5K/preprocessed_images/0_right.jpg", ["Fundus with a cataract."], ""],
            [2, "08_ODIR-5K/preprocessed_images/1_left.jpg", ["Pathologic myopic fundus."], ""],
        ],
    )
    write_list_csv(
        notes / "03_IDRID.csv",
        FLAIR_HEADER,
        [
            [0, "03_IDRiD/images/IDRiD_001.jpg", ["Moderate diabetic retinopathy."], "Hard exudates."],
            [1, "03_IDRiD/images/IDRiD_002.jpg", [], " "],
            [2, "03_IDRiD/images/IDRiD_003.jpg", "not a list", ""],
        ],
    )
    write_list_csv(notes / "01_EYEPACS_revised.csv", FLAIR_HEADER, [[0, "01_EYEPACS/x.jpg", ["x"], ""]])
    write_list_csv(
        notes / "06_DEN.csv",
        ["", "image", "atributes", "categories"],
        [
            [0, "06_DEN/a.jpg", [], ["central serous chorioretinopathy", "35-year-old man"]],
            [1, "06_DEN/b.jpg", [], ["65 years old", "left//right"]],
            [2, "06_DEN/c.jpg", [], ["retinitis pigmentosa"]],
            [3, "06_DEN/d.jpg", [], "['unterminated"],
        ],
    )
    write_list_csv(
        notes / "39_MM_Retinal_dataset.csv",
        ["image", "caption"],
        [["MM-Retinal/CFP/1.png", "Drusen at the macula."], ["MM-Retinal/CFP/2.png", "  "]],
    )
    (notes / "README.txt").write_text("not a CSV")
    return root


def manifest(**layout) -> Manifest:
    return layout_manifest("retina", "fundus", type="unimed_retina", **layout)


def kinds(entries) -> tuple[list[Item], list[str], list[Filtered]]:
    return (
        [e for e in entries if isinstance(e, Item)],
        [e.reason for e in entries if isinstance(e, ItemError)],
        [e for e in entries if isinstance(e, Filtered)],
    )


def test_flair_part_reads_every_other_csv_in_name_order(root):
    entries = list(iter_items(manifest(part="flair"), root))
    items, errors, filtered = kinds(entries)
    assert [item.source_path for item in items] == [
        "03_IDRiD/images/IDRiD_001.jpg",
        "08_ODIR-5K/preprocessed_images/0_left.jpg",
    ]
    assert items[0].captions == ["Moderate diabetic retinopathy.", "Hard exudates."]
    assert items[1].captions == ["Fundus with glaucoma.", "Optic disc cupping."]
    assert items[1].origin == "Retina-Annotations/08_ODIR.csv:2" and items[1].caption_source == "unimed"
    assert errors == [
        "Retina-Annotations/03_IDRID.csv:3: no caption",
        "Retina-Annotations/03_IDRID.csv:4: column 'captions': not a Python list literal: 'not a list'",
    ]
    assert [(f.item_id, f.reason) for f in filtered] == [
        (
            "08_ODIR-5K/preprocessed_images/0_right.jpg",
            "banned category 'cataract' (keep_banned: true keeps it)",
        ),
        (
            "08_ODIR-5K/preprocessed_images/1_left.jpg",
            "banned category 'myopic' (keep_banned: true keeps it)",
        ),
    ]
    assert len(entries) == 6  # the two files' rows: items + errors + filtered


def test_skipped_and_other_part_files_are_not_read_but_are_named(root):
    model = manifest(part="flair")
    names = [path.name for path in annotation_files(model, root)]
    assert names == ["03_IDRID.csv", "08_ODIR.csv"]
    assert skipped_files(model.layout, root) == ["Retina-Annotations/01_EYEPACS_revised.csv"]
    assert skipped_files(manifest(part="den").layout, root) == []
    with_eyepacs = manifest(part="flair", skip=[])
    assert annotation_files(with_eyepacs, root)[0].name == "01_EYEPACS_revised.csv"


def test_keep_banned_keeps_those_rows(root):
    items, _, filtered = kinds(list(iter_items(manifest(part="flair", keep_banned=True), root)))
    assert not filtered and len(items) == 4
    assert items[2].captions == ["Fundus with a cataract."]


def test_den_part_turns_usable_categories_into_captions(root):
    entries = list(iter_items(manifest(part="den"), root))
    items, errors, filtered = kinds(entries)
    [item] = items
    assert item.source_path == "06_DEN/a.jpg" and item.labels == ["central serous chorioretinopathy"]
    assert len(item.captions) == 1 and "central serous chorioretinopathy" in item.captions[0]
    assert item.caption_source == "unimed"
    assert [(f.item_id, f.reason) for f in filtered] == [
        ("06_DEN/b.jpg", "no usable category (each mentions 'year' or holds '//')"),
        ("06_DEN/c.jpg", "banned category 'retinitis pigmentosa' (keep_banned: true keeps it)"),
    ]
    assert errors == [
        "Retina-Annotations/06_DEN.csv:5: column 'categories': not a Python list literal: \"['unterminated\""
    ]
    assert annotation_files(manifest(part="den"), root) == [root / "Retina-Annotations" / "06_DEN.csv"]


def test_mm_retinal_part_uses_the_caption_column(root):
    items, errors, filtered = kinds(list(iter_items(manifest(part="mm_retinal", image_root="MM"), root)))
    [item] = items
    assert item.source_path == "MM/MM-Retinal/CFP/1.png" and item.captions == ["Drusen at the macula."]
    assert errors == ["Retina-Annotations/39_MM_Retinal_dataset.csv:3: no caption"] and not filtered


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("High MYOPIA with tessellation.", "myopia"),
        ("A myope eye.", "myope"),
        ("Full-thickness macular  holes.", "macular hole"),
        ("Signs of retinitis.", "retinitis"),
        ("Normal fundus; no retinopathy.", None),
        ("Premyopic changes.", None),  # a term must start a word
    ],
)
def test_banned_terms_match_at_the_start_of_a_word(tmp_path, text, term):
    write_list_csv(tmp_path / "notes" / "x.csv", FLAIR_HEADER[1:], [["a.jpg", [text], ""]])
    [entry] = iter_items(manifest(part="flair", annotations="notes"), tmp_path)
    if term is None:
        assert isinstance(entry, Item)
    else:
        assert isinstance(entry, Filtered) and f"banned category {term!r}" in entry.reason


def test_defaults_follow_unimeds_scripts():
    layout = manifest(part="flair").layout
    assert layout.skip == ["01_EYEPACS_revised.csv", "07_LAG_revised.csv", "28_OIA-DDR_revised.csv"]
    assert layout.skip == SKIPPED_BY_UNIMED and layout.banned == BANNED_BY_UNIMED
    assert {"myopia", "cataract", "macular hole", "retinitis pigmentosa"} <= set(layout.banned)
    assert layout.annotations == "Retina-Annotations" and layout.image_root == "" and not layout.keep_banned


def test_file_level_problems(tmp_path, root):
    with pytest.raises(LayoutError, match="annotation folder not found"):
        list(iter_items(manifest(part="flair"), tmp_path))
    assert annotation_files(manifest(part="flair"), tmp_path) == [tmp_path / "Retina-Annotations"]
    (root / "Retina-Annotations" / "06_DEN.csv").unlink()
    with pytest.raises(LayoutError, match=r"06_DEN\.csv: annotation file not found"):
        list(iter_items(manifest(part="den"), root))
    write_list_csv(
        root / "Retina-Annotations" / "10_PARAGUAY.csv", ["image", "categories"], [["a.jpg", ["x"]]]
    )
    with pytest.raises(LayoutError, match=r"10_PARAGUAY\.csv: header lacks column"):
        list(iter_items(manifest(part="flair"), root))
    with pytest.raises(ValidationError):
        manifest(part="all")
    with pytest.raises(ValidationError):
        manifest(part="flair", banned=["cataract", " "])


def test_annotations_may_sit_at_the_root(tmp_path):
    write_list_csv(tmp_path / "39_MM_Retinal_dataset.csv", ["image", "caption"], [["a.png", "Drusen."]])
    [item] = iter_items(manifest(part="mm_retinal", annotations="."), tmp_path)
    assert item.origin == "39_MM_Retinal_dataset.csv:2" and item.source_path == "a.png"
