"""The `txt` member in UniMed's form: UniMed-CLIP's trainer, reading it its own way, gets exactly
our captions (or the report it wants) and never an empty piece."""

import pytest

from unimed_data.manifest import find_manifest, load_manifest
from unimed_data.unimed_txt import txt_member

# The recipe's parts whose glued txt UniMed-CLIP's trainer splits, and their tags: the manifests'
# `unimed_tag`, read here as the shard stage gets them.
TAGGED = {
    "unimed-radimagenet": "_radimagenet_",
    "unimed-chexpert": "_chexpert_",
    "unimed-openi": "_openi_",
    "unimed-chestxray8": "_chestxray8_",
    "unimed-retina-flair": "_all_retina_merged_",
    "unimed-mimic-cxr": "_mimiccxr_",
}
TAGS = {name: load_manifest(find_manifest(name)).unimed_tag for name in TAGGED}

# The tags UniMed-CLIP's `preprocess_txt_rad` tests for, in the order it tests them.
TRAINER_ORDER = (
    "_radimagenet_",
    "_chexpert_",
    "_openi_",
    "_chestxray8_",
    "_all_retina_merged_",
    "_dr_",
    "_medicat_",
    "_mimiccxr_",
)


def trainer_candidates(text: str) -> list[str]:
    """The texts UniMed-CLIP's trainer draws one from for `text`, restated from its rules: the first
    tag present splits the text; Open-i takes the first piece; MIMIC-CXR the last piece, unless that
    is the no-report marker, then one of the first ten; the other tags one of the first ten (the
    diabetic-retinopathy tag one of fifteen); text without a tag is used whole."""
    tag = next((t for t in TRAINER_ORDER if t in text), None)
    if tag is None:
        return [text]
    pieces = text.split(tag)
    if tag == "_openi_":
        return pieces[:1]
    if tag == "_mimiccxr_":
        return pieces[:10] if pieces[-1] == "noreportpresent" else pieces[-1:]
    if tag == "_medicat_":
        return pieces[:1] if pieces[1] == "nothingpresent" else pieces
    return pieces[:15] if tag == "_dr_" else pieces[:10]


def unimed(dataset: str, captions: list[str], report: str | None = None) -> str:
    return txt_member({"dataset": dataset, "captions": captions, "report": report}, "unimed", TAGS)


def test_the_part_manifests_carry_unimeds_tags():
    assert TAGS == TAGGED
    assert load_manifest(find_manifest("unimed-pmc-oa")).unimed_tag is None


CAPTIONS = ["Chest X-ray showing cardiomegaly.", "An enlarged heart on a radiograph", "cardiomegaly."]


@pytest.mark.parametrize(
    "dataset", ["unimed-radimagenet", "unimed-chexpert", "unimed-chestxray8", "unimed-retina-flair"]
)
def test_a_part_drawing_at_random_gets_exactly_our_captions_dots_kept_and_no_empty_piece(dataset):
    text = unimed(dataset, CAPTIONS)
    assert trainer_candidates(text) == CAPTIONS
    assert not text.endswith(TAGS[dataset])
    assert text == TAGS[dataset].join(CAPTIONS)


def test_ten_captions_are_all_in_the_trainers_draw():
    captions = [f"caption number {i}." for i in range(10)]
    assert trainer_candidates(unimed("unimed-chexpert", captions)) == captions


@pytest.mark.parametrize("dataset", sorted(TAGS))
def test_a_single_caption_carries_no_tag_and_is_read_whole(dataset):
    text = unimed(dataset, ["Only one caption."], report="Only one caption.")
    assert text == "Only one caption."
    assert trainer_candidates(text) == ["Only one caption."]


def test_openi_puts_the_original_report_first_whether_or_not_it_is_also_a_caption():
    report = "The heart is normal in size. No acute disease."
    kept = unimed("unimed-openi", [report, *CAPTIONS], report=report)
    assert kept == "_openi_".join([report, *CAPTIONS])
    assert trainer_candidates(kept) == [report]
    assert trainer_candidates(unimed("unimed-openi", CAPTIONS, report=report)) == [report]
    assert trainer_candidates(unimed("unimed-openi", CAPTIONS, report=None)) == [CAPTIONS[0]]


def test_mimic_puts_the_report_last_once_and_the_other_captions_before_it():
    report = "Mild cardiomegaly. No pleural effusion."
    for captions in (CAPTIONS, [report, *CAPTIONS], [*CAPTIONS, report]):
        text = unimed("unimed-mimic-cxr", captions, report=f" {report}\n")
        assert text.split("_mimiccxr_") == [*CAPTIONS, report]
        assert trainer_candidates(text) == [report]


def test_mimic_without_a_report_gives_the_trainer_a_caption_never_a_marker():
    text = unimed("unimed-mimic-cxr", CAPTIONS, report="   ")
    assert text.split("_mimiccxr_") == CAPTIONS and "noreportpresent" not in text
    # UniMed's own marker would make the trainer draw among the captions and the marker itself.
    assert trainer_candidates(text) == CAPTIONS[-1:]


def test_a_mimic_report_alone_is_read_whole():
    assert trainer_candidates(unimed("unimed-mimic-cxr", ["Normal chest."], report="Normal chest.")) == [
        "Normal chest."
    ]


@pytest.mark.parametrize("dataset", ["unimed-pmc-oa", "unimed-quilt", "rocov2", "my-own-set"])
def test_other_parts_and_unknown_datasets_get_their_primary_caption_alone(dataset):
    text = unimed(dataset, CAPTIONS, report="a report")
    assert text == CAPTIONS[0]
    assert trainer_candidates(text) == [CAPTIONS[0]]


def test_plain_is_the_primary_caption_for_every_dataset():
    for dataset in [*TAGS, "other"]:
        sample = {"dataset": dataset, "captions": CAPTIONS, "report": "a report"}
        assert txt_member(sample, "plain", TAGS) == CAPTIONS[0]


@pytest.mark.parametrize(
    ("dataset", "captions"),
    [
        ("unimed-chexpert", ["see file x_radimagenet_y.png", "a second caption"]),
        ("unimed-chexpert", ["ends like a tag_chexpert", "a second caption"]),
        ("unimed-mimic-cxr", ["grade_dr_2 lesion", "another"]),
        ("unimed-pmc-oa", ["figure_medicat_nothingpresent"]),
    ],
)
def test_a_caption_that_would_cut_the_text_elsewhere_has_its_underscores_read_as_spaces(dataset, captions):
    text = unimed(dataset, captions, report=None)
    expected = [c.replace("_", " ") for c in captions]
    tag = TAGS.get(dataset)
    if dataset == "unimed-mimic-cxr":
        assert text.split(tag) == expected
    elif tag:
        assert trainer_candidates(text) == expected
    else:
        assert trainer_candidates(text) == expected[:1]


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown txt format 'fancy'"):
        txt_member({"dataset": "x", "captions": ["a"], "report": None}, "fancy", TAGS)
