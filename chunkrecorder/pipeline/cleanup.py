"""Retention and the janitor: old recordings, stale temp rows, leftover files.

The one implementation of retention: ``Recorder.cleanup`` runs it when its owner asks
(the cog's hourly task with each guild's setting, a test, the harness); nothing here
schedules itself.

It obeys the invariant (``docs/architecture.md``): audio that reached disk is removed
only when a committed row already holds it elsewhere, an admin deleted it, an erasure
covers it, or the retention of a recording the database knows has passed. So:

* a temp row (and its files) goes only once its meeting is PROMOTED (a recording holds
  its audio) and it is older than the TTL, and never a gap's chunk (kept for a repair);
  an unfinished or FAILED meeting keeps every chunk, whatever its age;
* a recording goes when its guild's retention has passed, with its track's leftover
  chunks (``RecordingsTable.remove_recording``);
* a file no row points at goes only if its meeting is PROMOTED (its audio is in the
  recordings; the file is a deletion a crash interrupted) and it is older than the
  TTL, or if an admin deleted its meeting or an erasure covers it (``removals``);
* a file of a meeting the database does not know is never deleted: it is counted
  (``UnknownFiles``), and the recovery adopts it back where it can.

Rows go before files everywhere, so a crash in between leaves a leftover file for the
next run, never a row pointing at nothing.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Mapping, Union

from ..objects.errors import NotFound
from ..objects.records import MeetingStatus, Recording, TempRecording
from ..objects.results import CleanupReport, UnknownFiles
from ..store.service import Removals, SqlRecordingService
from .blocking import run_blocking
from .paths import TMP_SUFFIX, Layout, remove_files

__all__ = ["CleanupReport", "Cleaner", "Retention", "chunk_files"]

log = logging.getLogger("red.chunkrecorder.pipeline.cleanup")

#: Days recordings are kept: one number for every guild, or per guild id (absent or 0 = keep).
Retention = Union[Mapping[int, int], int]

#: Meetings whose files are finished with.
_DONE = (MeetingStatus.PROMOTED,)

_DAY_S = 86_400.0


class Cleaner:
    def __init__(self, store: SqlRecordingService, layout: Layout) -> None:
        self._store = store
        self._layout = layout

    async def run(self, *, temp_ttl_s: float, retention_days: Retention = 0) -> CleanupReport:
        """Stale temp rows and files, recordings past their guild's retention, orphaned files."""
        days_of = _retention(retention_days)
        if temp_ttl_s < 0:
            raise ValueError("The TTL and the retention must not be negative.")
        store = self._store
        rows_deleted = files = freed = recs = 0

        stale = await store.stale_temp_recordings(temp_ttl_s)
        if stale:
            rows_deleted = await store.delete_temp_recordings(ids=[r.id for r in stale])
            n, b = await run_blocking(remove_files, [p for r in stale for p in (r.pcm_path, r.mp3_path)])
            files, freed = files + n, freed + b

        expired = await self._expired(days_of)
        gone: list[Recording] = []
        gone_files: list[str] = []
        for rec in expired:
            try:
                removed, chunks = await store.remove_recording(rec.id)
            except NotFound:
                continue  # deleted meanwhile (an admin, an erasure)
            recs += 1
            gone.append(removed)
            gone_files += chunk_files(chunks)  # its gaps' kept chunks
        if gone:
            n, b = await run_blocking(remove_files, [*self._layout.with_derived(r.path for r in gone), *gone_files])
            files, freed = files + n, freed + b
            # a meeting's label track (its notes) goes with its last recording
            emptied = [m for m in {r.meeting_id for r in gone} if not await store.recordings_for_meeting(m)]
            n, b = await run_blocking(remove_files, [self._layout.labels_path(m) for m in emptied])
            files, freed = files + n, freed + b

        finished = {m.id for m in await store.meetings_with_status(*_DONE)}
        existing = await store.all_meeting_ids()
        known = await store.known_paths()
        removals = await store.removals()
        cutoff = time.time() - temp_ttl_s
        n_files, n_bytes, unknown = await run_blocking(self._sweep, finished, existing, known, removals, cutoff)
        files += n_files
        freed += n_bytes
        report = CleanupReport(rows_deleted, files, recs, freed, deleted=tuple(gone), unknown=unknown)
        if rows_deleted or files or recs:
            log.info("cleanup: %s", report)
        if unknown:
            log.warning("%d file(s) (%d bytes) in %s belong to no meeting the database knows; they are kept",
                        unknown.files, unknown.bytes, self._layout.data_dir)
        return report

    async def _expired(self, days_of: Mapping[int, int] | int) -> list[Recording]:
        """Recordings older than their guild's retention (one query at the shortest)."""
        if isinstance(days_of, int):
            if days_of <= 0:
                return []
            return await self._store.recordings_older_than(days_of * _DAY_S)
        kept = {g: d for g, d in days_of.items() if d > 0}
        if not kept:
            return []
        now = time.time()
        candidates = await self._store.recordings_older_than(min(kept.values()) * _DAY_S)
        return [
            r for r in candidates
            if r.guild_id in kept and r.created_at < now - kept[r.guild_id] * _DAY_S
        ]

    def _sweep(
        self, finished: set[str], existing: set[str], known: set[str], removals: Removals, cutoff: float
    ) -> tuple[int, int, UnknownFiles]:
        """Leftover files, and the count of unknown ones (worker thread); see the module docstring."""
        doomed: list[Path] = []
        unknown_files = unknown_bytes = 0
        unknown_meetings: set[str] = set()
        for meeting_id, user_id, path in self._layout.audio_files():
            if str(path) in known:
                continue
            if meeting_id in existing:
                if meeting_id in finished and _mtime(path) <= cutoff:
                    doomed.append(path)  # a PROMOTED meeting's: its audio is in the recordings
                continue
            if removals.covers(meeting_id, user_id, _mtime(path)):
                doomed.append(path)  # an admin's deletion or an erasure a crash interrupted
                continue
            unknown_files += 1
            unknown_bytes += _size(path)
            unknown_meetings.add(meeting_id)
        # what is not audio: half-written temp files of finished meetings, deleted meetings' manifests
        for folder in _entries(self._layout.chunks_dir):
            if folder.name in finished:
                doomed += [p for p in _entries(folder) if p.name.endswith(TMP_SUFFIX) and _mtime(p) <= cutoff]
        doomed += [self._layout.manifest_path(m) for m in removals.meetings if m not in existing]
        n, b = remove_files(doomed)
        for folder in _entries(self._layout.chunks_dir):
            if folder.name in finished or folder.name in removals.meetings:
                try:
                    folder.rmdir()  # empty now
                except OSError:
                    pass
        return n, b, UnknownFiles(unknown_files, unknown_bytes, tuple(sorted(unknown_meetings)))


def _retention(days: Retention) -> Mapping[int, int] | int:
    """Check the owner's retention argument: whole days, none negative."""
    values = [days] if isinstance(days, int) else list(days.values())
    for d in values:
        if isinstance(d, bool) or not isinstance(d, int):
            raise ValueError(f"Retention is a whole number of days, not {d!r}.")
        if d < 0:
            raise ValueError("The TTL and the retention must not be negative.")
    return days


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("inf")


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def chunk_files(temps: list[TempRecording]) -> list[str]:
    """Every file a chunk row may have: its PCM, and its MP3 even if the row has not
    recorded it yet (an encode that finished while the rows were being deleted)."""
    out: list[str] = []
    for t in temps:
        out += [t.pcm_path, str(Path(t.pcm_path).with_suffix(".mp3")), str(Path(t.pcm_path).with_suffix(".flac"))]
        if t.mp3_path:
            out.append(t.mp3_path)
    return out
