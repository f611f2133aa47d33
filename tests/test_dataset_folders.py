"""A dataset's folder is found under the raw root as the build, download and evalset look for it."""

from __future__ import annotations

from unimed_data.dataset_folders import dataset_root, find_folder
from unimed_data.manifest import find_manifest, load_manifest


def test_a_dataset_folder_is_found_whatever_the_case_of_its_name(tmp_path):
    (tmp_path / "OpenI" / "image").mkdir(parents=True)
    manifest = load_manifest(find_manifest("unimed-openi"))
    assert manifest.root == "openI"
    assert dataset_root(manifest, tmp_path) == (tmp_path / "OpenI").absolute()


def test_a_name_written_as_the_folder_is_kept_even_when_another_case_exists(tmp_path):
    (tmp_path / "Retina" / "ODIR").mkdir(parents=True)
    (tmp_path / "retina").mkdir(exist_ok=True)
    assert find_folder(tmp_path, "retina") == tmp_path / "retina"
    assert find_folder(tmp_path, "RETINA/odir") == tmp_path / "RETINA" / "odir"  # two matches: as written
