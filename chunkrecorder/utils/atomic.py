"""Write a file whole or not at all: a temp file beside it, then ``os.replace``.

Every file the cog writes over (chunk files, finished recordings, re-tagged copies,
manifests) must be seen by a reader, a crash or a recovery either as the old file or
as the whole new one. That takes the same few steps each time: write to a temp name in
the same folder, sync it, rename it over the destination (atomic on POSIX and
Windows), optionally sync the folder so the rename itself survives a power cut, and on
any failure (disk full, a bug, a cancellation) remove the temp file so nothing half
written is left for a later scan to mistake for a file. Written once here so that
every site does all of it the same way.

Blocking: call these from a thread or a worker process, never on the event loop.
Plain ``open`` is used on purpose, so that anything wrapping ``builtins.open`` (the
fault-injection tests) sees each write as before.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["TMP_SUFFIX", "copy_range", "fsync_dir", "replace_or_remove", "replacing", "writing"]

#: The default suffix of a temp file: never a complete file, always safe to delete.
TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def replacing(dst: Path, *, tmp_suffix: str = TMP_SUFFIX, sync_dir: bool = False) -> Iterator[Path]:
    """Yield the temp path beside ``dst``; when the body returns, it replaces ``dst``.

    The body writes the temp file (and syncs it, if it wants it durable: this helper
    does not, so a caller that never synced does not start paying for it). On any
    exception (``BaseException``: a cancellation too) the temp file is removed and the
    exception re-raised; ``dst`` is left as it was. With ``sync_dir`` the folder is
    synced after the rename.
    """
    tmp = dst.with_name(dst.name + tmp_suffix)
    try:
        yield tmp
    except BaseException:
        _discard(tmp)
        raise
    replace_or_remove(tmp, dst, sync_dir=sync_dir)


def replace_or_remove(tmp: Path, dst: Path, *, sync_dir: bool = False) -> None:
    """``os.replace(tmp, dst)`` (then the folder synced with ``sync_dir``); if the rename
    fails, ``tmp`` is removed and the error re-raised. For a temp made some other way
    than by writing it (a hard link), where :func:`replacing` does not fit."""
    try:
        os.replace(tmp, dst)
    except BaseException:
        _discard(tmp)
        raise
    if sync_dir:
        fsync_dir(dst.parent)


def _discard(tmp: Path) -> None:
    """Remove a temp file if it is there; a failure to remove it is not the error to report."""
    try:
        os.unlink(tmp)
    except OSError:
        pass


@contextmanager
def writing(dst: Path, *, tmp_suffix: str = TMP_SUFFIX, sync_dir: bool = False) -> Iterator[BinaryIO]:
    """:func:`replacing` with the temp file opened for the body (``"wb"``) and synced.

    After the body returns: flush, ``fsync``, close, then the rename (and the folder's
    sync with ``sync_dir``). A failure anywhere removes the temp file, as above.
    """
    with replacing(dst, tmp_suffix=tmp_suffix, sync_dir=sync_dir) as tmp:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def copy_range(src: BinaryIO, dst: BinaryIO, *, offset: int, length: int) -> int:
    """Copy ``length`` bytes of ``src`` from ``offset`` to ``dst``, 1 MiB at a time (a
    finished recording is copied whole when its header or tag is rewritten). Returns how
    many bytes ``src`` ended short of ``length`` (0: all copied); the caller raises its own error.
    """
    src.seek(offset)
    remaining = length
    while remaining:
        block = src.read(min(remaining, 1 << 20))
        if not block:
            break
        dst.write(block)
        remaining -= len(block)
    return remaining
