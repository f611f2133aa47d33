"""Safe extraction: malicious archives are refused with nothing written outside the target."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from unimed_data.download.extract import ExtractError, extract_archive, marker_path


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode="w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _info(name, type_=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    return info


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def box(tmp_path):
    """(archive folder, target folder); the whole tmp_path is compared before/after."""
    (tmp_path / "arch").mkdir()
    return tmp_path / "arch", tmp_path / "sandbox" / "target"


MALICIOUS_TAR = {
    "traversal": [(_info("ok.txt"), b"ok"), (_info("../evil"), b"x")],
    "nested_traversal": [(_info("a/../../evil"), b"x")],
    "absolute": [(_info("/tmp/evil-unimed-test"), b"x")],
    "symlink": [(_info("link", tarfile.SYMTYPE, "../../.."), None), (_info("link/evil"), b"x")],
    "hardlink": [(_info("hl", tarfile.LNKTYPE, "/etc/passwd"), None)],
    "chardev": [(_info("dev", tarfile.CHRTYPE), None)],
    "fifo": [(_info("fifo", tarfile.FIFOTYPE), None)],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS_TAR))
def test_malicious_tar_refused(box, case):
    arch, target = box
    archive = _tar(arch / f"{case}.tar.gz", MALICIOUS_TAR[case])
    root = arch.parent
    before = _snapshot(root)
    with pytest.raises(ExtractError) as exc:
        extract_archive(archive, target)
    assert archive.name in str(exc.value)
    after = _snapshot(root)
    # only the (empty) target folder may have appeared
    assert after - before <= {"sandbox", "sandbox/target"}
    assert list(target.iterdir()) == []
    assert not Path("/tmp/evil-unimed-test").exists()


def test_zip_symlink_and_traversal_refused(box):
    arch, target = box
    zpath = arch / "link.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("escape")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../../etc")
    with pytest.raises(ExtractError, match=r"link\.zip.*'escape'.*symbolic link"):
        extract_archive(zpath, target)
    zpath2 = arch / "trav.zip"
    with zipfile.ZipFile(zpath2, "w") as zf:
        zf.writestr("good.txt", "fine")
        zf.writestr("../../evil.txt", "bad")
    with pytest.raises(ExtractError, match=r"trav\.zip.*evil\.txt"):
        extract_archive(zpath2, target)
    assert list(target.iterdir()) == []
    assert not (arch.parent / "evil.txt").exists()


def test_zip_bomb_ratio_refused(box):
    arch, target = box
    zpath = arch / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (4 << 20))
    with pytest.raises(ExtractError, match=r"bomb\.zip.*zeros\.bin.*bomb"):
        extract_archive(zpath, target, max_ratio=50, ratio_floor_bytes=1 << 20)
    assert list(target.iterdir()) == []


def test_actual_bytes_ratio_guard(box):
    """The per-archive ratio is also enforced on bytes written (declared checks set aside)."""
    arch, target = box
    archive = _tar(arch / "zeros.tar.xz", [(_info("z.bin"), b"\0" * (3 << 20))], mode="w:xz")
    from unimed_data.download import extract as ex

    orig = ex._check
    ex_check = lambda archive, members, *limits: members  # noqa: E731
    ex._check = ex_check
    try:
        with pytest.raises(ExtractError, match=r"zeros\.tar\.xz.*z\.bin.*extracted bytes exceed"):
            extract_archive(archive, target, max_ratio=20, ratio_floor_bytes=1 << 20)
    finally:
        ex._check = orig
    assert list(target.iterdir()) == []


def test_total_size_limit(box):
    arch, target = box
    archive = _tar(arch / "big.tar", [(_info("a"), os.urandom(800)), (_info("b"), os.urandom(800))], mode="w")
    with pytest.raises(ExtractError, match=r"big\.tar.*'b'.*limit of 1000"):
        extract_archive(archive, target, max_total_bytes=1000)
    assert list(target.iterdir()) == []


def test_normal_archives_extract_and_rerun_skips(box):
    arch, target = box
    tgz = _tar(
        arch / "set.tar.gz",
        [
            (_info("set/", tarfile.DIRTYPE), None),
            (_info("set/a/1.txt"), b"one"),
            (_info("./set/b.txt"), b"two"),
        ],
    )
    placed = extract_archive(tgz, target)
    assert placed == [target / "set"]
    assert (target / "set/a/1.txt").read_bytes() == b"one" and (target / "set/b.txt").read_bytes() == b"two"
    assert marker_path(tgz, target).is_file()
    (target / "set/b.txt").write_bytes(b"edited")
    assert extract_archive(tgz, target) == []  # marker: skipped
    assert (target / "set/b.txt").read_bytes() == b"edited"

    zpath = arch / "more.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/c.txt", "three")
        zf.writestr("top.csv", "a,b\n")
    assert extract_archive(zpath, target) == [target / "set", target / "top.csv"]
    assert (target / "set/c.txt").read_text() == "three" and (target / "set/a/1.txt").exists()
    names = {p.name for p in target.iterdir()}
    assert names == {"set", "top.csv", ".set.tar.gz.extracted", ".more.zip.extracted"}


def test_interrupted_staging_is_cleared(box):
    arch, target = box
    tgz = _tar(arch / "s.tar.bz2", [(_info("f.txt"), b"data")], mode="w:bz2")
    stale = target / ".s.tar.bz2.extracting"
    stale.mkdir(parents=True)
    (stale / "half.txt").write_text("partial")
    extract_archive(tgz, target)
    assert sorted(p.name for p in target.iterdir()) == [".s.tar.bz2.extracted", "f.txt"]


def test_refuses_writing_through_a_symlink_in_target(box, tmp_path):
    arch, target = box
    outside = tmp_path / "outside"
    outside.mkdir()
    target.mkdir(parents=True)
    (target / "set").symlink_to(outside)
    tgz = _tar(arch / "t.tar.gz", [(_info("set/x.txt"), b"x")])
    with pytest.raises(ExtractError, match="symbolic link"):
        extract_archive(tgz, target)
    assert list(outside.iterdir()) == []
