"""The offline template caption backend: label sets in, several clean distinct captions out."""

from pathlib import Path

import pytest

from unimed_data.captions import CaptionFailure, CaptionUnit, TemplateCaptioner, make_captioner
from unimed_data.captions.template import clinical, join_and, with_article


def captions_for(unit, **options):
    answer = TemplateCaptioner(**options).caption([unit])[unit]
    assert not isinstance(answer, CaptionFailure), answer
    return answer


def test_label_combination_becomes_one_phrase_not_a_list():
    captions = captions_for(CaptionUnit("chexpert", "xray", ("Cardiomegaly", "Pleural Effusion", "Edema")))
    assert captions[0] == "An X-ray image showing cardiomegaly, pleural effusion and edema."
    assert all("cardiomegaly, pleural effusion and edema" in c for c in captions)


def test_up_to_ten_distinct_clean_captions_by_default():
    captions = captions_for(CaptionUnit("odir", "fundus", ("glaucoma",)))
    assert 5 <= len(captions) <= 10
    assert len(set(captions)) == len(captions)
    assert all(c[0].isupper() and c.endswith(".") and "  " not in c for c in captions)


def test_per_record_caps_the_count():
    assert len(captions_for(CaptionUnit("odir", "fundus", ("glaucoma",)), per_record=3)) == 3


def test_uncertain_labels_are_worded_as_possible_never_as_findings():
    captions = captions_for(CaptionUnit("chexpert", "xray", ("Edema", "Pneumonia"), ("Pneumonia",)))
    mentioning = [c for c in captions if "pneumonia" in c]
    assert mentioning, captions
    assert all("possible pneumonia" in c or "pneumonia may" in c for c in mentioning)
    only_uncertain = captions_for(CaptionUnit("chexpert", "xray", ("Pneumonia",), ("Pneumonia",)))
    assert all(
        "may be present" in c or "possible" in c or "suspicious" in c or "cannot be excluded" in c
        for c in only_uncertain
    )


@pytest.mark.parametrize(("modality", "label"), [("xray", "No Finding"), ("fundus", "normal fundus")])
def test_normal_classes_are_described_as_normal_studies(modality, label):
    captions = captions_for(CaptionUnit("d", modality, (label,)))
    assert not any(f"showing {label.lower()}" in c.lower() for c in captions)
    assert all(any(w in c.lower() for w in ("normal", "no ", "healthy", "unremarkable")) for c in captions)


def test_every_modality_has_a_template_and_unknown_ones_fall_back_to_generic():
    for modality in ("xray", "ct", "mri", "ultrasound", "pathology", "fundus"):
        assert captions_for(CaptionUnit("d", modality, ("Tumor",)))
    endoscopy = captions_for(CaptionUnit("d", "endoscopy", ("Polyp",)))
    assert endoscopy[0] == "An endoscopy image showing polyp."


def test_report_without_labels_gives_its_sentences():
    unit = CaptionUnit("openi", "xray", (), (), "Heart size is normal. Lungs are clear.  No pneumothorax.")
    assert sorted(captions_for(unit)) == ["Heart size is normal.", "Lungs are clear.", "No pneumothorax."]


def test_nothing_to_caption_is_a_failure_with_a_reason():
    unit = CaptionUnit("d", "ct", ())
    answer = TemplateCaptioner().caption([unit])[unit]
    assert isinstance(answer, CaptionFailure) and "no labels" in answer.reason


def test_deterministic_for_a_seed_and_different_across_seeds():
    unit = CaptionUnit("chexpert", "xray", ("Atelectasis",))
    assert captions_for(unit, seed=1) == captions_for(unit, seed=1)
    assert captions_for(unit, seed=1)[0] == captions_for(unit, seed=2)[0]  # the primary caption is fixed
    assert captions_for(unit, seed=1) != captions_for(unit, seed=2)


def test_user_templates_override_bundled_ones_and_change_identity(tmp_path: Path):
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "ct.j2").write_text(
        "My CT of {{ findings | map('clinical') | list | join_and }}\n"
    )
    captioner = TemplateCaptioner(templates_dir=tmp_path)
    unit = CaptionUnit("d", "ct", ("Kidney Stone",))
    assert captioner.caption([unit])[unit] == ["My CT of kidney stone."]
    mri = CaptionUnit("d", "mri", ("Glioma",))
    assert captioner.caption([mri])[mri][0] == "An MRI scan showing glioma."
    assert captioner.identity["templates"] != TemplateCaptioner().identity["templates"]


def test_missing_template_folder_and_unknown_backend_are_clear_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TemplateCaptioner(templates_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown caption backend"):
        make_captioner("gpt")


def test_phrase_helpers():
    assert join_and(["a"]) == "a"
    assert join_and(["a", "b", "c"]) == "a, b and c"
    assert join_and(["a", "b"], "or") == "a or b"
    assert clinical("Pleural Effusion") == "pleural effusion"
    assert clinical("AMD") == "AMD"
    assert with_article("MRI image") == "an MRI image"
    assert with_article("CT image") == "a CT image"
