"""MMKD-CLIP teacher features end to end on CPU: two tiny teachers of different widths over the demo
shards, the distill loss trained on their output, a run killed midway and resumed, failures."""

import copy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

import numpy as np
import torch
from unimed_train.export import save_local_dir
from unimed_train.main import main as train
from unimed_train.model import build_model
from unimed_train.teachers.__main__ import main as teachers_main

from tests.conftest import torchrun
from tests.tiny_models import TINY, shards, tiny_argv, tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
NARROW_MODALITIES = ["mri", "ct"]
# Shards for the killed run: so many that it cannot finish between its first shard and the kill.
SHARDS = 40


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: the same numbers in this process and in the subprocess (OMP_NUM_THREADS=1),
    and no slowdown from threads fighting over the two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def teacher_dir(path: Path, width: int, seed: int, *, broken: bool = False) -> str:
    """A seeded tiny open_clip model of feature width `width` as a local-dir: folder; `broken`: its
    image projection is NaN, as in a checkpoint saved after training diverged."""
    cfg = copy.deepcopy(TINY)
    cfg["embed_dim"] = width
    torch.manual_seed(seed)
    model = build_model(cfg).model
    if broken:
        with torch.no_grad():
            model.visual.proj.fill_(float("nan"))
    return save_local_dir(model, cfg, path)


@pytest.fixture(scope="module")
def teachers_yaml(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("teachers")
    wide, narrow = teacher_dir(root / "wide", 32, 0), teacher_dir(root / "narrow", 24, 1)
    path = root / "teachers.yaml"
    path.write_text(
        f"- {{name: wide, pretrained: '{wide}'}}\n"
        f"- {{name: narrow, pretrained: '{narrow}', modalities: {json.dumps(NARROW_MODALITIES)}}}\n"
    )
    return path


def run_teachers(*argv) -> None:
    teachers_main([str(a) for a in argv])


@pytest.fixture(scope="module")
def extracted(demo_out: Path, teachers_yaml: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("features") / "out"
    run_teachers("--teachers", teachers_yaml, "--shards", shards(demo_out), "--out", out, "--batch-size", "4")
    return out


def samples(path: Path) -> dict[str, dict[str, bytes]]:
    """Members of each key of a tar, in tar order."""
    found: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            found.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return found


def array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def test_every_sample_gets_each_teachers_features(demo_out: Path, extracted: Path):
    inputs = sorted((demo_out / "train").glob("*.tar"))
    assert sorted(p.name for p in extracted.glob("*.tar")) == [p.name for p in inputs]
    assert (extracted / "sizes.json").read_bytes() == (demo_out / "train" / "sizes.json").read_bytes()
    described = json.loads((extracted / "teachers.json").read_text())["teachers"]
    assert [(t["name"], t["width"], t["modalities"]) for t in described] == [
        ("wide", 32, None),
        ("narrow", 24, NARROW_MODALITIES),
    ]
    assert (
        described[0]["preprocess"]["size"] == [32, 32] and described[0]["tokenizer"]["context_length"] == 32
    )
    assert not (extracted / "errors").exists()
    seen = set()
    for shard in inputs:
        before, after = samples(shard), samples(extracted / shard.name)
        assert list(after) == list(before)
        for key, members in before.items():
            out = after[key]
            assert {ext: out[ext] for ext in members if ext != "json"} == {
                ext: data for ext, data in members.items() if ext != "json"
            }
            meta, new = json.loads(members["json"]), json.loads(out["json"])
            expected = ["wide", "narrow"] if meta["modality"] in NARROW_MODALITIES else ["wide"]
            assert list(new) == [*meta, "available_teachers"] and new["available_teachers"] == expected
            assert {k: v for k, v in new.items() if k != "available_teachers"} == meta
            assert set(out) - set(members) == {f"{t}.{w}.npy" for t in expected for w in ("img", "txt")}
            for name, width in (("wide", 32), ("narrow", 24)):
                if name in expected:
                    image, text = array(out[f"{name}.img.npy"]), array(out[f"{name}.txt.npy"])
                    assert image.dtype == text.dtype == np.float16
                    assert image.shape == (width,) and text.shape == (len(meta["captions"]), width)
                    assert np.allclose(np.linalg.norm(image.astype(np.float32)), 1, atol=1e-2)
            seen.add(meta["modality"])
    assert {"mri", "ct"} <= seen and seen - {"mri", "ct"}  # both kinds of sample were there


def test_distill_trains_on_the_features_with_widths_from_teachers_json(extracted: Path, tmp_path: Path):
    """No --teachers and no --teacher-dim: both from the teachers.json beside the shards."""
    out = tmp_path / "distill"
    data = str(extracted / "unimed-{000000..000004}.tar")
    options = ["--loss", "distill", "--batch-size", "8", "--steps", "20", "--lr", "2e-3", "--warmup", "2"]
    train(tiny_argv(tmp_path, data, out, *options, "--wd", "0.01", "--seed", "0"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and all(r["fd"] > 0 and r["cross"] > 0 for r in rows)
    first, last = (sum(r["loss"] for r in part) / 5 for part in (rows[:5], rows[-5:]))
    assert last < first * 0.95, (first, last)
    saved = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    assert saved["config"]["teachers"] == ["wide", "narrow"]
    assert saved["extras"]["teacher_proj.narrow.weight"].shape == (32, 24)  # wide is 32: no projection


def many_shards(demo_out: Path, folder: Path, copies: int) -> str:
    """`copies` shards, shard i a copy of demo shard i % 5: enough that a run cannot finish in the
    moment between its first shard appearing and the kill."""
    demo = sorted((demo_out / "train").glob("*.tar"))
    folder.mkdir()
    sizes = {}
    for i in range(copies):
        shutil.copyfile(demo[i % len(demo)], folder / f"unimed-{i:06d}.tar")
        sizes[f"unimed-{i:06d}.tar"] = len(samples(demo[i % len(demo)]))
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return str(folder / f"unimed-{{000000..{copies - 1:06d}}}.tar")


def test_a_killed_run_resumes_to_the_same_shards(demo_out: Path, teachers_yaml, extracted, tmp_path):
    pattern, out = many_shards(demo_out, tmp_path / "in", SHARDS), tmp_path / "out"
    argv = ["--teachers", teachers_yaml, "--shards", pattern, "--out", out, "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "unimed_train.teachers", *map(str, argv)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE)
    while not (out / "unimed-000000.tar").exists():
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    finished = sorted(p.name for p in out.glob("*.tar"))
    assert 1 <= len(finished) < SHARDS, finished
    run_teachers(*argv)
    for i in range(SHARDS):
        assert (out / f"unimed-{i:06d}.tar").read_bytes() == (
            extracted / f"unimed-{i % 5:06d}.tar"
        ).read_bytes(), i
    assert not list(out.glob(".*.tmp")) and (out / "teachers.json").is_file()


def test_two_torchrun_ranks_split_the_shards_and_write_the_same_bytes(
    demo_out, teachers_yaml, extracted, tmp_path
):
    """Rank r takes shards [r::2]; rank 0 writes teachers.json and sizes.json."""

    out = tmp_path / "out"
    argv = ["--teachers", teachers_yaml, "--shards", shards(demo_out), "--out", out, "--batch-size", "4"]
    command = torchrun("unimed_train.teachers", *argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for rank, names in ((0, ("000000", "000002", "000004")), (1, ("000001", "000003"))):
        for name in names:
            assert f"rank {rank}/2: unimed-{name}.tar: " in finished.stderr
    for shard in [*extracted.glob("*.tar"), extracted / "teachers.json", extracted / "sizes.json"]:
        assert (out / shard.name).read_bytes() == shard.read_bytes(), shard.name
    assert "35 samples in " in finished.stderr and "on 2 rank(s)" in finished.stderr


def test_a_failing_teacher_is_an_error_row_and_the_sample_keeps_the_others(demo_out, teachers_yaml, tmp_path):
    """A teacher giving NaN features (on every sample) and a corrupt image (for every teacher); the
    third teacher is one of our trainer's checkpoints."""
    from unimed_data.wds_tar import TarWriter, add_sample

    folder = tmp_path / "in"
    folder.mkdir()
    demo = samples(demo_out / "train" / "unimed-000000.tar")
    corrupt = next(iter(demo))
    with TarWriter(folder / "one.tar") as tar:
        for key, members in demo.items():
            add_sample(tar, key, {**members, "jpg": b"not an image"} if key == corrupt else members)
    broken = teacher_dir(tmp_path / "broken", 16, 2, broken=True)
    ours = tiny_checkpoint(tmp_path / "run" / "latest.pt")
    wide = next(line for line in teachers_yaml.read_text().splitlines() if "name: wide" in line)
    config = tmp_path / "teachers.yaml"
    config.write_text(
        f"{wide}\n- {{name: broken, pretrained: '{broken}'}}\n- {{name: ours, pretrained: '{ours}'}}\n"
    )
    out = tmp_path / "out"
    run_teachers("--teachers", config, "--shards", folder / "one.tar", "--out", out, "--batch-size", "3")
    rows = [json.loads(line) for line in (out / "errors" / "one.jsonl").read_text().splitlines()]
    assert {r["shard"] for r in rows} == {"one.tar"}
    reasons = {(r["key"], r["teacher"]): r["reason"] for r in rows}
    assert len(reasons) == len(rows) == len(demo) + 2  # broken on every sample, the other two on one
    assert all(reasons[(corrupt, t)].startswith("image: ") for t in ("wide", "broken", "ours"))
    assert all(reasons[(key, "broken")] == "non-finite features" for key in demo if key != corrupt)
    for key, members in samples(out / "one.tar").items():
        kept = [] if key == corrupt else ["wide", "ours"]
        assert json.loads(members["json"])["available_teachers"] == kept
        assert {m for m in members if m.endswith(".npy")} == {
            f"{t}.{w}.npy" for t in kept for w in ("img", "txt")
        }


def test_a_shard_that_is_no_tar_is_one_error_line(teachers_yaml, tmp_path, capsys):
    (tmp_path / "bad.tar").write_bytes(b"not a tar")
    with pytest.raises(SystemExit) as stopped:
        run_teachers("--teachers", teachers_yaml, "--shards", tmp_path / "bad.tar", "--out", tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and err[-1].startswith(
        f"error: {tmp_path / 'bad.tar'}: cannot read this shard"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "teachers.yaml: cannot read (No such file or directory)"),
        ("name: a\n", "teachers.yaml: expected a list of {name, model, pretrained, modalities}"),
        (
            "- {name: Big.One, model: ViT-B-16}\n",
            "teachers.yaml: teacher 1: name 'Big.One': a teacher name is",
        ),
        ("- {name: a, model: ViT-B-16, weights: x}\n", "teachers.yaml: teacher 1: unknown field(s) weights"),
        ("- {name: a}\n", "teachers.yaml: teacher a: give model, pretrained or both"),
        (
            "- {name: a, model: m, modalities: []}\n",
            "teachers.yaml: teacher a: modalities: expected a non-empty",
        ),
        ("- {name: a, model: m}\n- {name: a, model: n}\n", "teachers.yaml: teacher name(s) used twice: a"),
        ("- {name: a, model: no-such-model}\n", "teachers.yaml: teacher a: unknown open_clip model"),
    ],
)
def test_a_bad_teachers_yaml_is_one_error_line(demo_out, tmp_path, capsys, text, message):
    config = tmp_path / "teachers.yaml"
    if text is not None:
        config.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        run_teachers("--teachers", config, "--shards", shards(demo_out), "--out", tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert message in err[0] and str(config) in err[0]


def test_no_shards_is_one_error_line(tmp_path, teachers_yaml, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_teachers(
            "--teachers", teachers_yaml, "--shards", tmp_path / "x-{0..3}.tar", "--out", tmp_path / "o"
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and err == [
        f"error: 4 of the 4 shards of {tmp_path}/x-{{0..3}}.tar do not exist: "
        f"{tmp_path}/x-0.tar, {tmp_path}/x-1.tar, {tmp_path}/x-2.tar, ..."
    ]


def test_the_mmkd_recipes_are_training_configs_of_the_two_stages(extracted: Path):
    from unimed_train.config import parse_config

    from unimed_data.config import recipe_path

    recipes = REPO / "recipes" / "train"
    data = str(extracted / "unimed-{000000..000004}.tar")
    stage1 = parse_config(["--config", str(recipes / "mmkd-stage1.yaml"), "--train-data", data])
    stage2 = parse_config(["--config", str(recipes / "mmkd-stage2.yaml"), "--train-data", data])
    assert (stage1.loss, stage2.loss) == ("clip", "distill")
    assert stage2.pretrained == f"{stage1.out}/checkpoints/latest.pt"
    assert (stage2.model, stage2.text_encoder) == (stage1.model, stage1.text_encoder)
    assert stage2.teachers == ["wide", "narrow"] and stage2.teacher_dims == {"wide": 32, "narrow": 24}
    with pytest.raises(Exception, match="no such recipe"):
        recipe_path("train")  # the training configs' folder is no build recipe
