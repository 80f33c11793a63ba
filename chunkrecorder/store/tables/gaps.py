"""The ``gaps`` table (V5): windows of a track that are silent in its file though audio was recorded.

Assembly writes a gap in the same transaction as the track's advance over the silence
it stood in (``TracksTable.advance_track``), so a finished file never holds silence the
database does not name. The gap's chunk row (and its PCM) stays after promotion; a
repair splices the chunk into the file and deletes the gap and the chunk's row in one
transaction (:meth:`GapsTable.record_repair`).
"""

from __future__ import annotations

import json
from typing import Sequence

from ...objects.errors import NotFound
from ...objects.records import TempRecording
from ...objects.results import Gap, NewGap
from .. import sql_statements as sql
from ..database import Database, Params, fetch_in, wall_clock

__all__ = ["GapsTable", "gap_params"]


def gap_params(meeting_id: str, gap: NewGap) -> dict[str, object]:
    return {
        "meeting_id": meeting_id,
        "user_id": gap.user_id,
        "seq": gap.seq,
        "start_sample": gap.start_sample,
        "sample_count": gap.sample_count,
        "reason": gap.reason[:500],
        "created_at": wall_clock(),
    }


class GapsTable(Database):
    """Gaps of finished (and finishing) meetings, their chunks, and the repair's one transaction."""

    async def add_gaps(self, meeting_id: str, gaps: Sequence[NewGap]) -> None:
        """Record gaps (idempotent: a gap already recorded keeps its first reason)."""
        if gaps:
            await self._transaction([(sql.GAPS_INSERT, gap_params(meeting_id, g)) for g in gaps])

    async def gaps_for_meeting(self, meeting_id: str) -> list[Gap]:
        return await self._fetch_as(Gap, sql.GAPS_FETCH_FOR_MEETING, {"meeting_id": meeting_id})

    async def gap_count(self, meeting_id: str) -> int:
        rows = await self._fetch(sql.GAPS_COUNT_FOR_MEETING, {"meeting_id": meeting_id})
        return int(rows[0][0])

    async def gap_chunks(self, meeting_id: str) -> list[TempRecording]:
        """The chunk rows kept for a meeting's gaps."""
        return await self._fetch_as(TempRecording, sql.TEMP_FETCH_FOR_GAPS, {"meeting_id": meeting_id})

    async def requeue_gap_chunks(self, meeting_id: str) -> list[TempRecording]:
        """Make every gap chunk of the meeting that is not done due now (an admin's repair)."""
        return await self._fetch_as(TempRecording, sql.TEMP_REQUEUE_GAPS, {"meeting_id": meeting_id})

    async def reencode_chunk(self, chunk_id: str) -> None:
        """A done chunk whose MP3 is damaged but whose PCM is there: back to the queue."""
        await self._fetch(sql.TEMP_REENCODE, {"id": chunk_id})

    async def record_repair(
        self,
        meeting_id: str,
        *,
        recording_id: str,
        user_id: int,
        seqs: Sequence[int],
        sha256: str,
        size_bytes: int,
        chunk_ids: Sequence[str],
    ) -> None:
        """A track's file now holds these chunks: its row's new description, the gaps and
        the chunks' rows gone, all or nothing."""
        statements: list[tuple[str, Params]] = [
            (sql.RECORDINGS_SET_FILE, {"id": recording_id, "sha256": sha256, "size_bytes": int(size_bytes)}),
            (sql.GAPS_DELETE_SEQS, {"meeting_id": meeting_id, "user_id": user_id,
                                    "seqs": json.dumps(sorted(int(s) for s in seqs))}),
            (sql.TEMP_DELETE_BY_IDS, {"ids": json.dumps(list(chunk_ids))}),
        ]
        async with self._lock, self._immediate(self.conn) as conn:
            if not await fetch_in(conn, *statements[0]):
                raise NotFound(f"No recording `{recording_id}` here.")
            for statement, params in statements[1:]:
                await fetch_in(conn, statement, params)
