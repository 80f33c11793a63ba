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
from ..utils.atomic import fsync_dir, replace_or_remove, writing

__all__ = ["Layout", "ChunkName", "write_atomic", "write_all_atomic", "link_atomic", "fsync_dir", "remove_files", "clear_folder", "folder_size"]

log = logging.getLogger("red.chunkrecorder.pipeline.paths")

#: A file path as rows and callers hold them; ``None`` (a column not set yet) is skipped.
AnyPath = Union[Path, str, None]

_CHUNK_RE = re.compile(r"^(\d+)_(\d+)\.(pcm|mp3|flac)$")
_RECORDING_RE = re.compile(r"^recording_([0-9a-f]{16})_(mix|\d+)\.(?:mp3|flac)(\.part)?$")
#: Suffix of a file being written; never a complete file, always safe to delete.
TMP_SUFFIX = ".tmp"
#: Suffix of a track being assembled.
PART_SUFFIX = ".part"
#: Suffix of a recording's compact (Ogg Opus) copy.
COMPACT_SUFFIX = ".opus"
#: Suffix of a FLAC recording's MP3 for quick listening (``[p]recordings get <id> mp3``).
#: Not a recording name (the regex above does not match it): a derived file, like the Opus copy.
LISTEN_SUFFIX = ".listen.mp3"
#: The file extension of each archive format (``MeetingSettings.archive``): chunk bodies and recordings.
ARCHIVE_EXT = {"mp3": "mp3", "flac": "flac"}


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
        #: one small JSON per meeting (``manifest.py``): what a lost database knew of it
        self.manifests_dir = self.data_dir / "meetings"

    def manifest_path(self, meeting_id: str) -> Path:
        return self.manifests_dir / f"{meeting_id}.json"

    def meeting_dir(self, meeting_id: str) -> Path:
        return self.chunks_dir / meeting_id

    def pcm_path(self, meeting_id: str, user_id: int, seq: int) -> Path:
        return self.meeting_dir(meeting_id) / f"{user_id}_{seq}.pcm"

    def mp3_path(self, meeting_id: str, user_id: int, seq: int, archive: str = "mp3") -> Path:
        """A chunk's encoded body: ``.mp3``, or ``.flac`` in a FLAC meeting."""
        return self.meeting_dir(meeting_id) / f"{user_id}_{seq}.{ARCHIVE_EXT[archive]}"

    @staticmethod
    def recording_name(meeting_id: str, user_id: int, archive: str = "mp3") -> str:
        who = "mix" if user_id == MIX_USER_ID else str(user_id)
        return f"recording_{meeting_id}_{who}.{ARCHIVE_EXT[archive]}"

    def recording_path(self, meeting_id: str, user_id: int, archive: str = "mp3") -> Path:
        return self.recordings_dir / self.recording_name(meeting_id, user_id, archive)

    def labels_path(self, meeting_id: str) -> Path:
        """The meeting's Audacity label track (its notes), beside its recordings; the
        ``recording_<meeting>_`` prefix makes it go wherever the meeting's files go."""
        return self.recordings_dir / f"recording_{meeting_id}_labels.txt"

    def part_path(self, meeting_id: str, user_id: int, archive: str = "mp3") -> Path:
        path = self.recording_path(meeting_id, user_id, archive)
        return path.with_name(path.name + PART_SUFFIX)

    @staticmethod
    def archive_of(path: AnyPath) -> str:
        """The archive format of a recording, ``.part`` or chunk body by its name: "flac" or "mp3"."""
        name = str(path or "")
        if name.endswith(PART_SUFFIX):
            name = name[: -len(PART_SUFFIX)]
        return "flac" if name.endswith(".flac") else "mp3"

    @staticmethod
    def listen_path(recording_path: AnyPath) -> Path:
        """The MP3 made from a FLAC recording for quick listening: beside it, ``.listen.mp3``."""
        path = Path(str(recording_path))
        return path.with_name(path.stem + LISTEN_SUFFIX)

    @staticmethod
    def compact_path(recording_path: AnyPath) -> Path:
        """The Opus copy of a recording (``pipeline/compact.py``): beside it, ``.opus``."""
        return Path(str(recording_path)).with_suffix(COMPACT_SUFFIX)

    @classmethod
    def derived_paths(cls, recording_path: AnyPath) -> list[Path]:
        """Files made from a recording that must go when it goes (its Opus copy, half-written or whole)."""
        if not recording_path:
            return []
        compact = cls.compact_path(recording_path)
        out = [compact, compact.with_name(compact.name + TMP_SUFFIX)]
        if cls.archive_of(recording_path) == "flac":
            listen = cls.listen_path(recording_path)
            out += [listen, listen.with_name(listen.name + TMP_SUFFIX)]
        return out

    @classmethod
    def with_derived(cls, recording_paths: Iterable[AnyPath]) -> list[AnyPath]:
        """Each recording path followed by its derived files: what removing a recording removes."""
        out: list[AnyPath] = []
        for path in recording_paths:
            out += [path, *cls.derived_paths(path)]
        return out

    @staticmethod
    def parse_chunk(name: str) -> Optional[ChunkName]:
        m = _CHUNK_RE.match(name)
        if not m:
            return None
        return ChunkName(int(m.group(1)), int(m.group(2)), m.group(3))

    @staticmethod
    def parse_recording(name: str) -> Optional[tuple[str, str]]:
        """``(meeting_id, who)`` of a recording or ``.part`` file name, else None."""
        m = _RECORDING_RE.match(name)
        return (m.group(1), m.group(2)) if m else None

    @staticmethod
    def recording_user(who: str) -> int:
        """The track's user id from a recording name's ``who`` (the mix is ``MIX_USER_ID``)."""
        return MIX_USER_ID if who == "mix" else int(who)

    def audio_files(self) -> list[tuple[str, int, Path]]:
        """Every chunk, ``.part`` and recording file in the data folder as ``(meeting, user, path)`` (blocking).

        What the invariant is about: the cleanup and the recovery account for each one.
        """
        out: list[tuple[str, int, Path]] = []
        for folder in _entries(self.chunks_dir):
            if not folder.is_dir():
                continue
            for path in _entries(folder):
                chunk = self.parse_chunk(path.name)
                if chunk is not None:
                    out.append((folder.name, chunk.user_id, path))
        for path in _entries(self.recordings_dir):
            parsed = self.parse_recording(path.name)
            if parsed is not None:
                out.append((parsed[0], self.recording_user(parsed[1]), path))
        return out

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


def _buffer(data: bytes | np.ndarray) -> bytes | memoryview:
    """The bytes to write, without copying an array (a 60 s window is ~6 MB per track)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).data.cast("B")
    return data


def write_atomic(path: Path, data: bytes | np.ndarray) -> None:
    """Temp file, fsync, rename, fsync the directory: the file is whole or absent.

    A failure (disk full, permission denied) removes the temp file and re-raises, so
    a failed write leaves nothing a later recovery could mistake for a chunk.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path, tmp_suffix=TMP_SUFFIX, sync_dir=True) as fh:
        fh.write(_buffer(data))


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
    # Not utils.atomic: the temp files are synced together, then renamed one by one.
    tmps: list[Path] = []
    try:
        for path, data in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + TMP_SUFFIX)
            tmps.append(tmp)
            with open(tmp, "wb") as fh:
                fh.write(_buffer(data))
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
    replace_or_remove(tmp, path, sync_dir=True)  # the temp is a hard link: not utils.atomic.replacing


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


def _entries(folder: Path) -> list[Path]:
    """The folder's entries, sorted; none if it does not exist (blocking)."""
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
