"""Protect specs: what each names, and one clear error for one that names nothing."""

from __future__ import annotations

import tarfile

import pytest

from unimed_data.imaging import ConvertOptions
from unimed_data.protect import ProtectError, check_spec, path_tail, read_specs


def evalset(folder, keys):
    (folder / "test").mkdir(parents=True)
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for key in keys:
            for ext in ("jpg", "cls"):
                path = folder / f"{key}.{ext}"
                path.write_bytes(b"x")
                tar.add(path, f"{key}.{ext}")
                path.unlink()


def test_one_set_or_a_folder_of_sets(tmp_path):
    evalset(tmp_path / "evals" / "PCAM", ["a", "b"])
    evalset(tmp_path / "evals" / "BACH", ["c"])
    options = ConvertOptions()
    one = read_specs([str(tmp_path / "evals" / "PCAM")], None, options, tmp_path)
    assert [(s.name, [t.eval_key for t in s.tasks]) for s in one] == [("PCAM", ["test/a", "test/b"])]
    both = read_specs([str(tmp_path / "evals")], None, options, tmp_path)
    assert [s.name for s in both] == ["BACH", "PCAM"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{tmp}", "not an evalset folder"),
        ("no-such-manifest={tmp}", "no-such-manifest"),
        ("chexpert-5x200={tmp}/absent", "is not a folder"),
    ],
)
def test_a_spec_that_names_nothing_is_refused(tmp_path, spec, message):
    with pytest.raises(ProtectError, match=message):
        check_spec(spec.format(tmp=tmp_path))


def test_all_present_needs_the_raw_root(tmp_path):
    with pytest.raises(ProtectError, match="raw root"):
        read_specs(["all-present"], None, ConvertOptions(), tmp_path)


def test_a_path_tail_is_the_last_two_folders_and_the_name_without_case():
    a = path_tail("/raw/chexpert/CheXpert-v1.0-small/train/patient1/Study1/view1.jpg")
    assert a == path_tail("/other/train/patient1/study1/VIEW1.jpg") == "patient1/study1/view1.jpg"
