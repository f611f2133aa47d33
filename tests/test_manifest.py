"""Manifests: bundled ones load; bad ones fail naming the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimed_data.layouts.chexpert import ChexpertLayout
from unimed_data.manifest import (
    Manifest,
    ManifestError,
    bundled_manifest_paths,
    find_manifest,
    load_manifest,
    load_manifest_text,
)
from unimed_data.splits import ColumnSplit, HashSplit

MINIMAL = """\
name: tiny
modality: xray
license: CC-BY-4.0
layout:
  type: folder
"""


def write(tmp_path: Path, text: str, name: str = "chexpert.yaml") -> Path:
    path = tmp_path / "manifests" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return str(caught.value)


def test_bundled_manifests_load_and_are_found_by_name():
    names = [entry.name for entry in bundled_manifest_paths()]
    assert names == sorted(names)
    assert {"biomedica-demo.yaml", "chexpert-v1.0-small.yaml", "odir-5k.yaml", "refuge.yaml"} <= set(names)
    for entry in bundled_manifest_paths():
        if entry.name not in {
            "biomedica-demo.yaml",
            "chexpert-v1.0-small.yaml",
            "odir-5k.yaml",
            "refuge.yaml",
        }:
            continue  # the whole registry is checked in test_sources.py
        manifest = load_manifest(entry)
        assert manifest.name == entry.name.removesuffix(".yaml")
        assert load_manifest(find_manifest(manifest.name)) == manifest
        assert load_manifest(find_manifest(entry.name)) == manifest


def test_bundled_chexpert_manifest_describes_the_real_release():
    manifest = load_manifest(find_manifest("chexpert-v1.0-small"))
    assert manifest.modality == "xray"
    assert (
        manifest.license == "Stanford University School of Medicine CheXpert Dataset Research Use Agreement"
    )
    assert "Irvin" in manifest.citation and "2019" in manifest.citation
    assert isinstance(manifest.layout, ChexpertLayout)
    assert [(c.path, c.split) for c in manifest.layout.csvs] == [("train.csv", "train"), ("valid.csv", "val")]
    assert manifest.layout.uncertain == "positive" and manifest.layout.views == "frontal"
    assert manifest.layout.path_prefix == "CheXpert-v1.0-small/"
    assert isinstance(manifest.split, ColumnSplit)
    assert set(manifest.definitions) == set(manifest.classes.values())


def test_find_manifest_accepts_a_path_and_lists_bundled_names_when_nothing_matches(tmp_path):
    path = write(tmp_path, MINIMAL, "tiny.yaml")
    assert find_manifest(path) == path
    with pytest.raises(ManifestError, match=r"no-such-set: .*odir-5k"):
        find_manifest("no-such-set")


def test_minimal_manifest_gets_defaults():
    manifest = load_manifest_text(MINIMAL)
    assert manifest.root is None and manifest.classes == {} and manifest.definitions == {}
    assert manifest.layout.path == "." and ".dcm" in manifest.layout.extensions
    assert isinstance(manifest.split, HashSplit)
    assert manifest.split.fractions == {"train": 0.9, "val": 0.05, "test": 0.05}


def test_manifest_model_validates_from_code():
    data = {"name": "Demo Set", "modality": "ct", "license": "MIT", "layout": {"type": "folder"}}
    manifest = Manifest.model_validate(data)
    assert manifest.slug == "demo-set"


def test_unmapped_raw_labels_pass_through_with_spaces():
    manifest = load_manifest_text(MINIMAL + "classes:\n  Edema: pulmonary edema\n")
    assert manifest.readable("Edema") == "pulmonary edema"
    assert manifest.readable("pleural_effusion") == "pleural effusion"


def test_unknown_top_level_field_is_named(tmp_path):
    path = write(tmp_path, MINIMAL + "lisence: MIT\n")
    assert error_of(path) == f"{path}: lisence: Extra inputs are not permitted"


def test_unknown_layout_field_is_named_without_the_union_tag(tmp_path):
    path = write(tmp_path, MINIMAL + "  pth: images\n")
    assert error_of(path) == f"{path}: layout.pth: Extra inputs are not permitted"


def test_bad_modality_is_named(tmp_path):
    path = write(tmp_path, MINIMAL.replace("modality: xray", "modality: x-ray"))
    message = error_of(path)
    assert message.startswith(f"{path}: modality: Input should be 'xray', 'ct', 'mri'")


def test_bad_uncertain_policy_is_named(tmp_path):
    text = """\
name: chexpert
modality: xray
license: research
layout:
  type: chexpert
  csvs: [{path: train.csv, split: train}]
  uncertain: maybe
"""
    path = write(tmp_path, text)
    assert error_of(path) == (f"{path}: layout.uncertain: Input should be 'positive', 'negative' or 'ignore'")


def test_nested_list_fields_are_named_with_their_index(tmp_path):
    text = MINIMAL.replace("  type: folder\n", "  type: chexpert\n  csvs: [{path: a.csv, splt: train}]\n")
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: layout.csvs[0].splt: Extra inputs are not permitted"


def test_unknown_layout_type_is_named(tmp_path):
    path = write(tmp_path, MINIMAL.replace("type: folder", "type: folders"))
    message = error_of(path)
    assert message.startswith(f"{path}: layout: Input tag 'folders' found using 'type'")


def test_missing_required_fields_are_all_listed(tmp_path):
    path = write(tmp_path, "name: x\nlayout: {type: flair}\n")
    lines = error_of(path).splitlines()
    assert f"{path}: modality: Field required" in lines
    assert f"{path}: license: Field required" in lines
    assert f"{path}: layout.csv: Field required" in lines


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, MINIMAL + "classes:\n  a: [unclosed\n")
    assert error_of(path) == (
        f"{path}:7: YAML syntax error: while parsing a flow sequence; expected ',' or ']', but got '<stream end>'"
    )


def test_duplicate_yaml_key_names_file_and_line(tmp_path):
    path = write(tmp_path, MINIMAL + "classes:\n  a: first\n  a: second\n")
    assert error_of(path) == f"{path}:8: YAML syntax error: duplicate key 'a'"


def test_a_manifest_must_be_a_mapping(tmp_path):
    assert error_of(write(tmp_path, "- a\n- b\n")).endswith("expected a mapping of manifest fields, got list")
    assert error_of(write(tmp_path, "")).endswith("got NoneType")


def test_split_fractions_must_sum_to_one(tmp_path):
    path = write(tmp_path, MINIMAL + "split: {by: hash, fractions: {train: 0.8, val: 0.1}}\n")
    message = error_of(path)
    assert message.startswith(f"{path}: split.fractions: Value error, fractions must sum to 1")


def test_unknown_split_name_in_fractions_is_refused(tmp_path):
    path = write(tmp_path, MINIMAL + "split: {by: hash, fractions: {train: 0.5, holdout: 0.5}}\n")
    assert error_of(path) == f"{path}: split.fractions.holdout: Input should be 'train', 'val' or 'test'"


def test_split_rule_defaults_to_hash_and_names_a_bad_rule(tmp_path):
    manifest = load_manifest_text(MINIMAL + "split: {fractions: {train: 0.5, test: 0.5}}\n")
    assert manifest.split == HashSplit(fractions={"train": 0.5, "test": 0.5})
    path = write(tmp_path, MINIMAL + "split: {by: random}\n")
    assert error_of(path) == f"{path}: split: by should be 'hash' (the default), 'column' or 'fixed'"
    path = write(tmp_path, MINIMAL + "split: {by: fixed, split: holdout}\n")
    assert error_of(path) == f"{path}: split.split: Input should be 'train', 'val' or 'test'"


def test_paths_may_not_leave_the_dataset_root(tmp_path):
    path = write(tmp_path, MINIMAL.replace("  type: folder\n", "  type: flair\n  csv: ../../etc/passwd\n"))
    assert error_of(path).startswith(f"{path}: layout.csv: Value error, path '../../etc/passwd' leaves")


def test_captions_format_must_be_known(tmp_path):
    text = MINIMAL.replace(
        "  type: folder\n",
        "  type: captions\n  table: pairs.tsv\n  image_column: image\n  caption_column: caption\n",
    )
    assert "set format to csv or jsonl" in error_of(write(tmp_path, text))


def test_unreadable_manifest_file_is_named(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert error_of(missing).startswith(f"{missing}: cannot read manifest")
