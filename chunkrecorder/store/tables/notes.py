"""The ``notes`` table (V4): markers taken during a meeting, and their erasure.

A note is a time on the meeting's timeline (``at_ms`` from t=0), its author and its
text. Notes go with their meeting (``ON DELETE CASCADE``) and with their author's
data (:meth:`NotesTable.delete_notes_of_author`).
"""

from __future__ import annotations

from ...objects.errors import NotFound
from ...objects.records import Note
from .. import sql_statements as sql
from ..database import Database, new_id, wall_clock

__all__ = ["NotesTable"]


class NotesTable(Database):
    """CRUD for ``notes``; and the one write a re-tagged recording needs."""

    async def add_note(self, meeting_id: str, *, at_ms: int, author_id: int, text: str) -> Note:
        params = {"id": new_id(), "meeting_id": meeting_id, "at_ms": int(at_ms), "author_id": int(author_id),
                  "text": text, "created_at": wall_clock()}
        rows = await self._fetch_as(Note, sql.NOTES_INSERT, params)
        return rows[0]

    async def notes_for_meeting(self, meeting_id: str) -> list[Note]:
        """A meeting's notes in time order."""
        return await self._fetch_as(Note, sql.NOTES_FETCH_FOR_MEETING, {"meeting_id": meeting_id})

    async def meetings_with_notes_of(self, author_id: int) -> list[str]:
        """The meetings ``author_id`` took a note in (what erasing their notes will re-tag)."""
        rows = await self._fetch(sql.NOTES_MEETINGS_OF_AUTHOR, {"author_id": author_id})
        return sorted({str(r[0]) for r in rows})

    async def delete_notes_of_author(self, author_id: int) -> list[str]:
        """Erase every note ``author_id`` took; returns the meetings that had one."""
        rows = await self._fetch(sql.NOTES_DELETE_FOR_AUTHOR, {"author_id": author_id})
        return sorted({str(r[0]) for r in rows})

    async def set_recording_file(self, recording_id: str, *, sha256: str, size_bytes: int) -> None:
        """A finished file was rewritten (its tag changed): record its new digest and size."""
        rows = await self._fetch(sql.RECORDINGS_SET_FILE,
                                 {"id": recording_id, "sha256": sha256, "size_bytes": int(size_bytes)})
        if not rows:
            raise NotFound(f"No recording `{recording_id}` here.")
