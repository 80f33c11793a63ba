"""The ``tracks`` table (V3): how far each track's ``.part`` file has been assembled.

``assembled_bytes`` is the length of the ``.part`` file after ``assembled_seq`` chunks;
anything beyond it is a half-done append the assembler cuts off. An advance names the
position it starts from, so two appenders can never both move one track.
"""

from __future__ import annotations

from typing import Iterable

from ...objects.errors import IllegalTransition
from ...objects.results import TrackAssembly
from .. import sql_statements as sql
from ..database import Database

__all__ = ["TracksTable"]


class TracksTable(Database):
    """CRUD for ``tracks``, and erasure of a user's tracks in unfinished meetings."""

    async def ensure_tracks(self, meeting_id: str, user_ids: Iterable[int]) -> None:
        """Create the tracks' assembly rows if missing (idempotent)."""
        ids = sorted(set(int(u) for u in user_ids))
        if not ids:
            return
        await self._transaction(
            [(sql.TRACKS_INSERT_MISSING, {"meeting_id": meeting_id, "user_id": u}) for u in ids]
        )

    async def tracks_for_meeting(self, meeting_id: str) -> list[TrackAssembly]:
        return await self._fetch_as(TrackAssembly, sql.TRACKS_FETCH_FOR_MEETING, {"meeting_id": meeting_id})

    async def advance_track(
        self, meeting_id: str, user_id: int, *, from_seq: int, to_seq: int, bytes_: int, frames: int
    ) -> None:
        """Record an append to a track's file; refuses if someone else moved it meanwhile."""
        rows = await self._fetch(
            sql.TRACKS_ADVANCE,
            {
                "meeting_id": meeting_id,
                "user_id": user_id,
                "from_seq": from_seq,
                "to_seq": to_seq,
                "bytes": bytes_,
                "frames": frames,
            },
        )
        if not rows:
            raise IllegalTransition(
                f"Track {user_id} of meeting {meeting_id} is no longer at chunk {from_seq}."
            )

    async def erase_user_tracks(self, user_id: int) -> list[str]:
        """Forget a user's track assembly rows in unfinished meetings; returns those meetings.

        Erasure: the ``.part`` files these rows describe hold the user's voice and are
        removed by the caller. Finished meetings' files are ``recordings`` rows instead.
        """
        rows = await self._fetch(sql.TRACKS_DELETE_FOR_USER_UNFINISHED, {"user_id": user_id})
        return sorted({str(r[0]) for r in rows})
