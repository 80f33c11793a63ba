"""Where the pipeline's files live, and the one way it writes them.

Chunk file names carry everything recovery needs to rebuild a lost row: the track
(``<user>_<seq>``) names the row's key, the meeting is the directory, and the body
length is the file's length minus the fixed prime and tail. So a crash between a
chunk's write and its row insert never needs a sidecar file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..objects.records import MIX_USER_ID

__all__ = ["Layout", "ChunkName", "write_atomic", "fsync_dir"]

_CHUNK_RE = re.compile(r"^(\d+)_(\d+)\.(pcm|mp3)$")
#: Suffix of a file being written; never a complete file, always safe to delete.
TMP_SUFFIX = ".tmp"
#: Suffix of a track being assembled.
PART_SUFFIX = ".part"


@dataclass(frozen=True, slots=True)
class ChunkName:
    user_id: int
    seq: int
    ext: str


class Layout:
    """``chunks/<meeting>/<user>_<seq>.pcm|.mp3`` and ``recordings/recording_<meeting>_<user|mix>.mp3``."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.chunks_dir = self.data_dir / "chunks"
        self.recordings_dir = self.data_dir / "recordings"

    def meeting_dir(self, meeting_id: str) -> Path:
        return self.chunks_dir / meeting_id

    def pcm_path(self, meeting_id: str, user_id: int, seq: int) -> Path:
        return self.meeting_dir(meeting_id) / f"{user_id}_{seq}.pcm"

    def mp3_path(self, meeting_id: str, user_id: int, seq: int) -> Path:
        return self.meeting_dir(meeting_id) / f"{user_id}_{seq}.mp3"

    @staticmethod
    def recording_name(meeting_id: str, user_id: int) -> str:
        who = "mix" if user_id == MIX_USER_ID else str(user_id)
        return f"recording_{meeting_id}_{who}.mp3"

    def recording_path(self, meeting_id: str, user_id: int) -> Path:
        return self.recordings_dir / self.recording_name(meeting_id, user_id)

    def part_path(self, meeting_id: str, user_id: int) -> Path:
        path = self.recording_path(meeting_id, user_id)
        return path.with_name(path.name + PART_SUFFIX)

    @staticmethod
    def parse_chunk(name: str) -> Optional[ChunkName]:
        m = _CHUNK_RE.match(name)
        if not m:
            return None
        return ChunkName(int(m.group(1)), int(m.group(2)), m.group(3))

    @staticmethod
    def parse_recording(name: str) -> Optional[tuple[str, str]]:
        """``(meeting_id, who)`` of a recording or ``.part`` file name, else None."""
        m = re.match(r"^recording_([0-9a-f]{16})_(mix|\d+)\.mp3(\.part)?$", name)
        return (m.group(1), m.group(2)) if m else None


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


def write_atomic(path: Path, data: bytes | np.ndarray) -> None:
    """Temp file, fsync, rename, fsync the directory: the file is whole or absent.

    A failure (disk full, permission denied) removes the temp file and re-raises, so
    a failed write leaves nothing a later recovery could mistake for a chunk.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.tobytes() if isinstance(data, np.ndarray) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def unlink_quiet(path: Path | str | None) -> int:
    """Remove a file if present; returns the bytes freed (0 if it was not there)."""
    if not path:
        return 0
    try:
        size = os.path.getsize(path)
        os.unlink(path)
        return size
    except FileNotFoundError:
        return 0
