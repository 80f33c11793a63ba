"""The ``recordings`` table: the persistent tier, and promotion into it.

Every read joins the recording's meeting for its ``guild_id`` (one statement,
``sql.RECORDINGS_WITH_GUILD``), so a guild-scoped lookup cannot show another guild's file.
"""

from __future__ import annotations

from typing import Optional, Sequence

import aiosqlite

from ...objects.errors import IllegalTransition, NotFound, StoreError
from ...objects.records import MIX_USER_ID, MeetingStatus, Recording, RecordingKind, TempRecording
from ...objects.records import Meeting
from ...objects.results import NewRecording, TrackAssembly
from .. import sql_statements as sql
from ..database import Database, fetch_in, new_id, wall_clock
from ..rows import row_to
from .meetings import MEETING_MOVES, allowed_from, read_meeting
from .removals import removal

__all__ = ["RecordingsTable"]


def _insert_params(meeting_id: str, rec: NewRecording) -> dict[str, object]:
    return {
        "id": new_id(),
        "meeting_id": meeting_id,
        "created_at": wall_clock(),
        "duration_in_ms": int(rec.duration_in_ms),
        "sha256": rec.sha256,
        "filename": rec.filename,
        "user_id": rec.user_id,
        "kind": RecordingKind(rec.kind).value,
        "path": rec.path,
        "size_bytes": int(rec.size_bytes),
    }


async def _read_recording(conn: aiosqlite.Connection, recording_id: str) -> Recording:
    (row,) = await fetch_in(conn, sql.RECORDINGS_FETCH, {"id": recording_id})
    return row_to(Recording, row)


class RecordingsTable(Database):
    """CRUD for ``recordings``, plus the operations across tables that mostly write it.

    :meth:`promote_temp_recordings_to_persistent` inserts recordings and, in the same
    transaction, deletes the meeting's temp rows and marks the meeting PROMOTED. The
    user-data pair (:meth:`user_data`, :meth:`delete_user_rows`) reads and deletes a
    user's recordings and their temp chunks together, because erasure must take both.
    """

    async def insert_persistent_recording(self, meeting_id: str, recording: NewRecording) -> Recording:
        async with self._lock, self._immediate(self.conn) as conn:
            (row,) = await fetch_in(conn, sql.RECORDINGS_INSERT, _insert_params(meeting_id, recording))
            return await _read_recording(conn, str(row[0]))

    async def promote_temp_recordings_to_persistent(
        self,
        meeting_id: str,
        files: Sequence[NewRecording],
        *,
        length_samples: Optional[int] = None,
        keep_temp: bool = False,
    ) -> list[Recording]:
        """The row side of promotion, in one transaction.

        Inserts the ``recordings`` rows for files the promoter already wrote, removes
        the meeting's temp rows (unless kept for audit; a gap's chunk always stays) and
        marks it PROMOTED. Refuses while chunks that are not gaps are pending: promoting
        then would silently drop their audio. The
        checks are read inside the same transaction as the writes, so nothing can
        change between them.
        """
        async with self._lock, self._immediate(self.conn) as conn:
            meeting = await read_meeting(conn, meeting_id)
            if MeetingStatus.PROMOTED not in MEETING_MOVES[meeting.status]:
                raise IllegalTransition(
                    f"Meeting {meeting_id} is {meeting.status.value}; it cannot be promoted."
                )
            (pending,) = (await fetch_in(conn, sql.TEMP_COUNT_PENDING_NOT_GAP, {"meeting_id": meeting_id}))[0]
            if pending:
                raise StoreError(f"Meeting {meeting_id} still has {pending} chunk(s) waiting for transcode.")
            ids = []
            for file in files:
                (row,) = await fetch_in(conn, sql.RECORDINGS_INSERT, _insert_params(meeting_id, file))
                ids.append(str(row[0]))
            if not keep_temp:
                # the chunks of gaps stay, with their PCM, for the repair
                await fetch_in(conn, sql.TEMP_DELETE_FOR_MEETING_EXCEPT_GAPS, {"meeting_id": meeting_id})
            moved = await fetch_in(
                conn,
                sql.MEETINGS_MOVE,
                {
                    "id": meeting_id,
                    "status": MeetingStatus.PROMOTED.value,
                    "now": wall_clock(),
                    "length_samples": length_samples,
                    "note": None,
                    "allowed_from": allowed_from(MeetingStatus.PROMOTED),
                },
            )
            if not moved:
                raise IllegalTransition(f"Meeting {meeting_id} changed status during promotion.")
            return [await _read_recording(conn, i) for i in ids]

    async def get_recording(self, recording_id: str, *, guild_id: Optional[int] = None) -> Recording:
        rows = await self._fetch_as(Recording, sql.RECORDINGS_FETCH, {"id": recording_id})
        if not rows or (guild_id is not None and rows[0].guild_id != guild_id):
            raise NotFound(f"No recording `{recording_id}` here.")
        return rows[0]

    async def recordings_for_meeting(self, meeting_id: str) -> list[Recording]:
        return await self._fetch_as(Recording, sql.RECORDINGS_FETCH_FOR_MEETING, {"meeting_id": meeting_id})

    async def list_recordings(
        self, guild_id: int, *, limit: int = 10, offset: int = 0
    ) -> tuple[list[Recording], int]:
        page = await self._fetch_as(
            Recording,
            sql.RECORDINGS_FETCH_PAGE_FOR_GUILD,
            {"guild_id": guild_id, "limit": limit, "offset": offset},
        )
        total = await self._fetch(sql.RECORDINGS_COUNT_FOR_GUILD, {"guild_id": guild_id})
        return page, int(total[0][0])

    async def recordings_older_than(self, age_s: float) -> list[Recording]:
        return await self._fetch_as(Recording, sql.RECORDINGS_FETCH_OLDER_THAN, {"before": wall_clock() - age_s})

    async def delete_recording(self, recording_id: str, *, guild_id: Optional[int] = None) -> Recording:
        """Delete the row and return it; the caller then removes the file (see :meth:`remove_recording`)."""
        rec, _chunks = await self.remove_recording(recording_id, guild_id=guild_id)
        return rec

    async def remove_recording(
        self, recording_id: str, *, guild_id: Optional[int] = None
    ) -> tuple[Recording, list[TempRecording]]:
        """Delete a recording's row, and its track's gaps and leftover chunk rows, in one transaction.

        Returns the recording and those chunks; the caller then removes the files.
        Row first: a crash in between leaves an orphaned file for the cleanup job,
        never a row that points at nothing. A gap's chunk was kept to repair this file:
        with the file gone (an admin's delete, the retention), its audio goes too.
        """
        rec = await self.get_recording(recording_id, guild_id=guild_id)
        user = MIX_USER_ID if rec.kind is RecordingKind.MIXED else int(rec.user_id or 0)
        track = {"meeting_id": rec.meeting_id, "user_id": user}
        async with self._lock, self._immediate(self.conn) as conn:
            chunks = [row_to(TempRecording, r) for r in await fetch_in(conn, sql.TRACK_TEMP_FETCH, track)]
            await fetch_in(conn, sql.RECORDINGS_DELETE, {"id": recording_id})
            await fetch_in(conn, sql.GAPS_DELETE_TRACK, track)
            await fetch_in(conn, sql.TRACK_ROWS_DELETE_AFTER_RECORDING, track)
        return rec, chunks

    # ------------------------------------------------------------------ user data
    async def user_data(self, user_id: int) -> tuple[list[Recording], list[TempRecording]]:
        """A user's per-user recordings and temp chunks (mixed files are not theirs alone)."""
        recs = await self._fetch_as(Recording, sql.USER_RECORDINGS_FETCH, {"user_id": user_id})
        temps = await self._fetch_as(TempRecording, sql.USER_TEMP_FETCH, {"user_id": user_id})
        return recs, temps

    async def delete_user_rows(self, user_id: int) -> None:
        """Erase a user's per-user recordings and their temp chunks, both or neither."""
        await self._transaction([
            removal("user", str(int(user_id))),
            (sql.USER_RECORDINGS_DELETE, {"user_id": user_id}),
            (sql.USER_TEMP_DELETE, {"user_id": user_id}),
            (sql.USER_GAPS_DELETE, {"user_id": user_id}),
        ])

    # ------------------------------------------------------------------ adoption
    async def adopt_meeting(
        self,
        meeting: Meeting,
        *,
        quality: int,
        archive: str = "mp3",
        recordings: Sequence[NewRecording] = (),
        tracks: Sequence[TrackAssembly] = (),
        flushed_windows: int = 0,
    ) -> bool:
        """A meeting the database had lost, found again from its manifest and files, in one
        transaction: its row, its finished files' rows, its tracks' assembly. False (and
        nothing written) if the meeting exists already."""
        async with self._lock, self._immediate(self.conn) as conn:
            if not await fetch_in(conn, sql.MEETINGS_INSERT_ADOPTED, {
                "id": meeting.id, "guild_id": meeting.guild_id, "channel_id": meeting.channel_id,
                "started_by": meeting.started_by, "started_at": meeting.started_at, "ended_at": meeting.ended_at,
                "status": MeetingStatus(meeting.status).value, "strategy": meeting.strategy.value,
                "flush_interval_s": meeting.flush_interval_s, "sample_rate": meeting.sample_rate,
                "channels": meeting.channels, "bitrate": meeting.bitrate,
                "length_samples": meeting.length_samples, "note": meeting.note, "quality": int(quality),
                "archive": archive,
            }):
                return False
            for rec in recordings:
                await fetch_in(conn, sql.RECORDINGS_INSERT, _insert_params(meeting.id, rec))
            for t in tracks:
                await fetch_in(conn, sql.TRACKS_INSERT_ADOPTED, {
                    "meeting_id": meeting.id, "user_id": t.user_id, "assembled_seq": t.assembled_seq,
                    "assembled_bytes": t.assembled_bytes, "assembled_frames": t.assembled_frames,
                })
            await fetch_in(conn, sql.MEETINGS_SET_FLUSHED_WINDOWS,
                           {"id": meeting.id, "windows": int(flushed_windows), "length_samples": None})
            return True
