"""`--prompts FILE`: dictionaries read from Python source with `ast` (never run) or from JSON, and
each set's classes covered by its dictionary or a clear error naming the file, the set and the class."""

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.eval.evalsets import load_evalset
from unimed_train.eval.prompt_files import PromptFileError, prompts_for, read_prompt_file, use_prompt_file

from tests.wds_samples import write_evalset
from unimed_data.evalset.unimed_sets import SETS

CONSTANTS_LIKE = '''"""Made-up prompt dictionaries in the shape of UniMed-CLIP's constants.py."""
import os
os.system("touch {marker}")

IMG_SIZE = 224
TASKS = ["Left", "Right"]
knee_prompts = {{
    "no": ["an unremarkable knee scan", "knee without a tear"],
    "yes": ["a torn ligament in the knee"],
}}
annotated: dict = {{"a": ["first"]}}
NESTED = {{"Left": {{"severity": ["mild"], "where": ["upper"]}}}}
MIXED = {{"a": ["ok", 3]}}
CALLED = dict(a=["built by a call"])
JOINED = {{"a": [f"formatted {{IMG_SIZE}}"]}}
first, second = {{"a": ["x"]}}, {{"b": ["y"]}}
os.system("touch {marker}")
'''


def _constants_like(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    path = tmp_path / "constants.py"
    path.write_text(CONSTANTS_LIKE.format(marker=marker))
    return path, marker


def _set(tmp_path: Path, name: str, classes: list[str], **info) -> Path:
    root = write_evalset(tmp_path / name, n_classes=len(classes), splits={"test": 1})
    (root / "classnames.txt").write_text("\n".join(classes) + "\n")
    (root / "info.json").write_text(json.dumps({"name": name, "modality": "mri", "classes": classes, **info}))
    return root


def test_only_literal_dictionaries_of_prompt_lists_are_taken_and_nothing_runs(tmp_path: Path):
    path, marker = _constants_like(tmp_path)
    found = read_prompt_file(path)
    assert found.keyed_by == "prompt_dict"
    assert found.dicts == {
        "knee_prompts": {
            "no": ["an unremarkable knee scan", "knee without a tear"],
            "yes": ["a torn ligament in the knee"],
        },
        "annotated": {"a": ["first"]},
    }  # lists, scalars, nested dicts, mixed lists, calls, f-strings and tuple targets are passed over
    assert not marker.exists()  # parsed, never imported or executed


def test_a_set_takes_the_dictionary_its_info_json_names(tmp_path: Path):
    path, _ = _constants_like(tmp_path)
    evalset = load_evalset(_set(tmp_path, "acl", ["no", "yes"], prompt_dict="knee_prompts"))
    use_prompt_file(read_prompt_file(path), evalset)
    assert evalset.prompt_ensembles() == [
        ["an unremarkable knee scan", "knee without a tear"],
        ["a torn ligament in the knee"],
    ]
    assert evalset.templates == []  # no fallback to the set's own templates


def test_a_json_file_is_keyed_by_set_name(tmp_path: Path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"acl": {"yes": ["torn"], "no": ["intact", "whole"], "maybe": ["unused"]}}))
    evalset = load_evalset(_set(tmp_path, "acl", ["no", "yes"]))
    assert prompts_for(read_prompt_file(path), evalset) == {"no": ["intact", "whole"], "yes": ["torn"]}


def test_retrieval_sets_keep_their_captions(tmp_path: Path):
    path = tmp_path / "prompts.json"
    path.write_text("{}")
    evalset = load_evalset(write_evalset(tmp_path / "captions", kind="retrieval", n_classes=2))
    use_prompt_file(read_prompt_file(path), evalset)
    assert evalset.prompts is None


@pytest.mark.parametrize(
    ("info", "classes", "said"),
    [
        ({}, ["no", "yes"], "set acl (.*): its info.json names no prompt_dict"),
        (
            {"prompt_dict": "hip_prompts"},
            ["no", "yes"],
            "no prompt dictionary 'hip_prompts' \\(it has: annotated",
        ),
        (
            {"prompt_dict": "knee_prompts"},
            ["no", "yes", "partial"],
            "set acl: class 'partial' has no prompts",
        ),
    ],
)
def test_a_set_the_file_does_not_cover_is_named(tmp_path: Path, info, classes, said):
    path, _ = _constants_like(tmp_path)
    evalset = load_evalset(_set(tmp_path, "acl", classes, **info))
    with pytest.raises(PromptFileError, match=said) as caught:
        prompts_for(read_prompt_file(path), evalset)
    assert str(caught.value).startswith(f"{path}: set acl")


def test_an_empty_prompt_list_is_an_error(tmp_path: Path):
    path = tmp_path / "p.py"
    path.write_text('knee_prompts = {"no": ["intact"], "yes": []}\nblank = {"no": ["  "], "yes": ["x"]}\n')
    for name in ("knee_prompts", "blank"):
        evalset = load_evalset(_set(tmp_path / name, "acl", ["no", "yes"], prompt_dict=name))
        with pytest.raises(PromptFileError, match=r"class '(yes|no)' has an empty prompt list"):
            prompts_for(read_prompt_file(path), evalset)


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("p.py", "x = {\n  'a': [\n", ":2: not Python"),
        ("p.json", '{"acl": {"no": ["a"]},\n', ":2: not JSON"),
        ("p.json", '["a"]', "expected {"),
        ("p.json", '{"acl": {"no": "one prompt"}}', "set acl: expected"),
        ("p.txt", "no", "expected a .py file"),
    ],
)
def test_unreadable_prompt_files_are_named(tmp_path: Path, name, text, said):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PromptFileError, match=said) as caught:
        read_prompt_file(path)
    assert str(caught.value).startswith(str(path))
    with pytest.raises(PromptFileError, match="cannot read"):
        read_prompt_file(tmp_path / "gone.py")


def test_unimed_clips_own_constants_file():
    """UniMed-CLIP's own constants.py, read where a checkout of it lies (its sentences are not ours
    to bundle): the dictionary each of the 21 sets names is found, with the set's classes as its keys;
    the nested ones are passed over.
    Set UNIMED_CLIP_DIR to the checkout's folder to run it."""
    checkout = os.environ.get("UNIMED_CLIP_DIR")
    if not checkout:
        pytest.skip("UNIMED_CLIP_DIR is not set (the folder of a UniMed-CLIP checkout)")
    path = Path(checkout) / "constants.py"
    if not path.is_file():
        pytest.skip(f"UNIMED_CLIP_DIR={checkout}: no constants.py there")
    dicts = read_prompt_file(path).dicts
    # Each recipe set's classes are the keys of the dictionary it names, in order (UniMed's label index).
    for spec in SETS:
        assert list(dicts[spec.prompt_dict]) == list(spec.classes), spec.name
        assert all(prompts for prompts in dicts[spec.prompt_dict].values()), spec.name
    assert "CHEXPERT_CLASS_PROMPTS" not in dicts and "modality_indices_radimagenet_test_set" not in dicts
