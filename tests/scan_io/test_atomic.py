"""atomic_write_path: the target holds either the old file or the complete new one."""

import os
import stat

import pytest

from scan_io.atomic import atomic_write_path


def test_success_replaces_target_with_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_write_path(target, suffix=".bin") as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".bin") and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert list(target.parent.iterdir()) == [target]


def test_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_no_overwrite_keeps_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "labels.nii.gz"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with atomic_write_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
            target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs"
    assert list(tmp_path.iterdir()) == [target]
