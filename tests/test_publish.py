"""`unimed-data publish`: a build's public files, checksummed, to a folder or to a real S3 API on
loopback (moto's server); resumable, never `work/`, never a secret in a message."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import run_cli, sha256sums
from tests.s3_server import SECRET


def test_a_folder_gets_every_public_file_with_checksums_and_nothing_of_work(build, tmp_path):
    dest = tmp_path / "published"
    result = run_cli("publish", build, f"file://{dest}")
    assert result.exit_code == 0, result.output
    listed = sha256sums((dest / "SHA256SUMS").read_text())
    sent = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert sent == sorted([*listed, "SHA256SUMS"])
    public = {"stats.json", "README.md", "errors.parquet", "duplicates.parquet", "train/sizes.json"}
    assert public <= set(listed)
    assert not any(name.startswith("work/") or name.endswith(".partial") for name in sent)
    for name, digest in listed.items():
        here, there = (hashlib.sha256((root / name).read_bytes()).hexdigest() for root in (build, dest))
        assert here == there == digest, name
    again = run_cli("publish", build, f"file://{dest}")
    assert f"0 files sent, {len(listed)} already there" in again.output


def test_a_dry_run_lists_and_sends_nothing(build, tmp_path):
    dest = tmp_path / "published"
    result = run_cli("publish", build, f"file://{dest}", "--dry-run")
    assert (
        result.exit_code == 0
        and "train/sizes.json" in result.output
        and "to publish to file:" in result.output
    )
    assert not dest.exists()


def test_a_destination_inside_the_build_or_a_folder_that_is_no_build_is_refused(build, tmp_path):
    inside = run_cli("publish", build, f"file://{build / 'copy'}")
    assert inside.exit_code == 2 and "lies inside the build" in inside.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a finished build" in run_cli("publish", empty, f"file://{tmp_path / 'x'}").output


def test_an_interrupted_s3_publish_resumes_with_only_the_missing_files(build, s3):
    first = run_cli("publish", build, "s3://corpus/unimed/v1")
    assert first.exit_code == 0, first.output
    # As if stopped midway on another machine: two objects never arrived, no local record.
    shutil.rmtree(build / "work" / "publish")
    s3.rm(["corpus/unimed/v1/train/sizes.json", "corpus/unimed/v1/stats.json"])
    again = run_cli("publish", build, "s3://corpus/unimed/v1")
    assert again.exit_code == 0, again.output
    listed = sha256sums(s3.cat("corpus/unimed/v1/SHA256SUMS").decode())
    assert f"2 files sent, {len(listed) - 2} already there" in again.output
    for name, digest in listed.items():
        assert hashlib.sha256(s3.cat(f"corpus/unimed/v1/{name}")).hexdigest() == digest, name
    assert SECRET not in first.output + again.output


def test_a_publish_killed_midway_resumes_sending_only_what_is_missing(build, s3, s3_server):
    s3_server.hold_after(4)  # SHA256SUMS and three files arrive; the next upload hangs
    command = [
        sys.executable,
        "-m",
        "unimed_data",
        "publish",
        str(build),
        "s3://corpus/unimed",
        "--workers",
        "1",
    ]
    stopped = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert s3_server.holding.wait(120), "the publish never reached its fifth upload"
    finally:
        stopped.kill()
        stopped.wait()
    s3_server.release()
    there = set(s3.find("corpus/unimed"))
    assert len(there) == 4 and "corpus/unimed/SHA256SUMS" in there
    s3_server.puts.clear()
    s3.invalidate_cache()
    again = run_cli("publish", build, "s3://corpus/unimed")
    assert again.exit_code == 0, again.output
    listed = sha256sums(s3.cat("corpus/unimed/SHA256SUMS").decode())
    missing = {f"corpus/unimed/{name}" for name in listed} - there
    assert set(s3_server.puts) == missing | {"corpus/unimed/SHA256SUMS"}
    assert f"{len(missing)} files sent, 3 already there" in again.output
    for name, digest in listed.items():
        assert hashlib.sha256(s3.cat(f"corpus/unimed/{name}")).hexdigest() == digest, name


def test_wrong_credentials_are_one_error_line_without_the_secret_and_nothing_arrives(build, s3, monkeypatch):
    from moto.core.authorization import enable_iam_authentication

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-NOT-A-KNOWN-KEY")
    with enable_iam_authentication():
        result = run_cli("publish", build, "s3://corpus/unimed")
    assert result.exit_code == 2
    assert result.output.startswith("error: s3://corpus/unimed: ") and result.output.count("\n") == 1
    assert "access refused" in result.output and "check the credentials" in result.output
    assert SECRET not in result.output
    assert s3.find("corpus") == []


def test_a_user_who_may_only_read_the_bucket_cannot_publish_and_leaves_nothing(build, s3, monkeypatch):
    import boto3
    from moto.core.authorization import enable_iam_authentication

    iam = boto3.client("iam")
    iam.create_user(UserName="reader")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    with enable_iam_authentication():
        result = run_cli("publish", build, "s3://corpus/unimed")
    assert result.exit_code == 2 and result.output.startswith("error: s3://corpus/unimed: ")
    assert "access refused" in result.output
    assert key["SecretAccessKey"] not in result.output
    assert s3.find("corpus") == []


def test_a_local_destination_that_cannot_be_written_is_one_error_line(build, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("publish", build, f"file://{blocker / 'corpus'}")
    assert result.exit_code == 2 and result.output.startswith(f"error: file://{blocker / 'corpus'}: ")
    assert result.output.count("\n") == 1 and blocker.read_text() == "not a folder"


def test_a_missing_bucket_is_one_error_line(build, s3):
    result = run_cli("publish", build, "s3://no-such-bucket/unimed")
    assert result.exit_code == 2
    assert "bucket no-such-bucket not found" in result.output and SECRET not in result.output


def test_the_trainer_reads_published_shards_and_their_sizes_straight_from_s3(build, tmp_path, s3):
    pytest.importorskip("open_clip", reason="needs the `train` extra")
    from unimed_train.data.spec import dataset_size, parse_spec
    from unimed_train.main import main

    from tests.tiny_models import tiny_argv

    assert run_cli("publish", build, "s3://corpus/unimed").exit_code == 0
    count = len(json.loads((build / "train" / "sizes.json").read_text()))
    remote = f"s3://corpus/unimed/train/unimed-{{000000..{count - 1:06d}}}.tar"
    local_sizes = json.loads((build / "train" / "sizes.json").read_text())
    assert dataset_size(parse_spec(remote)) == sum(local_sizes.values())
    out = tmp_path / "run"
    main(tiny_argv(tmp_path, remote, out, "--steps", "10", "--batch-size", "8", "--warmup", "2"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 11))


def test_a_secret_in_a_store_message_or_in_dest_is_never_shown(build, monkeypatch):
    from unimed_data.publish import _reason

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert SECRET not in _reason(RuntimeError(f"signature mismatch for {SECRET}"))
    assert "<AWS_SECRET_ACCESS_KEY>" in _reason(RuntimeError(f"signature mismatch for {SECRET}"))
    result = run_cli("publish", build, f"ftp://user:{SECRET}@127.0.0.1:9/corpus")
    assert result.exit_code == 2 and result.output.startswith("error: ftp://***@127.0.0.1:9/corpus: ")
    assert SECRET not in result.output and result.output.count("\n") == 1


def test_an_s3_upload_is_checked_against_the_sha256_the_store_keeps(build, s3):
    from unimed_data.publish import _s3_sha256

    assert run_cli("publish", build, "s3://corpus/unimed").exit_code == 0
    listed = sha256sums(s3.cat("corpus/unimed/SHA256SUMS").decode())
    assert _s3_sha256(s3, "corpus/unimed/stats.json") == listed["stats.json"]
    s3.pipe_file("corpus/unimed/stats.json", b"{}")  # replaced behind our back, without a checksum
    assert _s3_sha256(s3, "corpus/unimed/stats.json") is None


def test_the_first_failed_upload_stops_the_others(build, s3, s3_server):
    from unimed_data.publish import published_files

    s3_server.refuse_after(2)  # SHA256SUMS and one file arrive; the next upload is refused
    result = run_cli("publish", build, "s3://corpus/unimed", "--workers", "1")
    assert result.exit_code == 2 and result.output.startswith("error: s3://corpus/unimed: ")
    assert "access refused" in result.output
    # The failed upload, and at most the one the worker had already begun; not the other files.
    assert len(s3_server.puts) == 2 and 1 <= len(s3_server.refused) <= 2
    assert len(published_files(build)) > 2 + 2
