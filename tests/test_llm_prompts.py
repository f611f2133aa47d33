"""LLM caption prompts: one system and one user message per unit, from the bundled templates."""

import re
import shutil

import pytest

from unimed_data.captions import CaptionUnit
from unimed_data.captions.labelsets import split_labels
from unimed_data.captions.prompts import NothingToCaption, PromptBuilder
from unimed_data.manifest import find_manifest, load_manifest

CHEXPERT = load_manifest(find_manifest("chexpert-v1.0-small"))
SLUG = CHEXPERT.slug


def chexpert_unit(*raw: str, uncertain: tuple[str, ...] = ()) -> CaptionUnit:
    """A CheXpert unit as ingest builds it: readable labels, uncertain ones also in labels."""
    readable = tuple(CHEXPERT.readable(r) for r in raw)
    return CaptionUnit(SLUG, "xray", readable, tuple(CHEXPERT.readable(r) for r in uncertain))


def render(unit, count=5, definitions=None, builder=None):
    messages = (builder or PromptBuilder()).messages(
        unit, count, CHEXPERT.definitions if definitions is None else definitions
    )
    assert [m["role"] for m in messages] == ["system", "user"]
    assert all(m["content"].strip() and "---USER---" not in m["content"] for m in messages)
    return messages[0]["content"], messages[1]["content"]


def line_starting(text: str, prefix: str) -> str | None:
    return next((line for line in text.splitlines() if line.startswith(prefix)), None)


@pytest.mark.parametrize(
    ("modality", "template", "words"),
    [
        ("xray", "llm/labels_xray.j2", "radiograph"),
        ("ct", "llm/labels_ct.j2", "attenuation"),
        ("mri", "llm/labels_mri.j2", "signal intensity"),
        ("ultrasound", "llm/labels_ultrasound.j2", "echogenicity"),
        ("pathology", "llm/labels_pathology.j2", "pathologist"),
        ("fundus", "llm/labels_fundus.j2", "optic disc"),
        ("endoscopy", "llm/labels_generic.j2", "endoscopy image"),
        ("other", "llm/labels_generic.j2", "medical image"),
    ],
)
def test_every_modality_renders_a_system_and_a_user_message(modality, template, words):
    unit = CaptionUnit("some-set", modality, ("Tumor",))
    builder = PromptBuilder()
    assert builder.template_name(unit) == template
    system, user = render(unit, count=7, definitions={}, builder=builder)
    assert words in system
    assert '{"captions"' in system and "JSON" in system
    assert "25 words" in system
    assert line_starting(user, "COUNT:") == "COUNT: 7"
    assert line_starting(user, "Findings (present):") == "Findings (present): tumor"
    assert "some-set" not in system + user  # the dataset name never reaches the model


def test_system_message_depends_only_on_the_modality():
    """So the API can cache the prompt prefix across a dataset's label sets."""
    a, _ = render(chexpert_unit("Cardiomegaly"))
    b, _ = render(chexpert_unit("No Finding"), count=3)
    c, _ = render(chexpert_unit("Edema", "Pneumonia", uncertain=("Pneumonia",)))
    assert a == b == c


def test_findings_are_combined_into_one_readable_phrase():
    _, user = render(chexpert_unit("Cardiomegaly", "Pleural Effusion", "Edema"))
    assert (
        line_starting(user, "Findings (present):")
        == "Findings (present): cardiomegaly, pleural effusion and pulmonary edema"
    )
    assert "Pleural Effusion" not in user and "Edema," not in user  # readable names, not raw ids


def test_uncertain_labels_are_asked_for_as_uncertain_not_as_findings():
    # CheXpert with `uncertain: positive`: an uncertain label is in labels and in uncertain_labels.
    unit = chexpert_unit("Cardiomegaly", "Atelectasis", uncertain=("Atelectasis",))
    _, user = render(unit)
    assert line_starting(user, "Findings (present):") == "Findings (present): cardiomegaly"
    uncertain = line_starting(user, "Uncertain findings:")
    assert uncertain is not None and uncertain.startswith("Uncertain findings: atelectasis.")
    assert all(w in uncertain for w in ("may be present", "possible", "cannot be excluded"))
    assert "never as a definite finding" in uncertain

    only_uncertain = chexpert_unit("Pneumonia", uncertain=("Pneumonia",))
    _, user = render(only_uncertain)
    assert line_starting(user, "Findings (present):") is None
    assert line_starting(user, "Uncertain findings:").startswith("Uncertain findings: pneumonia.")

    _, certain = render(chexpert_unit("Pneumonia"))
    assert line_starting(certain, "Uncertain findings:") is None
    assert "may be present" not in certain


def test_uncertain_only_in_uncertain_labels_still_counts_as_uncertain():
    """CheXpert with `uncertain: ignore`: the label is not a finding but stays in uncertain_labels."""
    _, user = render(CaptionUnit(SLUG, "xray", ("cardiomegaly",), ("pneumonia",)))
    assert line_starting(user, "Findings (present):") == "Findings (present): cardiomegaly"
    assert line_starting(user, "Uncertain findings:").startswith("Uncertain findings: pneumonia.")


def test_a_normal_study_is_asked_for_as_normal_without_findings():
    _, user = render(chexpert_unit("No Finding"))
    assert line_starting(user, "Findings (present):") is None
    assert "The study is normal, with no finding" in user
    assert "mention no abnormality" in user
    assert "no finding:" in user  # its own definition, as context

    # CheXpert allows No Finding together with Support Devices: findings, otherwise normal.
    _, user = render(chexpert_unit("No Finding", "Support Devices"))
    assert line_starting(user, "Findings (present):") == "Findings (present): support devices"
    assert "Apart from the findings listed, the study is normal" in user

    _, fundus = render(CaptionUnit("odir-5k", "fundus", ("normal fundus",)), definitions={})
    assert "describe a normal fundus image" in fundus


def test_definitions_only_for_the_units_labels():
    unit = chexpert_unit("Cardiomegaly", "Pleural Effusion", "Atelectasis", uncertain=("Atelectasis",))
    _, user = render(unit)
    defs = CHEXPERT.definitions
    block = user.split("Definitions (background for you, not to be copied):\n", 1)[1]
    listed = [line for line in block.splitlines() if line.startswith("- ")]
    assert listed == [
        f"- cardiomegaly: {defs['cardiomegaly']}",
        f"- pleural effusion: {defs['pleural effusion']}",
        f"- atelectasis: {defs['atelectasis']}",
    ]
    for other in ("pneumothorax", "fracture", "pulmonary edema", "no finding"):
        assert defs[other] not in user

    _, without = render(chexpert_unit("Cardiomegaly"), definitions={"unrelated": "not shown"})
    assert "Definitions" not in without and "not shown" not in without


def test_definitions_match_labels_case_insensitively():
    unit = CaptionUnit("odir-5k", "fundus", ("Glaucoma",))
    _, user = render(unit, definitions={"glaucoma": "optic neuropathy with an enlarged optic cup"})
    assert "- glaucoma: optic neuropathy with an enlarged optic cup" in user


def test_findings_match_the_template_backends_reading_of_the_label_set():
    labels = split_labels(("No Finding", "Support Devices", "Edema"), ("Edema",))
    assert labels.findings == ("Support Devices",)
    assert labels.uncertain == ("Edema",)
    assert labels.normal and not labels.empty
    assert split_labels((), ()).empty


def test_report_prompt_holds_the_report():
    report = (
        "FINDINGS: Stable mild cardiomegaly compared with 01/02/2019. Small left pleural effusion.\n"
        "No pneumothorax.\nIMPRESSION: Effusion. Recommend follow-up. Dr. Smith notified."
    )
    unit = CaptionUnit("mimic", "xray", (), report=report)
    builder = PromptBuilder()
    assert builder.template_name(unit) == "llm/report_findings.j2"
    system, user = render(unit, count=6, definitions={}, builder=builder)
    assert f"<report>\n{report}\n</report>" in user
    assert line_starting(user, "COUNT:") == "COUNT: 6"
    assert "at most 6 finding sentences" in user
    for rule in ("pertinent negative", "dates", "comparisons with prior studies", "recommendations"):
        assert rule in system
    assert '{"captions"' in system


def test_report_with_a_marker_line_stays_in_the_user_message():
    report = "Clear lungs.\n---USER---\nNormal heart size."
    system, user = (
        m["content"] for m in PromptBuilder().messages(CaptionUnit("m", "xray", (), report=report), 3, {})
    )
    assert "Clear lungs." not in system and report in user


def test_labels_win_over_a_report():
    unit = CaptionUnit("d", "xray", ("Cardiomegaly",), report="Some report.")
    assert PromptBuilder().template_name(unit) == "llm/labels_xray.j2"


def test_nothing_to_caption_from_and_bad_count_are_refused():
    with pytest.raises(NothingToCaption, match="nothing to caption from: no labels, no report"):
        PromptBuilder().messages(CaptionUnit("d", "xray", ()), 5, {})
    with pytest.raises(NothingToCaption, match="nothing to caption from"):
        PromptBuilder().messages(CaptionUnit("d", "xray", (), ("No Finding",)), 5, {})
    with pytest.raises(NothingToCaption, match="nothing to caption from"):
        PromptBuilder().messages(CaptionUnit("d", "xray", (), report="   "), 5, {})
    with pytest.raises(ValueError, match="count"):
        PromptBuilder().messages(CaptionUnit("d", "xray", ("Cardiomegaly",)), 0, {})


def test_user_folder_overrides_a_bundled_template(tmp_path):
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "labels_fundus.j2").write_text(
        "Custom system for {{ modality_name }}.\n---USER---\nCOUNT: {{ count }}\n"
        "{{ findings | map('clinical') | list | join_and }}\n"
    )
    builder = PromptBuilder(tmp_path)
    system, user = render(CaptionUnit("odir-5k", "fundus", ("Glaucoma", "AMD")), 4, {}, builder)
    assert system == "Custom system for fundus."
    assert user == "COUNT: 4\nglaucoma and AMD"
    # Other templates still come from the bundled folder; modality templates extending the
    # generic one pick up a user's generic template.
    assert "radiologist" in render(chexpert_unit("Cardiomegaly"), builder=builder)[0]
    (tmp_path / "llm" / "labels_generic.j2").write_text(
        "Generic {% block role %}x{% endblock %}.\n---USER---\nu"
    )
    ct_system, _ = render(CaptionUnit("d", "ct", ("Mass",)), 3, {}, PromptBuilder(tmp_path))
    assert ct_system == "Generic an experienced radiologist."


def test_template_without_the_marker_line_is_refused(tmp_path):
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "labels_ct.j2").write_text("All in one message, COUNT: {{ count }}\n")
    with pytest.raises(ValueError, match="no ---USER--- line"):
        PromptBuilder(tmp_path).messages(CaptionUnit("d", "ct", ("Mass",)), 3, {})


def test_missing_user_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        PromptBuilder(tmp_path / "missing")


def test_identity_changes_when_a_template_changes(tmp_path):
    bundled = PromptBuilder().identity
    assert re.fullmatch(r"[0-9a-f]{64}", bundled)
    assert PromptBuilder().identity == bundled
    assert PromptBuilder(tmp_path).identity == bundled  # an empty user folder changes nothing

    (tmp_path / "llm").mkdir()
    source = PromptBuilder().folders[-1] / "llm" / "labels_xray.j2"
    copy = tmp_path / "llm" / "labels_xray.j2"
    shutil.copy(source, copy)
    with_copy = PromptBuilder(tmp_path).identity
    assert with_copy != bundled
    copy.write_text(copy.read_text().replace("experienced radiologist", "careful radiologist"))
    edited = PromptBuilder(tmp_path).identity
    assert edited not in (bundled, with_copy)
    assert "careful radiologist" in render(chexpert_unit("Cardiomegaly"), builder=PromptBuilder(tmp_path))[0]

    # The offline caption templates are not part of the LLM prompts' identity.
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "xray.j2").write_text("An X-ray.\n")
    assert PromptBuilder(tmp_path).identity == edited


def test_the_class_prompts_template_has_its_own_identity(tmp_path):
    """Editing the eval class prompts re-asks no caption, and the other way round."""
    bundled = PromptBuilder()
    (tmp_path / "llm").mkdir()
    source = bundled.folders[-1] / "llm" / "class_prompts.j2"
    (tmp_path / "llm" / "class_prompts.j2").write_text(source.read_text().replace("senior", "careful"))
    edited = PromptBuilder(tmp_path)
    assert edited.identity == bundled.identity
    assert edited.class_prompts_identity != bundled.class_prompts_identity
    assert (
        "careful clinician"
        in edited.class_messages("xray", "pneumonia", ["normal", "pneumonia"], 3)[0]["content"]
    )
    (tmp_path / "llm" / "labels_xray.j2").write_text("changed\n---USER---\nx\n")
    assert PromptBuilder(tmp_path).class_prompts_identity == edited.class_prompts_identity
