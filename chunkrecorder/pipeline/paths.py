"""Where the pipeline's files live, the one way it writes them and the one way it removes them.

Chunk file names carry everything recovery needs to rebuild a lost row: the track
(``<user>_<seq>``) names the row's key, the meeting is the directory, and the body
length is the file's length minus the fixed prime and tail. So a crash between a
chunk's write and its row insert never needs a sidecar file.

Removal has one implementation, :func:`remove_files` (and :func:`clear_folder` over
it), used by the transcoder, the assembler, promotion, recovery, cleanup, erasure and
deletion alike: each caller deletes rows first and then files, and reports what the
removal freed from the one count this module makes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, Optional, Sequence, Union

import numpy as np

from ..objects.records import MIX_USER_ID

__all__ = ["Layout", "ChunkName", "write_atomic", "write_all_atomic", "link_atomic", "fsync_dir", "remove_files", "clear_folder", "folder_size"]

log = logging.getLogger("red.chunkrecorder.pipeline.paths")

#: A file path as rows and callers hold them; ``None`` (a column not set yet) is skipped.
AnyPath = Union[Path, str, None]

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

    def meeting_recording_files(self, meeting_id: str) -> list[Path]:
        """Every file in ``recordings/`` of one meeting: finished, ``.part`` and ``.tmp`` (blocking).

        A scan rather than names built from the tracks, so that files whose rows are
        gone (an erased track, a crash between a row's delete and its file's) are found too.
        """
        prefix = f"recording_{meeting_id}_"
        try:
            with os.scandir(self.recordings_dir) as entries:
                return sorted(Path(e.path) for e in entries if e.name.startswith(prefix) and e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            return []


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


#: Threads that wait on fsyncs together: the file system commits its journal once for
#: all the fsyncs pending at that moment, so a window's chunk files (one per speaker)
#: become durable in about the time of one fsync instead of one after another.
_SYNC_THREADS = 8
_sync_lock = threading.Lock()
_sync_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: list[Path]) -> None:
    global _sync_pool
    if len(paths) < 2:
        for p in paths:
            _fsync_path(p)
        return
    with _sync_lock:
        if _sync_pool is None:
            _sync_pool = concurrent.futures.ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="chunkrecorder-fsync")
        pool = _sync_pool
    for f in [pool.submit(_fsync_path, p) for p in paths]:
        f.result()


def write_all_atomic(items: Sequence[tuple[Path, bytes | np.ndarray]]) -> None:
    """:func:`write_atomic` for many files of one folder: each whole or absent, all durable on return.

    Written to temp names, synced together (see ``_SYNC_THREADS``), renamed, and the
    folder synced once. On an error the temp files are removed and it re-raises;
    files already renamed are whole (as after an interrupted run of single writes).
    """
    if not items:
        return
    tmps: list[Path] = []
    try:
        for path, data in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + TMP_SUFFIX)
            tmps.append(tmp)
            with open(tmp, "wb") as fh:
                fh.write(np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data)
        _fsync_all(tmps)
        for (path, _), tmp in zip(items, tmps):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    for folder in {path.parent for path, _ in items}:
        fsync_dir(folder)


def link_atomic(source: Path, path: Path) -> None:
    """``path`` becomes another name of ``source``'s file (same bytes, no copy), atomically.

    Where the file system has no hard links, the bytes are copied instead (the same
    guarantee as :func:`write_atomic`, without the saving).
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.link(source, tmp)
    except OSError:
        write_atomic(path, Path(source).read_bytes())
        return
    try:
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def remove_files(paths: Iterable[AnyPath]) -> tuple[int, int]:
    """Remove every file that exists; returns ``(files removed, bytes freed)`` (blocking).

    A file already gone counts as nothing (removal is re-run after crashes). A file
    that cannot be removed (permissions, a directory in its place) is logged and
    skipped rather than raised: the rows are gone by now, so what is left is an orphan
    the cleanup job retries, and the other files must still go.
    """
    files = freed = 0
    for path in paths:
        if not path:
            continue
        try:
            size = os.path.getsize(path)
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)
            continue
        files += 1
        freed += size
    return files, freed


def clear_folder(folder: Path, *, keep: Collection[str] = ()) -> tuple[int, int]:
    """Every file in ``folder`` except the paths in ``keep``, then the folder if it is empty (blocking)."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0
    result = remove_files(folder / n for n in names if str(folder / n) not in keep)
    try:
        os.rmdir(folder)
    except OSError:
        pass  # something was kept, or arrived meanwhile: the cleanup job looks again
    return result


def folder_size(folder: Path) -> int:
    """Bytes in the files directly inside ``folder``; 0 if it does not exist (blocking)."""
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file():
                        total += entry.stat().st_size
                except OSError:
                    continue  # removed while we looked
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return total
