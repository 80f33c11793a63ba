"""One process owns a data folder: an OS lock held for the ``Recorder``'s whole life.

Two processes on one data folder take each other's meetings: the second one's start-up
recovery sees the first one's live meeting as a crash, marks it interrupted, promotes
what is on disk so far and strands the rest (reproduced in issue 8 with ``harness
recover`` beside a live ``harness simulate``). So ``Recorder.start`` takes this lock
before it reads anything, and ``Recorder.close`` lets it go; a second ``Recorder``, a
``python -m harness recover`` or a second bot on the same folder is refused in one
sentence naming the holder.

The lock is ``fcntl.flock`` on ``<data dir>/chunkrecorder.lock`` (``msvcrt.locking`` on
Windows). The operating system drops it when the holder dies, even by ``kill -9``, so
a crash never leaves the folder locked; the file's text (pid, host, since when) is only
there to name the holder, and is rewritten by each new holder. ``flock`` locks belong
to an open file, not to a process, so a second ``Recorder`` in the same process is
refused too; the descriptor is not inherited by the encoder processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..objects.errors import PipelineError

__all__ = ["DataFolderLock", "FolderInUse", "LockHolder", "LOCK_NAME"]

LOCK_NAME = "chunkrecorder.lock"

#: Where the Windows lock sits: one byte far past the holder's text, so reading the
#: text is never blocked by the lock.
_WIN_OFFSET = 1 << 30


class FolderInUse(PipelineError):
    """Another process (or another ``Recorder``) owns the data folder."""


@dataclass(frozen=True, slots=True)
class LockHolder:
    pid: int
    host: str
    since: float

    def describe(self) -> str:
        when = dt.datetime.fromtimestamp(self.since, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"process {self.pid} on {self.host} since {when}"

    @classmethod
    def parse(cls, text: str) -> Optional["LockHolder"]:
        try:
            raw = json.loads(text)
            return cls(pid=int(raw["pid"]), host=str(raw["host"]), since=float(raw["since"]))
        except (ValueError, KeyError, TypeError):
            return None


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting; False if someone holds it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


class DataFolderLock:
    """The lock of one data folder; ``acquire`` and ``release`` block (call them in a thread)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> Optional[LockHolder]:
        """Who wrote the lock file last (the holder, while it is held)."""
        try:
            return LockHolder.parse(self.path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return None

    def acquire(self) -> None:
        """Take the folder, or raise :class:`FolderInUse` naming who has it."""
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                holder = self.holder()
                who = holder.describe() if holder is not None else "another process"
                raise FolderInUse(
                    f"The data folder {self.data_dir} is in use by {who}, so stop that one first "
                    f"or give this one a folder of its own."
                )
            me = LockHolder(pid=os.getpid(), host=socket.gethostname(), since=time.time())
            text = json.dumps({"pid": me.pid, "host": me.host, "since": me.since}).encode()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, text)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        except OSError:
            pass  # closing the descriptor drops the lock anyway
        finally:
            os.close(fd)
