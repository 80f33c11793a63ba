"""The background janitor: stale temp rows, orphaned files, and retention.

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
from dataclasses import dataclass
from pathlib import Path

from ..objects.records import MeetingStatus
from ..objects.results import CleanupReport
from ..store.service import NotFound, SqlRecordingService
from .blocking import run_blocking
from .paths import Layout, unlink_quiet

__all__ = ["CleanupReport", "Cleaner"]

log = logging.getLogger("red.chunkrecorder.pipeline.cleanup")

#: Meetings whose files are finished with.
_DONE = (MeetingStatus.PROMOTED,)


class Cleaner:
    def __init__(self, store: SqlRecordingService, layout: Layout) -> None:
        self._store = store
        self._layout = layout

    async def run(self, *, temp_ttl_s: float, retention_days: int) -> CleanupReport:
        if temp_ttl_s < 0 or retention_days < 0:
            raise ValueError("The TTL and the retention must not be negative.")
        store = self._store
        rows_deleted = files = freed = recs = 0

        stale = await store.stale_temp_recordings(temp_ttl_s)
        if stale:
            rows_deleted = await store.delete_temp_recordings(ids=[r.id for r in stale])
            for r in stale:
                for path in (r.pcm_path, r.mp3_path):
                    n = await run_blocking(_remove, path)
                    files += int(n > 0)
                    freed += max(0, n)

        if retention_days > 0:
            for rec in await store.recordings_older_than(retention_days * 86_400):
                try:
                    await store.delete_recording(rec.id)
                except NotFound:
                    continue
                recs += 1
                n = await run_blocking(_remove, rec.path)
                files += int(n > 0)
                freed += max(0, n)

        finished = {m.id for m in await store.meetings_with_status(*_DONE)}
        existing = await store.all_meeting_ids()
        known = await store.known_paths()
        cutoff = time.time() - temp_ttl_s
        n_files, n_bytes = await run_blocking(
            self._sweep, finished, existing, known, cutoff
        )
        files += n_files
        freed += n_bytes
        report = CleanupReport(rows_deleted, files, recs, freed)
        if rows_deleted or files or recs:
            log.info("cleanup: %s", report)
        return report

    def _sweep(self, finished: set[str], existing: set[str], known: set[str], cutoff: float) -> tuple[int, int]:
        """Orphaned chunk folders/files and recording files (worker thread)."""
        files = freed = 0

        def removable(meeting_id: str) -> bool:
            return meeting_id in finished or meeting_id not in existing

        chunks = self._layout.chunks_dir
        for folder in _entries(chunks):
            if not folder.is_dir() or not removable(folder.name):
                continue
            for path in _entries(folder):
                if str(path) in known or _mtime(path) > cutoff:
                    continue
                n = _remove(str(path))
                files += int(n > 0)
                freed += max(0, n)
            try:
                os.rmdir(folder)
            except OSError:
                pass
        for path in _entries(self._layout.recordings_dir):
            parsed = self._layout.parse_recording(path.name)
            if parsed is None or not removable(parsed[0]):
                continue
            if str(path) in known or _mtime(path) > cutoff:
                continue
            n = _remove(str(path))
            files += int(n > 0)
            freed += max(0, n)
        return files, freed


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def _remove(path: str | None) -> int:
    """Bytes freed, 0 if it was already gone, -1 if it could not be removed (logged)."""
    try:
        return unlink_quiet(path)
    except OSError as exc:
        log.warning("cleanup: could not remove %s: %s", path, exc)
        return -1
