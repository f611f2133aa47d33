"""Resolving UniMed's image paths. Forms, in order: under image_root without a leading folder that
repeats the root's name, under image_root as written, under the annotation folder without leading
folders that repeat its end, under the annotation folder as written; the first that exists wins,
else the first form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unimed_data.layouts.unimed_paths import PathResolver


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8")


def test_a_path_under_image_root_wins_when_it_exists(tmp_path):
    touch(tmp_path / "images" / "00000001_000.png")
    touch(tmp_path / "00000001_000.png")  # also beside the CSV: image_root is tried first
    resolver = PathResolver(tmp_path, "", "images")
    assert resolver.resolve("00000001_000.png") == "images/00000001_000.png"


@pytest.mark.parametrize("root_name", ["CheXpert-v1.0-small", "chexpert-v1.0-small"])
def test_a_leading_folder_repeating_the_root_name_is_dropped_in_any_case(tmp_path, root_name):
    root = tmp_path / root_name
    touch(root / "train" / "patient00001" / "study1" / "view1_frontal.jpg")
    resolver = PathResolver(root, "", "")
    raw = "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    assert resolver.candidates(raw) == ["train/patient00001/study1/view1_frontal.jpg", raw]
    assert resolver.resolve(raw) == "train/patient00001/study1/view1_frontal.jpg"


MIMIC_IMAGE = "p10/p10000032/s50414267/a.jpg"


@pytest.mark.parametrize(
    "raw",
    [
        MIMIC_IMAGE,  # relative to the CSV's folder
        f"2.0.0/files/{MIMIC_IMAGE}",  # relative to the root
        f"files/{MIMIC_IMAGE}",  # repeating the end of the CSV's folder
        f"Files/{MIMIC_IMAGE}",  # in any case
    ],
)
def test_every_mimic_path_form_finds_the_image_beside_the_csv(tmp_path, raw):
    touch(tmp_path / "2.0.0" / "files" / MIMIC_IMAGE)
    resolver = PathResolver(tmp_path, "2.0.0/files", "")
    assert resolver.resolve(raw) == f"2.0.0/files/{MIMIC_IMAGE}"
    assert resolver.identity(raw) == raw


@pytest.mark.parametrize(
    ("raw", "forms"),
    [
        ("p10/a.jpg", ["p10/a.jpg", "2.0.0/files/p10/a.jpg"]),
        ("files/p10/a.jpg", ["files/p10/a.jpg", "2.0.0/files/p10/a.jpg", "2.0.0/files/files/p10/a.jpg"]),
        # the longest repeated run is removed, which gives the path as written: tried once
        ("2.0.0/files/p10/a.jpg", ["2.0.0/files/p10/a.jpg", "2.0.0/files/2.0.0/files/p10/a.jpg"]),
        ("0.0/files/a.jpg", ["0.0/files/a.jpg", "2.0.0/files/0.0/files/a.jpg"]),  # whole folders only
        ("files", ["files", "2.0.0/files/files"]),  # the file name never counts as a folder
    ],
)
def test_forms_repeating_the_end_of_the_annotation_folder(tmp_path, raw, forms):
    resolver = PathResolver(tmp_path, "2.0.0/files", "")
    assert resolver.candidates(raw) == forms
    assert resolver.resolve(raw) == forms[0]  # no image on disk: the first form is kept


def test_a_missing_folder_is_checked_once_and_no_file_is_opened(tmp_path, monkeypatch):
    touch(tmp_path / "2.0.0" / "files" / MIMIC_IMAGE)
    checked: list[str] = []
    is_dir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda path: checked.append(path) or is_dir(path))
    monkeypatch.setattr("builtins.open", None)  # only stat calls: an open would fail
    resolver = PathResolver(tmp_path, "2.0.0/files", "")
    for _ in range(3):
        assert resolver.resolve(MIMIC_IMAGE) == f"2.0.0/files/{MIMIC_IMAGE}"
    assert sorted(checked) == [
        str(tmp_path / "2.0.0/files/p10/p10000032/s50414267"),
        str(tmp_path / "p10/p10000032/s50414267"),
    ]


def test_without_the_image_the_documented_place_is_kept_for_the_error(tmp_path):
    resolver = PathResolver(tmp_path / "CheXpert-v1.0-small", "annotations", "imgs")
    raw = "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg"
    assert resolver.candidates(raw) == [
        "imgs/valid/patient64541/study1/view1_frontal.jpg",
        f"imgs/{raw}",
        f"annotations/{raw}",
    ]
    assert resolver.resolve(raw) == "imgs/valid/patient64541/study1/view1_frontal.jpg"


def test_a_nested_copy_under_the_repeated_name_is_still_found(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    raw = "CheXpert-v1.0-small/train/p1/s1/view1_frontal.jpg"
    touch(root / raw)
    assert PathResolver(root, "", "").resolve(raw) == raw


def test_a_folder_is_not_taken_for_an_image(tmp_path):
    (tmp_path / "images" / "a.png").mkdir(parents=True)
    touch(tmp_path / "a.png")
    assert PathResolver(tmp_path, ".", "images").resolve("a.png") == "a.png"


def test_repeated_forms_are_tried_once(tmp_path):
    assert PathResolver(tmp_path, "", "").candidates(" a/b.png ") == ["a/b.png"]


@pytest.mark.parametrize("raw", ["../outside.png", "/etc/passwd", "a/../../b.png", "  "])
def test_paths_leaving_the_root_or_blank_are_refused(tmp_path, raw):
    with pytest.raises(ValueError):
        PathResolver(tmp_path, "", "").resolve(raw)
