"""`unimed-data evalset --recipe unimed`: UniMed-CLIP's 21 evaluation sets from its evaluation archive.

Run over the miniature archive of `test_evalset_unimed_archive`: what is written, what is skipped
or fails and what the command says about it, its exit status, its options and the EVALS folder.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq

from tests.conftest import run_cli
from tests.test_evalset_unimed_archive import (
    AUROC,
    BAD_ROWS,
    CHEXPERT,
    COLUMNS,
    FROM_ANNOTATIONS,
    KEYS,
    evalsets,
    extracted,
    read_set,
    write_csv,
)


def test_every_set_is_written_with_unimeds_classes_and_label_indices(tmp_path):
    root, notes = extracted(tmp_path)
    out = tmp_path / "evals"
    result = evalsets(root, out, "--annotations", notes)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*KEYS, ".unimed-data.json"])
    marker = json.loads((out / ".unimed-data.json").read_text())
    assert marker["kind"] == "evalsets" and marker["owned"] == sorted(KEYS)
    for name, keys in KEYS.items():
        folder = out / name
        assert (folder / "classnames.txt").read_text().splitlines() == keys, name
        samples = read_set(folder)
        # Each image's class index (its colour) is its sample's class id: one sample per class.
        assert sorted(cls for cls, _, _ in samples) == list(range(len(keys))), name
        assert all(cls == encoded for cls, encoded, _ in samples), name
        assert all(meta["labels"] == [keys[cls]] and meta["dataset"] == name for cls, _, meta in samples)
        info = json.loads((folder / "info.json").read_text())
        assert info["name"] == name and info["classes"] == keys and info["task"] == "classification"
        column = next(c for c, names in COLUMNS.items() if name in names)
        metric = "auroc" if name in AUROC else "top1"
        # UniMed's evaluation keeps only the first prompt per class of rsna_pneumonia.
        cap = {"max_prompts": 1} if name == "rsna_pneumonia" else {}
        assert info["protocol"] == {"unimed": {"metric": metric, "column": column, **cap}}, name
        assert info["inputs"] == len(keys) + BAD_ROWS.get(name, 0) == info["splits"]["test"] + info["errors"]
        assert list(json.loads((folder / "prompts.json").read_text())) == keys
    assert "skipped:" not in result.output and "failed:" not in result.output
    assert "Sets 21 = written 21 + skipped 0 + failed 0" in result.output
    assert "UniMed evaluation sets" in result.output and "BACH" in result.output


def test_info_names_the_prompt_dictionary_and_modality_and_readable_names(tmp_path):
    root, notes = extracted(tmp_path)
    out = tmp_path / "evals"
    sets = "five_retina,meniscal_mri,NCK_CRC,chexpert-5x200,breast_us"
    assert evalsets(root, out, "--annotations", notes, "--sets", sets).exit_code == 0
    expected = {
        "five_retina": ("fundus", "five_prompts"),
        "meniscal_mri": ("mri", "meniscus_mri_prompts"),
        "NCK_CRC": ("pathology", "NCK_CRC_prompts"),
        "chexpert-5x200": ("xray", "CHEXPERT_CLASS_PROMPTS_webdataset"),
        "breast_us": ("ultrasound", "breast_us_prompts"),
    }
    for name, (modality, prompt_dict) in expected.items():
        info = json.loads((out / name / "info.json").read_text())
        assert (info["modality"], info["prompt_dict"]) == (modality, prompt_dict)
        assert list(info["readable_names"]) == KEYS[name]
    # Terse keys stay the class names; the bundled templates are filled with readable wording.
    prompts = json.loads((out / "five_retina" / "prompts.json").read_text())
    assert prompts["A"][0] == "a fundus photograph showing age-related macular degeneration."
    prompts = json.loads((out / "NCK_CRC" / "prompts.json").read_text())
    assert all("adipose tissue" in prompt for prompt in prompts["ADI"])
    assert (out / "NCK_CRC" / "classnames.txt").read_text().splitlines()[0] == "ADI"


def test_bad_rows_are_error_rows_naming_the_file_and_line(tmp_path):
    root, notes = extracted(tmp_path)
    out = tmp_path / "evals"
    assert (
        evalsets(root, out, "--annotations", notes, "--sets", "Osteo,PCAM,chexpert-5x200,CT_axial").exit_code
        == 0
    )
    reasons = {
        name: sorted(row["reason"] for row in pq.read_table(out / name / "errors.parquet").to_pylist())
        for name in ("Osteo", "PCAM", "chexpert-5x200", "CT_axial")
    }
    assert reasons["Osteo"] == [
        "annotations_final.csv:5: label 'viable: non-viable' is not one of: Non-Tumor, Non-Viable-Tumor, Viable"
    ]
    assert reasons["PCAM"] == [
        "0003_7.png: label '7' is not a class index 0-1",
        "scan.png: no _<label> in the file name (expected <id>_<label>.<ext>)",
    ]
    assert reasons["chexpert-5x200"] == [
        f"chexpert-5x200.csv:{2 + 5 * 3}: no positive class among {', '.join(CHEXPERT)}"
    ]
    assert reasons["CT_axial"] == ["file not found"]  # the build's reason for the same file


def test_an_absent_set_is_skipped_with_where_it_was_looked_for(tmp_path):
    root, notes = extracted(tmp_path)
    shutil.rmtree(root / "BACH")
    (root / "acl_mri" / "test_fold1.csv").unlink()
    out = tmp_path / "evals"
    result = evalsets(root, out, "--annotations", notes, "--sets", "BACH,acl_mri,Osteo")
    assert result.exit_code == 0, result.output
    assert f"BACH: skipped: folder BACH/ not found in {root} nor in its top-level folders" in result.output
    assert f"acl_mri: skipped: test_fold1.csv not found in {root / 'acl_mri'}" in result.output
    assert sorted(p.name for p in out.iterdir()) == [".unimed-data.json", "Osteo"]
    assert json.loads((out / ".unimed-data.json").read_text())["owned"] == ["Osteo"]
    rows = [line for line in result.output.splitlines() if line.startswith("│")]  # the summary table
    assert [row.split("│")[1].strip() for row in rows] == ["BACH", "Osteo", "acl_mri"]
    assert ["skipped: folder BACH/" in rows[0], "written" in rows[1], "skipped: test_fold1" in rows[2]] == [
        True
    ] * 3
    assert "Sets 3 = written 1 + skipped 2 + failed 0" in result.output
    assert "earlier run" not in result.output


def test_a_set_skipped_now_but_written_before_is_kept_and_said_so(tmp_path):
    """A run may ask for some sets only, so an earlier run's set is never removed; a run that skips
    it says that it is still there (an evaluator given EVALS would score it)."""
    root, _ = extracted(tmp_path)
    out = tmp_path / "evals"
    assert evalsets(root, out, "--sets", "BACH,Osteo").exit_code == 0
    shutil.rmtree(root / "BACH")
    result = evalsets(root, out, "--sets", "BACH,Osteo")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the line may wrap
    assert (
        f"BACH: skipped: folder BACH/ not found in {root} nor in its top-level folders; "
        f"the set written by an earlier run is kept in {out / 'BACH'}"
    ) in said
    assert (out / "BACH" / "info.json").is_file()
    assert json.loads((out / ".unimed-data.json").read_text())["owned"] == ["BACH", "Osteo"]


def test_annotation_sets_are_skipped_without_annotations(tmp_path):
    root, notes = extracted(tmp_path)
    out = tmp_path / "evals"
    result = evalsets(root, out)
    assert result.exit_code == 0, result.output
    for name in FROM_ANNOTATIONS:
        assert f"{name}: skipped: needs " in result.output and not (out / name).exists()
    assert "local_data" in result.output and "--annotations DIR" in result.output
    assert len([p for p in out.iterdir() if p.is_dir()]) == 21 - len(FROM_ANNOTATIONS)
    # A UniMed-CLIP checkout works as it is: its CSVs are in local_data/.
    checkout = tmp_path / "UniMed-CLIP"
    shutil.copytree(notes, checkout / "local_data")
    result = evalsets(root, out, "--annotations", checkout, "--sets", ",".join(sorted(FROM_ANNOTATIONS)))
    assert result.exit_code == 0 and all((out / name / "info.json").is_file() for name in FROM_ANNOTATIONS)
    (checkout / "local_data" / "13_FIVES.csv").unlink()
    result = evalsets(root, out, "--annotations", checkout, "--sets", "five_retina,odir_retina")
    assert f"five_retina: skipped: 13_FIVES.csv not found in {checkout}" in result.output


def test_archive_inside_a_folder_of_its_own_is_found(tmp_path):
    root, _ = extracted(tmp_path)
    (tmp_path / "download").mkdir()
    root.rename(tmp_path / "download" / "extracted_folder")
    out = tmp_path / "evals"
    result = evalsets(tmp_path / "download", out, "--sets", "LC25000_lung,thyroid_us")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "thyroid_us" / "info.json").read_text())["splits"] == {"test": 2}
    assert json.loads((out / "LC25000_lung" / "info.json").read_text())["splits"] == {"test": 3}


def test_a_set_with_an_unreadable_annotation_fails_alone_and_the_run_exits_1(tmp_path):
    root, _ = extracted(tmp_path)
    write_csv(
        root / "organs_axial" / "annotations.csv", ["image_path", "patient_id", "label"], [["a.png", 1, 0]]
    )
    out = tmp_path / "evals"
    result = evalsets(root, out, "--sets", "CT_axial,CT_coronal,BACH")
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())  # the line may wrap
    assert (
        f"CT_axial: failed: {root / 'organs_axial' / 'annotations.csv'}: header lacks column 'split'" in said
    )
    assert "Sets 3 = written 2 + skipped 0 + failed 1" in said
    assert "error: 1 set(s) failed (CT_axial): see the reasons above" in said
    assert said.count("error:") == 1 and "Evaluation sets in" not in said
    assert (out / "CT_coronal" / "info.json").is_file() and not (out / "CT_axial").exists()


def test_a_failed_set_says_when_an_earlier_run_left_its_folder(tmp_path):
    root, _ = extracted(tmp_path)
    out = tmp_path / "evals"
    assert evalsets(root, out, "--sets", "CT_axial").exit_code == 0
    (root / "organs_axial" / "annotations.csv").write_bytes(b"\xff\xfe not text")
    result = evalsets(root, out, "--sets", "CT_axial")
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "not UTF-8 text" in said and f"; {out / 'CT_axial'} still holds an earlier run's files" in said


def test_exit_1_when_no_set_is_written_and_0_when_sets_are_only_skipped(tmp_path):
    (tmp_path / "empty").mkdir()
    result = evalsets(tmp_path / "empty", tmp_path / "evals")
    assert result.exit_code == 1 and "error: no set was written" in result.output
    assert (
        result.output.count("skipped") >= 21
        and "Sets 21 = written 0 + skipped 21 + failed 0" in result.output
    )
    root, _ = extracted(tmp_path)
    result = evalsets(root, tmp_path / "evals", "--sets", "BACH,five_retina")  # no --annotations
    assert result.exit_code == 0, result.output
    assert "Sets 2 = written 1 + skipped 1 + failed 0" in result.output and "error:" not in result.output


def test_recipe_options_are_checked(tmp_path):
    root, notes = extracted(tmp_path)
    out = tmp_path / "evals"
    result = run_cli("evalset", "--recipe", "unimed", "--from-folder", root, "--root", root, "--out", out)
    assert result.exit_code == 2 and "give exactly one of" in result.output
    result = run_cli("evalset", "--recipe", "biomedclip", "--root", root, "--out", out)
    assert result.exit_code == 2 and "--recipe biomedclip: use one of unimed" in result.output
    result = run_cli("evalset", "--recipe", "unimed", "--out", out)
    assert result.exit_code == 2 and "needs --root" in result.output
    result = evalsets(root, out, "--sets", "BACH,CheXpert")
    assert result.exit_code == 2 and "unknown set(s) CheXpert" in result.output
    result = evalsets(root, out, "--modality", "xray")
    assert (
        result.exit_code == 2
        and "--modality applies to --from-folder, MANIFEST and --from-build only" in result.output
    )
    result = run_cli(
        "evalset", "--from-folder", root, "--modality", "xray", "--out", out, "--annotations", notes
    )
    assert result.exit_code == 2 and "--annotations applies to --recipe only" in result.output
    assert not out.exists()
    result = evalsets(root, root / "evals")
    assert result.exit_code == 2 and "lies inside the archive" in result.output


def test_evals_folder_is_claimed_before_writing_and_reused(tmp_path):
    root, _ = extracted(tmp_path)
    out = tmp_path / "evals"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = evalsets(root, out, "--sets", "BACH")
    assert result.exit_code == 2 and "not empty" in result.output and not (out / "BACH").exists()
    assert evalsets(root, out, "--sets", "BACH", "--force").exit_code == 0
    first = (out / "BACH" / "test" / "0.tar").read_bytes()
    assert evalsets(root, out, "--sets", "BACH,Osteo").exit_code == 0
    assert (out / "BACH" / "test" / "0.tar").read_bytes() == first and (
        out / "notes.txt"
    ).read_text() == "mine"
    assert json.loads((out / ".unimed-data.json").read_text())["owned"] == ["BACH", "Osteo"]
