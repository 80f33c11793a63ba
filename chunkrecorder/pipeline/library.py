"""What the recorder has made, read-only: meetings, their files and their chunks.

The cog's commands show meetings and recordings but must not import ``store`` (the
store is the pipeline's to change): they read through ``Recorder.library``, this small
view over the same store. Writes (deletion, erasure, promotion) are the ``Recorder``'s,
so that rows and files always change together.
"""

from __future__ import annotations

from typing import Optional

from ..objects.records import ChunkCounts, Meeting, Note, Recording
from ..store.service import SqlRecordingService

__all__ = ["Library"]


class Library:
    """Read queries for the cog's façade; ``NotFound`` when an id is not in the given guild."""

    def __init__(self, store: SqlRecordingService) -> None:
        self._store = store

    async def get_meeting(self, meeting_id: str, guild_id: Optional[int] = None) -> Meeting:
        """One meeting; with ``guild_id``, only if it belongs to that guild."""
        return await self._store.get_meeting(meeting_id, guild_id=guild_id)

    async def list_meetings(self, guild_id: int, limit: int = 10, offset: int = 0) -> tuple[list[Meeting], int]:
        """A page of the guild's meetings, newest first, and how many it has in all."""
        return await self._store.list_meetings(guild_id, limit=limit, offset=offset)

    async def recordings_for_meeting(self, meeting_id: str) -> list[Recording]:
        """A meeting's finished files: per speaker, then the mix."""
        return await self._store.recordings_for_meeting(meeting_id)

    async def get_recording(self, recording_id: str, guild_id: Optional[int] = None) -> Recording:
        """One finished file; with ``guild_id``, only if its meeting belongs to that guild."""
        return await self._store.get_recording(recording_id, guild_id=guild_id)

    async def chunk_counts(self, meeting_id: str) -> ChunkCounts:
        """A meeting's chunks by transcode status (what ``[p]record status`` shows)."""
        return await self._store.chunk_counts(meeting_id)

    async def notes(self, meeting_id: str) -> list[Note]:
        """A meeting's notes in time order (``[p]recordings info``, the label track)."""
        return await self._store.notes_for_meeting(meeting_id)
