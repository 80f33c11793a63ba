"""The one "temp file beside it, then replace" helper: whole new file or the old one, no leftovers."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from chunkrecorder.utils.atomic import copy_range, replace_or_remove, replacing, writing

OLD = b"the old file, intact"
NEW = b"the whole new file" * 1000


@pytest.fixture
def dst(tmp_path: Path) -> Path:
    path = tmp_path / "track.mp3"
    path.write_bytes(OLD)
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writing_replaces_the_file_on_success(dst: Path) -> None:
    with writing(dst, sync_dir=True) as fh:
        fh.write(NEW)
        assert dst.read_bytes() == OLD  # nothing visible until the body is done
    assert dst.read_bytes() == NEW
    assert _listing(dst.parent) == ["track.mp3"]


def test_replacing_creates_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "new.flac"
    with replacing(target, tmp_suffix=".part") as tmp:
        assert tmp == tmp_path / "new.flac.part"
        tmp.write_bytes(NEW)
    assert target.read_bytes() == NEW
    assert _listing(tmp_path) == ["new.flac"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), ValueError("bug"),
                                   asyncio.CancelledError(), KeyboardInterrupt()])
def test_a_failure_in_the_body_leaves_the_old_file_and_no_temp(dst: Path, error: BaseException) -> None:
    with pytest.raises(type(error)):
        with writing(dst) as fh:
            fh.write(NEW[:5000])  # half written, then the failure
            raise error
    assert dst.read_bytes() == OLD
    assert _listing(dst.parent) == ["track.mp3"]


def test_a_failure_before_the_temp_exists_re_raises(dst: Path) -> None:
    with pytest.raises(RuntimeError):
        with replacing(dst):
            raise RuntimeError("before any write")
    assert dst.read_bytes() == OLD
    assert _listing(dst.parent) == ["track.mp3"]


def test_a_failed_rename_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "a_folder"  # a non-empty folder cannot be replaced by a file
    target.mkdir()
    (target / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        with writing(target) as fh:
            fh.write(NEW)
    assert _listing(tmp_path) == ["a_folder"]
    assert (target / "inside").read_bytes() == b"x"


def test_replace_or_remove_a_hard_linked_temp(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(NEW)
    tmp = tmp_path / "dst.tmp"
    os.link(source, tmp)
    replace_or_remove(tmp, tmp_path / "dst", sync_dir=True)
    assert (tmp_path / "dst").read_bytes() == NEW
    assert _listing(tmp_path) == ["dst", "source"]
    os.link(source, tmp)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        replace_or_remove(tmp, tmp_path / "full")
    assert _listing(tmp_path) == ["dst", "full", "source"]


def test_copy_range_copies_the_range_and_counts_what_is_missing() -> None:
    src = bytes(range(256)) * 10_000  # 2.5 MB: more than one block
    out = io.BytesIO()
    assert copy_range(io.BytesIO(src), out, offset=1000, length=len(src) - 2000) == 0
    assert out.getvalue() == src[1000:-1000]
    out = io.BytesIO()
    assert copy_range(io.BytesIO(src), out, offset=len(src) - 10, length=25) == 15
    assert out.getvalue() == src[-10:]
