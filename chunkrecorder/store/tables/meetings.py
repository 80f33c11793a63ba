"""The ``meetings`` table: a meeting's lifecycle, its pages, and the pipeline's columns (V3).

Lifecycle moves are single ``UPDATE … WHERE status IN <allowed> RETURNING`` statements:
the check and the write are one atomic step, and an illegal move writes nothing.
"""

from __future__ import annotations

import json
from typing import Optional

import aiosqlite

from ...objects.errors import IllegalTransition, NotFound
from ...objects.records import Meeting, MeetingStatus, Strategy
from ...objects.results import MeetingPipeline
from .. import sql_statements as sql
from ..database import Database, fetch_in, new_id, wall_clock
from ..rows import row_to
from .removals import removal

__all__ = ["MeetingsTable", "MEETING_MOVES", "allowed_from", "read_meeting"]

#: Which meeting statuses may follow which. PROMOTED is final; FAILED and
#: INTERRUPTED may be promoted again by an admin.
MEETING_MOVES: dict[MeetingStatus, frozenset[MeetingStatus]] = {
    MeetingStatus.ACTIVE: frozenset(
        {MeetingStatus.STOPPING, MeetingStatus.INTERRUPTED, MeetingStatus.FAILED}
    ),
    MeetingStatus.STOPPING: frozenset(
        {MeetingStatus.PROMOTED, MeetingStatus.INTERRUPTED, MeetingStatus.FAILED}
    ),
    MeetingStatus.INTERRUPTED: frozenset(
        {MeetingStatus.STOPPING, MeetingStatus.PROMOTED, MeetingStatus.FAILED}
    ),
    MeetingStatus.FAILED: frozenset({MeetingStatus.STOPPING, MeetingStatus.INTERRUPTED}),
    MeetingStatus.PROMOTED: frozenset(),
}


def allowed_from(target: MeetingStatus) -> str:
    """The statuses a meeting may move to ``target`` from, as the JSON array ``MEETINGS_MOVE`` takes."""
    return json.dumps(sorted(s.value for s, moves in MEETING_MOVES.items() if target in moves))


async def read_meeting(conn: aiosqlite.Connection, meeting_id: str, *, guild_id: Optional[int] = None) -> Meeting:
    """A meeting on a connection the caller holds (also read inside promotion's transaction)."""
    rows = await fetch_in(conn, sql.MEETINGS_FETCH, {"id": meeting_id})
    meeting = row_to(Meeting, rows[0]) if rows else None
    if meeting is None or (guild_id is not None and meeting.guild_id != guild_id):
        raise NotFound(f"No meeting `{meeting_id}` here.")
    return meeting


class MeetingsTable(Database):
    """CRUD for ``meetings``, including the V3 pipeline columns (quality, audit, flushed windows)."""

    async def create_meeting(
        self,
        *,
        guild_id: int,
        channel_id: int,
        started_by: int,
        strategy: Strategy = Strategy.HYBRID,
        flush_interval_s: float = 10.0,
        sample_rate: int = 48_000,
        channels: int = 1,
        bitrate: int = 64_000,
    ) -> Meeting:
        (meeting,) = await self._fetch_as(
            Meeting,
            sql.MEETINGS_INSERT,
            {
                "id": new_id(),
                "guild_id": guild_id,
                "channel_id": channel_id,
                "started_by": started_by,
                "started_at": wall_clock(),
                "strategy": Strategy(strategy).value,
                "flush_interval_s": flush_interval_s,
                "sample_rate": sample_rate,
                "channels": channels,
                "bitrate": bitrate,
            },
        )
        return meeting

    async def get_meeting(self, meeting_id: str, *, guild_id: Optional[int] = None) -> Meeting:
        async with self._lock:
            return await read_meeting(self.conn, meeting_id, guild_id=guild_id)

    async def set_meeting_status(
        self,
        meeting_id: str,
        status: MeetingStatus,
        *,
        length_samples: Optional[int] = None,
        note: Optional[str] = None,
    ) -> Meeting:
        """Move a meeting forward; ``ended_at`` is stamped when it leaves ACTIVE."""
        status = MeetingStatus(status)
        moved = await self._fetch_as(
            Meeting,
            sql.MEETINGS_MOVE,
            {
                "id": meeting_id,
                "status": status.value,
                "now": wall_clock(),
                "length_samples": length_samples,
                "note": note,
                "allowed_from": allowed_from(status),
            },
        )
        if moved:
            return moved[0]
        current = await self.get_meeting(meeting_id)
        raise IllegalTransition(
            f"Meeting {meeting_id} is {current.status.value}; it cannot become {status.value}."
        )

    async def list_meetings(
        self, guild_id: int, *, limit: int = 10, offset: int = 0
    ) -> tuple[list[Meeting], int]:
        """A page of a guild's meetings, newest first, and the total count."""
        page = await self._fetch_as(
            Meeting, sql.MEETINGS_FETCH_PAGE_FOR_GUILD, {"guild_id": guild_id, "limit": limit, "offset": offset}
        )
        total = await self._fetch(sql.MEETINGS_COUNT_FOR_GUILD, {"guild_id": guild_id})
        return page, int(total[0][0])

    async def meetings_left_open(self) -> list[Meeting]:
        """Meetings a crash left ACTIVE or STOPPING: nobody is recording them now."""
        return await self._fetch_as(Meeting, sql.MEETINGS_FETCH_LEFT_OPEN)

    async def meetings_with_status(self, *statuses: MeetingStatus) -> list[Meeting]:
        wanted = json.dumps([MeetingStatus(s).value for s in statuses])
        return await self._fetch_as(Meeting, sql.MEETINGS_FETCH_WITH_STATUS, {"statuses": wanted})

    async def all_meeting_ids(self) -> set[str]:
        rows = await self._fetch(sql.MEETINGS_FETCH_ALL_IDS)
        return {str(r[0]) for r in rows}

    async def delete_meeting(self, meeting_id: str) -> None:
        """Remove a meeting and (by cascade) its temp, persistent, track and gap rows.

        The removal is recorded in the same transaction (``removals``), so its files,
        removed next, are known to be removable if a crash leaves some behind.
        """
        await self._transaction([removal("meeting", meeting_id), (sql.MEETINGS_DELETE, {"id": meeting_id})])

    async def insert_adopted_meeting(self, meeting: Meeting, *, quality: int) -> Optional[Meeting]:
        """A meeting found again from its manifest (``pipeline/adoption.py``); None if it exists."""
        rows = await self._fetch_as(
            Meeting,
            sql.MEETINGS_INSERT_ADOPTED,
            {
                "id": meeting.id,
                "guild_id": meeting.guild_id,
                "channel_id": meeting.channel_id,
                "started_by": meeting.started_by,
                "started_at": meeting.started_at,
                "ended_at": meeting.ended_at,
                "status": MeetingStatus(meeting.status).value,
                "strategy": Strategy(meeting.strategy).value,
                "flush_interval_s": meeting.flush_interval_s,
                "sample_rate": meeting.sample_rate,
                "channels": meeting.channels,
                "bitrate": meeting.bitrate,
                "length_samples": meeting.length_samples,
                "note": meeting.note,
                "quality": int(quality),
            },
        )
        return rows[0] if rows else None

    # ------------------------------------------------------------------ pipeline (V3)
    async def set_meeting_pipeline(self, meeting_id: str, *, quality: int, keep_temp: bool, archive: str = "mp3") -> None:
        """Record the encoder quality, audit choice and archive format, so a restart encodes and promotes alike."""
        await self._fetch(
            sql.MEETINGS_SET_PIPELINE,
            {"id": meeting_id, "quality": int(quality), "keep_temp": int(bool(keep_temp)), "archive": archive},
        )

    async def meeting_pipeline(self, meeting_id: str) -> MeetingPipeline:
        rows = await self._fetch_as(MeetingPipeline, sql.MEETINGS_FETCH_PIPELINE, {"id": meeting_id})
        if not rows:
            raise NotFound(f"No meeting `{meeting_id}` here.")
        return rows[0]

    async def set_flushed_windows(
        self, meeting_id: str, windows: int, *, length_samples: Optional[int] = None
    ) -> None:
        """Windows ``[0, windows)`` are on disk; never moves backwards (a re-run flush is harmless)."""
        await self._fetch(
            sql.MEETINGS_SET_FLUSHED_WINDOWS,
            {"id": meeting_id, "windows": int(windows), "length_samples": length_samples},
        )
