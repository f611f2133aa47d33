"""Parsing and checking LLM caption answers: the shapes models really send, and the ways they fail."""

import json

import pytest

from unimed_data.captions.answers import InvalidAnswer, leak_ids, parse_captions
from unimed_data.captions.tokens import make_token_counter
from unimed_data.manifest import find_manifest, load_manifest

CAPTIONS = [
    "Chest radiograph showing cardiomegaly with a pleural effusion.",
    "An enlarged cardiac silhouette and pleural effusion are seen on this X-ray.",
    "X-ray demonstrating cardiomegaly and blunting of the costophrenic angle from effusion.",
]


def parse(text, *, count=3, exact=True, budget=77, forbidden=(), counter=None):
    return parse_captions(
        text,
        count=count,
        exact=exact,
        token_budget=budget,
        count_tokens=counter or make_token_counter("clip"),
        forbidden=forbidden,
    )


def reason(text, **options) -> str:
    with pytest.raises(InvalidAnswer) as caught:
        parse(text, **options)
    assert caught.value.reason == str(caught.value)
    return str(caught.value)


def test_a_captions_object_is_read_in_order():
    assert parse(json.dumps({"captions": CAPTIONS})) == CAPTIONS


def test_a_bare_list_and_an_object_with_one_list_are_accepted():
    assert parse(json.dumps(CAPTIONS)) == CAPTIONS
    assert parse(json.dumps({"results": CAPTIONS})) == CAPTIONS
    assert parse(json.dumps({"captions": [{"caption": c} for c in CAPTIONS]})) == CAPTIONS


def test_fenced_json_inside_prose_is_found():
    answer = (
        "Sure! Here are 3 captions [as requested]:\n\n```json\n"
        + json.dumps({"captions": CAPTIONS}, indent=2)
        + "\n```\n\nLet me know if you need more."
    )
    assert parse(answer) == CAPTIONS
    unfenced = "Here you go: " + json.dumps({"captions": CAPTIONS}) + " Hope {this} helps."
    assert parse(unfenced) == CAPTIONS
    plain_fence = "```\n" + json.dumps(CAPTIONS) + "\n```"
    assert parse(plain_fence) == CAPTIONS


def test_captions_are_stripped_and_whitespace_collapsed():
    messy = ["  Chest radiograph\nshowing   cardiomegaly. ", "\tX-ray with effusion.", "Normal  heart size."]
    assert parse(json.dumps(messy)) == [
        "Chest radiograph showing cardiomegaly.",
        "X-ray with effusion.",
        "Normal heart size.",
    ]


@pytest.mark.parametrize(
    "answer",
    [
        '{"captions": ["Chest radiograph showing cardiomegaly.", "X-ray with effusion.",',  # cut off
        "{'captions': ['single quotes are not JSON']}",
        "Chest radiograph showing cardiomegaly.\nX-ray with effusion.",
        "```json\n{captions: [unquoted]}\n```",
    ],
)
def test_malformed_json_is_not_valid_json(answer):
    assert reason(answer) == "not valid JSON"


def test_json_without_a_captions_list_is_refused():
    assert reason('{"caption": "One caption only."}') == "no captions list in the JSON"
    assert reason('{"a": ["x"], "b": ["y"]}') == "no captions list in the JSON"
    assert reason('{"captions": ["Fine caption.", 3, null]}') == "captions are not all strings"


def test_empty_answers_and_empty_captions_are_refused():
    assert reason("") == "empty answer"
    assert reason("   \n") == "empty answer"
    assert reason(json.dumps(["A radiograph.", "   ", "An X-ray."])) == "empty caption"
    assert reason('{"captions": []}', exact=False) == "no captions"


def test_exact_count_for_label_units():
    assert reason(json.dumps(CAPTIONS[:2])) == "expected 3 captions, got 2"
    assert reason(json.dumps(CAPTIONS), count=2) == "expected 2 captions, got 3"


def test_up_to_count_for_report_findings():
    assert parse(json.dumps(CAPTIONS[:1]), count=5, exact=False) == CAPTIONS[:1]
    assert parse(json.dumps(CAPTIONS), count=3, exact=False) == CAPTIONS
    assert reason(json.dumps(CAPTIONS), count=2, exact=False) == "expected at most 2 captions, got 3"


@pytest.mark.parametrize(
    "variants",
    [
        ["Normal chest radiograph.", "normal chest radiograph", "An unremarkable X-ray."],
        ["Normal chest radiograph.", "An unremarkable X-ray.", "NORMAL   chest radiograph ."],
        ["No pneumothorax.", "No pneumothorax", "No pleural effusion."],
    ],
)
def test_duplicates_ignore_case_spacing_and_final_period(variants):
    assert reason(json.dumps(variants)) == "duplicate captions"


def test_token_budget_uses_the_real_clip_count():
    pytest.importorskip("open_clip")
    clip = make_token_counter("clip")
    assert clip.exact
    long = (
        "Frontal chest radiograph demonstrating marked cardiomegaly, bilateral pleural effusions, "
        "interstitial pulmonary edema with Kerley B lines, perihilar airspace consolidation, "
        "retrocardiac atelectasis, a right internal jugular central venous catheter and sternotomy wires."
    )
    n = clip(long)
    assert n > 40
    answer = json.dumps([CAPTIONS[0], long, CAPTIONS[1]])
    assert reason(answer, budget=40) == f"caption over the 40-token budget ({n} tokens)"
    assert parse(answer, budget=n)[1] == long
    # The budget includes CLIP's start and end tokens: exactly at the limit is fine, one over is not.
    short = CAPTIONS[0]
    assert parse(json.dumps([short]), count=1, budget=clip(short)) == [short]
    assert reason(json.dumps([short]), count=1, budget=clip(short) - 1).startswith("caption over the")


def test_raw_label_ids_leak_but_readable_names_are_fine():
    ids = ["Pleural_Effusion", "class_3", "chexpert-v1.0-small"]
    leaked = ["X-ray with Pleural_Effusion.", "Chest radiograph.", "An X-ray."]
    assert reason(json.dumps(leaked), forbidden=ids) == "caption leaks a label id: 'Pleural_Effusion'"
    assert (
        reason(json.dumps(["Image of class_3.", "A.", "B."]), forbidden=ids)
        == "caption leaks a label id: 'class_3'"
    )
    assert (
        reason(json.dumps(["From chexpert-v1.0-small.", "A.", "B."]), forbidden=ids)
        == "caption leaks a label id: 'chexpert-v1.0-small'"
    )
    readable = [
        "Chest X-ray showing a pleural effusion.",
        "Pleural effusion on a radiograph.",
        "X-ray of pleural effusion with class_31 wording and subclass_3 text.",  # not whole tokens
    ]
    assert parse(json.dumps(readable), forbidden=ids) == readable


def test_leak_ids_keeps_code_like_raw_labels_only():
    chexpert = load_manifest(find_manifest("chexpert-v1.0-small"))
    # CheXpert's raw labels are words (`Edema` -> `pulmonary edema`): none is code-like.
    assert leak_ids(chexpert.classes, chexpert.name, chexpert.slug) == [
        "chexpert-v1.0-small",
        "chexpert-v1-0-small",
    ]
    assert leak_ids(chexpert.classes) == []
    classes = {
        "Pleural_Effusion": "pleural effusion",
        "class_3": "moderate diabetic retinopathy",
        "COVID-19": "COVID-19 pneumonia",  # appears in its readable name: allowed
        "Edema": "pulmonary edema",  # an ordinary word
        "DR-2": "mild diabetic retinopathy",
        "0": "no diabetic retinopathy",  # bare numbers would flag measurements
        "glaucoma": "glaucoma",
    }
    assert leak_ids(classes, "refuge") == ["Pleural_Effusion", "class_3", "DR-2"]
    assert leak_ids(classes, "odir-5k")[-1] == "odir-5k"
    assert leak_ids({}, "odir-5k", "odir-5k") == ["odir-5k"]
    caption = "Fundus photograph with moderate diabetic retinopathy and a cup-to-disc ratio of 0.8."
    assert parse(json.dumps([caption]), count=1, forbidden=leak_ids(classes, "odir-5k")) == [caption]
