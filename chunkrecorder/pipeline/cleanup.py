"""Retention and the janitor: old recordings, stale temp rows, orphaned files.

The one implementation of retention: ``Recorder.cleanup`` runs it when its owner asks
(the cog's hourly task with each guild's setting, a test, the harness); nothing here
schedules itself.

Safety rule: nothing that belongs to an unfinished meeting (ACTIVE, STOPPING,
INTERRUPTED, FAILED) is ever touched, because recovery and promotion may still need
it (a chunk file without a row is adopted, not deleted). Only files of PROMOTED
meetings, or of meetings that no longer exist, and only when older than the TTL.
Rows go before files everywhere, so a crash in between leaves an orphaned file for
the next run, never a row pointing at nothing.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Mapping, Union

from ..objects.errors import NotFound
from ..objects.records import MeetingStatus, Recording
from ..objects.results import CleanupReport
from ..store.service import SqlRecordingService
from .blocking import run_blocking
from .paths import Layout, clear_folder, remove_files

__all__ = ["CleanupReport", "Cleaner", "Retention"]

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
        for rec in expired:
            try:
                gone.append(await store.delete_recording(rec.id))
            except NotFound:
                continue  # deleted meanwhile (an admin, an erasure)
        if gone:
            recs = len(gone)
            n, b = await run_blocking(remove_files, self._layout.with_derived(r.path for r in gone))
            files, freed = files + n, freed + b
            # a meeting's label track (its notes) goes with its last recording
            emptied = [m for m in {r.meeting_id for r in gone} if not await store.recordings_for_meeting(m)]
            n, b = await run_blocking(remove_files, [self._layout.labels_path(m) for m in emptied])
            files, freed = files + n, freed + b

        finished = {m.id for m in await store.meetings_with_status(*_DONE)}
        existing = await store.all_meeting_ids()
        known = await store.known_paths()
        cutoff = time.time() - temp_ttl_s
        n_files, n_bytes = await run_blocking(self._sweep, finished, existing, known, cutoff)
        files += n_files
        freed += n_bytes
        report = CleanupReport(rows_deleted, files, recs, freed, deleted=tuple(gone))
        if rows_deleted or files or recs:
            log.info("cleanup: %s", report)
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

    def _sweep(self, finished: set[str], existing: set[str], known: set[str], cutoff: float) -> tuple[int, int]:
        """Orphaned chunk folders/files and recording files (worker thread)."""
        files = freed = 0

        def removable(meeting_id: str) -> bool:
            return meeting_id in finished or meeting_id not in existing

        def old_orphan(path: Path) -> bool:
            return str(path) not in known and _mtime(path) <= cutoff

        for folder in _entries(self._layout.chunks_dir):
            if not folder.is_dir() or not removable(folder.name):
                continue
            young = {str(p) for p in _entries(folder) if not old_orphan(p)}
            n, b = clear_folder(folder, keep=young)
            files, freed = files + n, freed + b
        orphans = []
        for path in _entries(self._layout.recordings_dir):
            parsed = self._layout.parse_recording(path.name)
            if parsed is not None and removable(parsed[0]) and old_orphan(path):
                orphans.append(path)
        n, b = remove_files(orphans)
        return files + n, freed + b


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
