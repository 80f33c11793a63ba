"""Removing recordings: rows first, then files.

A crash between the two steps then leaves an orphan file for the cleanup job, never a
row pointing at nothing. File removal runs in a thread: a meeting can have thousands
of chunk files and the event loop must keep serving voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..objects.records import Recording
from ..store import SqlRecordingService

__all__ = ["delete_meeting", "delete_recording_files", "disk_usage", "erase_users", "remove_temp_files"]


async def delete_recording_files(recordings: Sequence[Recording]) -> int:
    """Remove the files of recordings whose rows are already gone; returns how many."""

    def remove() -> int:
        n = 0
        for r in recordings:
            with contextlib.suppress(FileNotFoundError):
                os.remove(r.path)
                n += 1
        return n

    return await asyncio.to_thread(remove)


def remove_temp_files(temps: Sequence[Any], folder: Optional[Path] = None) -> None:
    """Chunk files (PCM and MP3) of temp rows, and their meeting folder if it empties."""
    for t in temps:
        for path in (t.pcm_path, t.mp3_path):
            if path:
                with contextlib.suppress(OSError):
                    os.remove(path)
    if folder is not None:
        with contextlib.suppress(OSError):
            folder.rmdir()


async def delete_meeting(store: SqlRecordingService, data_dir: Path, guild_id: int, meeting_id: str) -> int:
    """A meeting, its recordings and chunks (``NotFound`` outside ``guild_id``)."""
    await store.get_meeting(meeting_id, guild_id=guild_id)
    recs = await store.recordings_for_meeting(meeting_id)
    temps = await store.get_temp_recordings_for_meeting(meeting_id)
    await store.delete_meeting(meeting_id)
    removed = await delete_recording_files(recs)
    await asyncio.to_thread(remove_temp_files, temps, data_dir / "chunks" / meeting_id)
    return removed


async def erase_users(store: SqlRecordingService, user_ids: Iterable[int]) -> None:
    """Each user's per-user recordings and temp chunks, rows and files (mixes stay)."""
    for user_id in user_ids:
        recs, temps = await store.user_data(user_id)
        await store.delete_user_rows(user_id)
        await delete_recording_files(recs)
        await asyncio.to_thread(remove_temp_files, temps)


def disk_usage(folder: Path) -> int:
    """Bytes in one folder's files (a live meeting's chunks); 0 if it does not exist."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                total += entry.stat().st_size
    return total
