"""The ``tracks`` table (V3): how far each track's ``.part`` file has been assembled.

``assembled_bytes`` is the length of the ``.part`` file after ``assembled_seq`` chunks;
anything beyond it is a half-done append the assembler cuts off. An advance names the
position it starts from, so two appenders can never both move one track.
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

from ...objects.errors import IllegalTransition
from ...objects.results import NewGap, TrackAssembly
from .. import sql_statements as sql
from ..database import Database, fetch_in
from .gaps import gap_params

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
        self,
        meeting_id: str,
        user_id: int,
        *,
        from_seq: int,
        to_seq: int,
        bytes_: int,
        frames: int,
        gaps: Sequence[NewGap] = (),
        filled: Sequence[int] = (),
    ) -> None:
        """Record an append to a track's file; refuses if someone else moved it meanwhile.

        ``gaps`` are the windows of this append that hold silence in place of recorded
        audio: they are written in the same transaction, so the file never holds a
        silence the database does not name. ``filled`` are windows recorded as gaps whose
        chunk was done in time after all: their gaps go.
        """
        params = {
            "meeting_id": meeting_id,
            "user_id": user_id,
            "from_seq": from_seq,
            "to_seq": to_seq,
            "bytes": bytes_,
            "frames": frames,
        }
        async with self._lock, self._immediate(self.conn) as conn:
            if not await fetch_in(conn, sql.TRACKS_ADVANCE, params):
                raise IllegalTransition(
                    f"Track {user_id} of meeting {meeting_id} is no longer at chunk {from_seq}."
                )
            for gap in gaps:
                await fetch_in(conn, sql.GAPS_INSERT, gap_params(meeting_id, gap))
            if filled:
                await fetch_in(conn, sql.GAPS_DELETE_SEQS, {"meeting_id": meeting_id, "user_id": user_id,
                                                            "seqs": json.dumps(sorted(filled))})

    async def erase_user_tracks(self, user_id: int) -> list[str]:
        """Forget a user's track assembly rows in unfinished meetings; returns those meetings.

        Erasure: the ``.part`` files these rows describe hold the user's voice and are
        removed by the caller. Finished meetings' files are ``recordings`` rows instead.
        """
        rows = await self._fetch(sql.TRACKS_DELETE_FOR_USER_UNFINISHED, {"user_id": user_id})
        return sorted({str(r[0]) for r in rows})
