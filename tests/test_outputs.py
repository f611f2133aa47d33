"""Output folders: a command writes only into a folder it owns, and never replaces a user's file."""

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import csv_label_config, run_cli
from unimed_data.outputs import MARKER, OutputError, claim_output, settle_output

WRITES = ["work", "train", "stats.json", "README.md"]


def test_a_new_folder_is_claimed_with_a_marker_listing_what_we_write(tmp_path: Path):
    out = tmp_path / "new" / "out"
    claim_output(out, "build", WRITES)
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "build" and marker["owned"] == sorted(WRITES)


def test_an_empty_folder_is_claimed(tmp_path: Path):
    claim_output(tmp_path, "build", WRITES)
    assert (tmp_path / MARKER).is_file()


def test_our_own_folder_is_reused_and_a_rerun_leaves_the_marker_untouched(tmp_path: Path):
    claim_output(tmp_path, "build", WRITES)
    (tmp_path / "README.md").write_text("our dataset card")
    stamp = (tmp_path / MARKER).stat().st_mtime_ns
    claim_output(tmp_path, "build", WRITES)
    assert (tmp_path / MARKER).stat().st_mtime_ns == stamp


def test_a_foreign_non_empty_folder_is_refused_without_force(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"not empty and not an output of `build`.*--force"):
        claim_output(tmp_path, "build", WRITES)
    assert not (tmp_path / MARKER).exists()


def test_force_writes_beside_foreign_files_but_never_replaces_one(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    claim_output(tmp_path, "build", WRITES, force=True)
    assert "notes.txt" not in json.loads((tmp_path / MARKER).read_text())["owned"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("the user's readme")
    with pytest.raises(OutputError, match=r"would replace README\.md, which this tool did not write"):
        claim_output(other, "build", WRITES, force=True)
    assert (other / "README.md").read_text() == "the user's readme"


def test_a_file_appearing_later_under_a_name_we_now_plan_is_not_ours(tmp_path: Path):
    claim_output(tmp_path, "build", ["work"])
    (tmp_path / "README.md").write_text("the user's readme")
    with pytest.raises(OutputError, match=r"README\.md"):
        claim_output(tmp_path, "build", ["work", "README.md"])


def test_a_planned_name_the_run_never_wrote_is_not_ours_afterwards(tmp_path: Path):
    claim_output(tmp_path, "evalset", ["test", "train"])
    (tmp_path / "test").mkdir()
    settle_output(tmp_path)
    assert json.loads((tmp_path / MARKER).read_text())["owned"] == ["test"]
    (tmp_path / "train").mkdir()  # the user's, made after our run
    with pytest.raises(OutputError, match="would replace train"):
        claim_output(tmp_path, "evalset", ["test", "train"])


def test_a_broken_symlink_as_the_folder_is_one_clear_error(tmp_path: Path):
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError, match="cannot write here"):
        claim_output(tmp_path / "out", "build", WRITES)


def test_a_folder_of_another_kind_is_refused_even_with_force(tmp_path: Path):
    claim_output(tmp_path, "train", ["checkpoints"])
    with pytest.raises(OutputError, match="holds the output of `train`, not of `build`"):
        claim_output(tmp_path, "build", WRITES, force=True)


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        claim_output(tmp_path / "out", "build", WRITES)


def class_tree(root: Path) -> Path:
    for label in ("effusion", "normal"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (40 + i, 40), 40 * i).save(root / label / f"{i}.png")
    return root


def test_build_refuses_a_users_folder_and_leaves_their_readme(tmp_path: Path):
    tree = class_tree(tmp_path / "xrays")
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my project notes")
    result = run_cli("build", "--from-folder", tree, "--modality", "xray", "--out", out, "--workers", "1")
    assert result.exit_code == 2
    assert "error:" in result.output and "--force" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
    result = run_cli("build", "--from-folder", tree, "--modality", "xray", "--out", out, "--force")
    assert result.exit_code == 2 and "would replace README.md" in result.output
    assert (out / "README.md").read_text() == "my project notes"


def test_build_with_force_writes_beside_foreign_files_then_reruns_as_its_own(tmp_path: Path):
    tree = class_tree(tmp_path / "xrays")
    out = tmp_path / "shared-drive"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ("build", "--from-folder", tree, "--modality", "xray", "--out", out, "--workers", "1")
    assert run_cli(*args, "--force").exit_code == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "README.md").is_file()
    assert run_cli(*args).exit_code == 0  # now marked as ours: no --force needed


def test_evalset_refuses_a_folder_that_is_not_its_own(tmp_path: Path):
    tree = class_tree(tmp_path / "xrays")
    out = tmp_path / "bench"
    out.mkdir()
    (out / "info.json").write_text("{}")
    args = ("evalset", "--from-folder", tree, "--modality", "xray", "--out", out)
    result = run_cli(*args)
    assert result.exit_code == 2 and "not empty" in result.output
    result = run_cli(*args, "--force")
    assert result.exit_code == 2 and "would replace info.json" in result.output
    assert (out / "info.json").read_text() == "{}"


def test_an_evalset_rerun_never_deletes_a_split_folder_the_user_added(tmp_path: Path):
    tree = class_tree(tmp_path / "xrays")
    out = tmp_path / "bench"
    args = ("evalset", "--from-folder", tree, "--modality", "xray", "--out", out)
    assert run_cli(*args).exit_code == 0
    (out / "train").mkdir()
    (out / "train" / "0.tar").write_bytes(b"the user's shard")
    result = run_cli(*args)
    assert result.exit_code == 2 and "would replace train" in result.output
    assert (out / "train" / "0.tar").read_bytes() == b"the user's shard"


def test_a_build_that_fails_on_bad_input_leaves_no_output_folder(tmp_path: Path):
    raw = tmp_path / "raw" / "notes"
    raw.mkdir(parents=True)
    (raw / "labels.csv").write_text("path,other\na.png,x\n")
    config = csv_label_config(tmp_path, "notes", tmp_path / "raw")
    out = tmp_path / "out"
    result = run_cli("build", config, "--out", out)
    assert result.exit_code == 2 and "finding" in result.output
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("build", config, "--out", empty).exit_code == 2
    assert empty.is_dir() and not any(empty.iterdir())  # the user's empty folder stays, empty
