"""The two-tier store: temp chunks while recording, persistent recordings after.

One aiosqlite connection per service. Every public coroutine holds ``self._lock`` for
its whole database conversation, because statements of two coroutines on one
connection would otherwise join each other's transactions. With one connection per
database file there is one writer, so "database is locked" cannot happen inside a
process; the busy timeout covers a second process (the harness's ``recover`` next to
a running bot, say).

Lifecycle moves are single ``UPDATE … WHERE status = <expected> RETURNING`` statements:
the check and the write are one atomic step, and an illegal move writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Optional, Sequence

import aiosqlite

from ..objects.records import (
    ChunkCounts,
    Meeting,
    MeetingStatus,
    Recording,
    RecordingKind,
    Strategy,
    TempRecording,
    TranscodeStatus,
)
from ..objects.errors import IllegalTransition, NotFound, StoreError
from ..objects.results import MeetingPipeline, NewRecording, TrackAssembly
from .schema import LATEST_VERSION, MIGRATIONS

__all__ = ["SqlRecordingService", "NewRecording", "StoreError", "NotFound", "new_id"]


def new_id() -> str:
    """16 hex characters: the design's id width, 64 random bits."""
    return secrets.token_hex(8)


def _now() -> float:
    # Looked up at call time so freezegun's patch of time.time applies.
    return time.time()


#: Which meeting statuses may follow which. PROMOTED is final; FAILED and
#: INTERRUPTED may be promoted again by an admin.
_MEETING_MOVES: dict[MeetingStatus, frozenset[MeetingStatus]] = {
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

_MEETING_COLS = (
    "id, guild_id, channel_id, started_by, started_at, ended_at, status, strategy, "
    "flush_interval_s, sample_rate, channels, bitrate, length_samples, note"
)
_TEMP_COLS = (
    "id, meeting_id, user_id, guild_id, seq, created_at, completed_at, pcm_path, mp3_path, "
    "transcode_status, sha256, duration_ms, cleaned, start_sample, sample_count, "
    "prime_samples, tail_samples, attempts, last_error, next_attempt_at"
)
_REC_COLS = (
    "r.id, r.meeting_id, r.created_at, r.duration_in_ms, r.sha256, r.filename, r.user_id, "
    "r.kind, r.path, r.size_bytes, m.guild_id"
)


def _meeting(row: Sequence[Any]) -> Meeting:
    return Meeting(
        id=row[0],
        guild_id=row[1],
        channel_id=row[2],
        started_by=row[3],
        started_at=row[4],
        ended_at=row[5],
        status=MeetingStatus(row[6]),
        strategy=Strategy(row[7]),
        flush_interval_s=row[8],
        sample_rate=row[9],
        channels=row[10],
        bitrate=row[11],
        length_samples=row[12],
        note=row[13],
    )


def _temp(row: Sequence[Any]) -> TempRecording:
    return TempRecording(
        id=row[0],
        meeting_id=row[1],
        user_id=row[2],
        guild_id=row[3],
        seq=row[4],
        created_at=row[5],
        completed_at=row[6],
        pcm_path=row[7],
        mp3_path=row[8],
        transcode_status=TranscodeStatus(row[9]),
        sha256=row[10],
        duration_ms=row[11],
        cleaned=bool(row[12]),
        start_sample=row[13],
        sample_count=row[14],
        prime_samples=row[15],
        tail_samples=row[16],
        attempts=row[17],
        last_error=row[18],
        next_attempt_at=row[19],
    )


def _recording(row: Sequence[Any]) -> Recording:
    return Recording(
        id=row[0],
        meeting_id=row[1],
        created_at=row[2],
        duration_in_ms=row[3],
        sha256=row[4],
        filename=row[5],
        user_id=row[6],
        kind=RecordingKind(row[7]),
        path=row[8],
        size_bytes=row[9],
        guild_id=row[10],
    )


class SqlRecordingService:
    """CRUD for ``meetings``, ``temp_recordings`` and ``recordings``.

    Use ``async with SqlRecordingService(path) as store`` or ``await store.open()``.
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: Optional[aiosqlite.Connection] = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> "SqlRecordingService":
        if self._conn is not None:
            return self
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return self

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> "SqlRecordingService":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        (version,) = (await (await conn.execute("PRAGMA user_version")).fetchone()) or (0,)
        if version > LATEST_VERSION:
            raise StoreError(
                f"The recordings database is version {version}, newer than this cog "
                f"understands ({LATEST_VERSION}). Update the cog."
            )
        for target in range(version + 1, LATEST_VERSION + 1):
            async with SqlRecordingService._immediate(conn):
                for statement in MIGRATIONS[target - 1]:
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {target}")

    async def schema_version(self) -> int:
        rows = await self._fetch("PRAGMA user_version")
        return int(rows[0][0])

    # ------------------------------------------------------------------ plumbing
    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("The recordings database is not open.")
        return self._conn

    @staticmethod
    @contextlib.asynccontextmanager
    async def _immediate(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
        """One IMMEDIATE transaction: committed if the block ends, rolled back if it raises.

        The caller holds ``self._lock`` (or owns the connection alone, as migrations do).
        """
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    async def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self.conn.execute_fetchall(sql, tuple(params)))

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Run statements in one IMMEDIATE transaction; all or nothing."""
        async with self._lock, self._immediate(self.conn) as conn:
            return [list(await conn.execute_fetchall(sql, tuple(params))) for sql, params in statements]

    # ------------------------------------------------------------------ meetings
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
        rows = await self._fetch(
            f"INSERT INTO meetings (id, guild_id, channel_id, started_by, started_at, status, "
            f"strategy, flush_interval_s, sample_rate, channels, bitrate) "
            f"VALUES (?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?, ?) RETURNING {_MEETING_COLS}",
            (
                new_id(),
                guild_id,
                channel_id,
                started_by,
                _now(),
                Strategy(strategy).value,
                flush_interval_s,
                sample_rate,
                channels,
                bitrate,
            ),
        )
        return _meeting(rows[0])

    async def get_meeting(self, meeting_id: str, *, guild_id: Optional[int] = None) -> Meeting:
        rows = await self._fetch(f"SELECT {_MEETING_COLS} FROM meetings WHERE id = ?", (meeting_id,))
        if not rows or (guild_id is not None and rows[0][1] != guild_id):
            raise NotFound(f"No meeting `{meeting_id}` here.")
        return _meeting(rows[0])

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
        allowed_from = [s.value for s, moves in _MEETING_MOVES.items() if status in moves]
        placeholders = ",".join("?" * len(allowed_from)) or "NULL"
        rows = await self._fetch(
            f"UPDATE meetings SET status = ?, ended_at = coalesce(ended_at, ?), "
            f"length_samples = coalesce(?, length_samples), note = coalesce(?, note) "
            f"WHERE id = ? AND status IN ({placeholders}) RETURNING {_MEETING_COLS}",
            (status.value, _now(), length_samples, note, meeting_id, *allowed_from),
        )
        if rows:
            return _meeting(rows[0])
        current = await self.get_meeting(meeting_id)
        raise IllegalTransition(
            f"Meeting {meeting_id} is {current.status.value}; it cannot become {status.value}."
        )

    async def list_meetings(
        self, guild_id: int, *, limit: int = 10, offset: int = 0
    ) -> tuple[list[Meeting], int]:
        """A page of a guild's meetings, newest first, and the total count."""
        rows = await self._fetch(
            f"SELECT {_MEETING_COLS} FROM meetings WHERE guild_id = ? "
            f"ORDER BY started_at DESC, id LIMIT ? OFFSET ?",
            (guild_id, limit, offset),
        )
        total = await self._fetch("SELECT count(*) FROM meetings WHERE guild_id = ?", (guild_id,))
        return [_meeting(r) for r in rows], int(total[0][0])

    async def meetings_left_open(self) -> list[Meeting]:
        """Meetings a crash left ACTIVE or STOPPING: nobody is recording them now."""
        rows = await self._fetch(
            f"SELECT {_MEETING_COLS} FROM meetings WHERE status IN ('ACTIVE','STOPPING') "
            f"ORDER BY started_at"
        )
        return [_meeting(r) for r in rows]

    async def meetings_with_status(self, *statuses: MeetingStatus) -> list[Meeting]:
        marks = ",".join("?" * len(statuses))
        rows = await self._fetch(
            f"SELECT {_MEETING_COLS} FROM meetings WHERE status IN ({marks}) ORDER BY started_at",
            [MeetingStatus(s).value for s in statuses],
        )
        return [_meeting(r) for r in rows]

    async def delete_meeting(self, meeting_id: str) -> None:
        """Remove a meeting and (by cascade) its temp and persistent rows."""
        await self._fetch("DELETE FROM meetings WHERE id = ?", (meeting_id,))

    # ------------------------------------------------------------------ temp chunks
    async def insert_temp_recording(
        self,
        *,
        meeting_id: str,
        user_id: int,
        guild_id: int,
        pcm_path: str,
        seq: int,
        start_sample: int,
        sample_count: int,
        prime_samples: int = 0,
        tail_samples: int = 0,
    ) -> TempRecording:
        """Insert a QUEUED chunk; a repeat of the same (meeting, user, seq) returns the first.

        Idempotent because a flush retried after an error, or re-run by recovery,
        must never make a second row for audio that already has one.
        """
        rows = await self._fetch(
            f"INSERT INTO temp_recordings (id, meeting_id, user_id, guild_id, seq, created_at, "
            f"pcm_path, start_sample, sample_count, prime_samples, tail_samples) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (meeting_id, user_id, seq) DO NOTHING RETURNING {_TEMP_COLS}",
            (
                new_id(),
                meeting_id,
                user_id,
                guild_id,
                seq,
                _now(),
                str(pcm_path),
                start_sample,
                sample_count,
                prime_samples,
                tail_samples,
            ),
        )
        if rows:
            return _temp(rows[0])
        rows = await self._fetch(
            f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE meeting_id = ? AND user_id = ? AND seq = ?",
            (meeting_id, user_id, seq),
        )
        return _temp(rows[0])

    async def get_temp_recording(self, temp_id: str) -> TempRecording:
        rows = await self._fetch(f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE id = ?", (temp_id,))
        if not rows:
            raise NotFound(f"No chunk `{temp_id}`.")
        return _temp(rows[0])

    async def _move(
        self,
        temp_id: str,
        expected: Sequence[TranscodeStatus],
        target: str,
        assignments: str,
        params: Sequence[Any],
        *,
        extra_where: str = "",
    ) -> TempRecording:
        marks = ",".join("?" * len(expected))
        rows = await self._fetch(
            f"UPDATE temp_recordings SET {assignments} WHERE id = ? "
            f"AND transcode_status IN ({marks}){extra_where} RETURNING {_TEMP_COLS}",
            (*params, temp_id, *[s.value for s in expected]),
        )
        if rows:
            return _temp(rows[0])
        current = await self.get_temp_recording(temp_id)
        raise IllegalTransition(
            f"Chunk {temp_id} is {current.transcode_status.value}"
            f"{' and cleaned' if current.cleaned else ''}; it cannot move to {target}."
        )

    async def update_temp_recording_transcode_started(self, temp_id: str) -> TempRecording:
        return await self._move(
            temp_id,
            [TranscodeStatus.QUEUED],
            "IN_PROGRESS",
            "transcode_status = 'IN_PROGRESS', attempts = attempts + 1, next_attempt_at = NULL",
            (),
        )

    async def update_temp_recording_transcode_completed(
        self, temp_id: str, *, mp3_path: str, sha256: str, duration_ms: int
    ) -> TempRecording:
        return await self._move(
            temp_id,
            [TranscodeStatus.IN_PROGRESS],
            "DONE",
            "transcode_status = 'DONE', mp3_path = ?, sha256 = ?, duration_ms = ?, "
            "completed_at = ?, last_error = NULL",
            (str(mp3_path), sha256, int(duration_ms), _now()),
        )

    async def update_temp_recording_transcode_failed(
        self, temp_id: str, *, error: str = "transcode failed"
    ) -> TempRecording:
        return await self._move(
            temp_id,
            [TranscodeStatus.IN_PROGRESS],
            "FAILED",
            "transcode_status = 'FAILED', last_error = ?, completed_at = ?",
            (error[:2000], _now()),
        )

    async def retry_temp_recording(self, temp_id: str, *, not_before: Optional[float] = None) -> TempRecording:
        """The only way back from FAILED: an explicit retry, optionally after a backoff."""
        return await self._move(
            temp_id,
            [TranscodeStatus.FAILED],
            "QUEUED",
            "transcode_status = 'QUEUED', completed_at = NULL, next_attempt_at = ?",
            (not_before,),
        )

    async def mark_temp_recording_cleaned(self, temp_id: str) -> TempRecording:
        """Record that the PCM is gone; only a DONE chunk's PCM may go."""
        return await self._move(temp_id, [TranscodeStatus.DONE], "cleaned", "cleaned = 1", ())

    async def claim_next_job(self, *, now: Optional[float] = None) -> Optional[TempRecording]:
        """Atomically take the oldest due QUEUED chunk and mark it IN_PROGRESS.

        The store is the queue: this is what lets jobs survive a restart and lets
        several workers share it without taking the same chunk twice.
        """
        now = _now() if now is None else now
        rows = await self._fetch(
            f"UPDATE temp_recordings SET transcode_status = 'IN_PROGRESS', attempts = attempts + 1, "
            f"next_attempt_at = NULL WHERE id = (SELECT id FROM temp_recordings "
            f"WHERE transcode_status = 'QUEUED' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
            f"ORDER BY created_at, seq LIMIT 1) AND transcode_status = 'QUEUED' RETURNING {_TEMP_COLS}",
            (now,),
        )
        return _temp(rows[0]) if rows else None

    async def next_retry_at(self) -> Optional[float]:
        """When the earliest backed-off chunk becomes due, so workers sleep exactly that long."""
        rows = await self._fetch(
            "SELECT min(next_attempt_at) FROM temp_recordings WHERE transcode_status = 'QUEUED'"
        )
        return rows[0][0]

    async def requeue_in_progress(self, meeting_id: Optional[str] = None) -> int:
        """Recovery only: IN_PROGRESS rows whose worker died go back to QUEUED."""
        if meeting_id is None:
            rows = await self._fetch(
                "UPDATE temp_recordings SET transcode_status = 'QUEUED' "
                "WHERE transcode_status = 'IN_PROGRESS' RETURNING id"
            )
        else:
            rows = await self._fetch(
                "UPDATE temp_recordings SET transcode_status = 'QUEUED' "
                "WHERE transcode_status = 'IN_PROGRESS' AND meeting_id = ? RETURNING id",
                (meeting_id,),
            )
        return len(rows)

    async def get_temp_recordings_for_meeting(
        self,
        meeting_id: str,
        *,
        user_id: Optional[int] = None,
        status: Optional[TranscodeStatus] = None,
    ) -> list[TempRecording]:
        sql = f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE meeting_id = ?"
        params: list[Any] = [meeting_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        if status is not None:
            sql += " AND transcode_status = ?"
            params.append(TranscodeStatus(status).value)
        rows = await self._fetch(sql + " ORDER BY user_id, seq", params)
        return [_temp(r) for r in rows]

    async def pending_temp_recordings(self, meeting_id: Optional[str] = None) -> list[TempRecording]:
        """QUEUED and IN_PROGRESS chunks, oldest first: what still has to be transcoded."""
        sql = f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE transcode_status IN ('QUEUED','IN_PROGRESS')"
        params: list[Any] = []
        if meeting_id is not None:
            sql += " AND meeting_id = ?"
            params.append(meeting_id)
        rows = await self._fetch(sql + " ORDER BY created_at, seq", params)
        return [_temp(r) for r in rows]

    async def chunk_counts(self, meeting_id: str) -> ChunkCounts:
        rows = await self._fetch(
            "SELECT transcode_status, count(*) FROM temp_recordings WHERE meeting_id = ? "
            "GROUP BY transcode_status",
            (meeting_id,),
        )
        counts = {status: n for status, n in rows}
        return ChunkCounts(
            queued=counts.get("QUEUED", 0),
            in_progress=counts.get("IN_PROGRESS", 0),
            done=counts.get("DONE", 0),
            failed=counts.get("FAILED", 0),
        )

    async def delete_temp_recordings(
        self, *, meeting_id: Optional[str] = None, ids: Optional[Sequence[str]] = None
    ) -> int:
        if (meeting_id is None) == (ids is None):
            raise ValueError("Give exactly one of meeting_id or ids.")
        if meeting_id is not None:
            rows = await self._fetch(
                "DELETE FROM temp_recordings WHERE meeting_id = ? RETURNING id", (meeting_id,)
            )
            return len(rows)
        deleted = 0
        ids = list(ids or ())
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = await self._fetch(
                f"DELETE FROM temp_recordings WHERE id IN ({','.join('?' * len(part))}) RETURNING id",
                part,
            )
            deleted += len(rows)
        return deleted

    async def stale_temp_recordings(self, ttl_s: float) -> list[TempRecording]:
        """Temp rows older than the TTL whose meeting is over (never a live meeting's)."""
        rows = await self._fetch(
            f"SELECT {', '.join('t.' + c.strip() for c in _TEMP_COLS.split(','))} "
            f"FROM temp_recordings t JOIN meetings m ON m.id = t.meeting_id "
            f"WHERE t.created_at < ? AND m.status IN ('PROMOTED','FAILED') ORDER BY t.created_at",
            (_now() - ttl_s,),
        )
        return [_temp(r) for r in rows]

    async def known_paths(self) -> set[str]:
        """Every file path a row still points at; the cleanup job never deletes these."""
        rows = await self._fetch(
            "SELECT pcm_path FROM temp_recordings UNION SELECT mp3_path FROM temp_recordings "
            "WHERE mp3_path IS NOT NULL UNION SELECT path FROM recordings"
        )
        return {r[0] for r in rows}

    # ------------------------------------------------------------------ persistent
    async def insert_persistent_recording(
        self, meeting_id: str, recording: NewRecording
    ) -> Recording:
        rows = await self._transaction(
            [self._insert_recording_sql(meeting_id, recording)]
        )
        return await self.get_recording(rows[0][0][0])

    @staticmethod
    def _insert_recording_sql(meeting_id: str, rec: NewRecording) -> tuple[str, Sequence[Any]]:
        return (
            "INSERT INTO recordings (id, meeting_id, created_at, duration_in_ms, sha256, filename, "
            "user_id, kind, path, size_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                new_id(),
                meeting_id,
                _now(),
                int(rec.duration_in_ms),
                rec.sha256,
                rec.filename,
                rec.user_id,
                RecordingKind(rec.kind).value,
                rec.path,
                int(rec.size_bytes),
            ),
        )

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
        the meeting's temp rows (unless kept for audit) and marks it PROMOTED. Refuses
        while chunks are pending: promoting then would silently drop their audio.
        """
        meeting = await self.get_meeting(meeting_id)
        if MeetingStatus.PROMOTED not in _MEETING_MOVES[meeting.status]:
            raise IllegalTransition(
                f"Meeting {meeting_id} is {meeting.status.value}; it cannot be promoted."
            )
        counts = await self.chunk_counts(meeting_id)
        if counts.pending:
            raise StoreError(
                f"Meeting {meeting_id} still has {counts.pending} chunk(s) waiting for transcode."
            )
        statements: list[tuple[str, Sequence[Any]]] = [
            self._insert_recording_sql(meeting_id, f) for f in files
        ]
        if not keep_temp:
            statements.append(("DELETE FROM temp_recordings WHERE meeting_id = ?", (meeting_id,)))
        allowed = [s.value for s, moves in _MEETING_MOVES.items() if MeetingStatus.PROMOTED in moves]
        statements.append(
            (
                f"UPDATE meetings SET status = 'PROMOTED', ended_at = coalesce(ended_at, ?), "
                f"length_samples = coalesce(?, length_samples) "
                f"WHERE id = ? AND status IN ({','.join('?' * len(allowed))}) RETURNING id",
                (_now(), length_samples, meeting_id, *allowed),
            )
        )
        ids = []
        async with self._lock, self._immediate(self.conn) as conn:
            for sql, params in statements:
                rows = list(await conn.execute_fetchall(sql, tuple(params)))
                if sql.startswith("INSERT"):
                    ids.append(rows[0][0])
                elif sql.startswith("UPDATE") and not rows:
                    raise IllegalTransition(f"Meeting {meeting_id} changed status during promotion.")
        return [await self.get_recording(i) for i in ids]

    async def get_recording(self, recording_id: str, *, guild_id: Optional[int] = None) -> Recording:
        rows = await self._fetch(
            f"SELECT {_REC_COLS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id WHERE r.id = ?",
            (recording_id,),
        )
        if not rows or (guild_id is not None and rows[0][10] != guild_id):
            raise NotFound(f"No recording `{recording_id}` here.")
        return _recording(rows[0])

    async def recordings_for_meeting(self, meeting_id: str) -> list[Recording]:
        rows = await self._fetch(
            f"SELECT {_REC_COLS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id "
            f"WHERE r.meeting_id = ? ORDER BY r.kind DESC, r.user_id",
            (meeting_id,),
        )
        return [_recording(r) for r in rows]

    async def list_recordings(
        self, guild_id: int, *, limit: int = 10, offset: int = 0
    ) -> tuple[list[Recording], int]:
        rows = await self._fetch(
            f"SELECT {_REC_COLS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id "
            f"WHERE m.guild_id = ? ORDER BY r.created_at DESC, r.id LIMIT ? OFFSET ?",
            (guild_id, limit, offset),
        )
        total = await self._fetch(
            "SELECT count(*) FROM recordings r JOIN meetings m ON m.id = r.meeting_id WHERE m.guild_id = ?",
            (guild_id,),
        )
        return [_recording(r) for r in rows], int(total[0][0])

    async def recordings_older_than(self, age_s: float) -> list[Recording]:
        rows = await self._fetch(
            f"SELECT {_REC_COLS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id "
            f"WHERE r.created_at < ? ORDER BY r.created_at",
            (_now() - age_s,),
        )
        return [_recording(r) for r in rows]

    async def delete_recording(self, recording_id: str, *, guild_id: Optional[int] = None) -> Recording:
        """Delete the row and return it; the caller then removes the file.

        Row first: a crash in between leaves an orphaned file for the cleanup job,
        never a row that points at nothing.
        """
        rec = await self.get_recording(recording_id, guild_id=guild_id)
        await self._fetch("DELETE FROM recordings WHERE id = ?", (recording_id,))
        return rec

    # ------------------------------------------------------------------ user data
    async def user_data(self, user_id: int) -> tuple[list[Recording], list[TempRecording]]:
        """A user's per-user recordings and temp chunks (mixed files are not theirs alone)."""
        recs = await self._fetch(
            f"SELECT {_REC_COLS} FROM recordings r JOIN meetings m ON m.id = r.meeting_id "
            f"WHERE r.user_id = ? AND r.kind = 'per_user'",
            (user_id,),
        )
        temps = await self._fetch(f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE user_id = ?", (user_id,))
        return [_recording(r) for r in recs], [_temp(r) for r in temps]

    async def delete_user_rows(self, user_id: int) -> None:
        await self._transaction(
            [
                ("DELETE FROM recordings WHERE user_id = ? AND kind = 'per_user'", (user_id,)),
                ("DELETE FROM temp_recordings WHERE user_id = ?", (user_id,)),
            ]
        )

    # ------------------------------------------------------------------ pipeline (V3)
    async def set_meeting_pipeline(self, meeting_id: str, *, quality: int, keep_temp: bool) -> None:
        """Record the encoder quality and audit choice, so a restart encodes and promotes alike."""
        await self._fetch(
            "UPDATE meetings SET quality = ?, keep_temp = ? WHERE id = ?",
            (int(quality), int(bool(keep_temp)), meeting_id),
        )

    async def meeting_pipeline(self, meeting_id: str) -> MeetingPipeline:
        rows = await self._fetch(
            "SELECT quality, keep_temp, flushed_windows FROM meetings WHERE id = ?", (meeting_id,)
        )
        if not rows:
            raise NotFound(f"No meeting `{meeting_id}` here.")
        return MeetingPipeline(quality=rows[0][0], keep_temp=bool(rows[0][1]), flushed_windows=rows[0][2])

    async def set_flushed_windows(
        self, meeting_id: str, windows: int, *, length_samples: Optional[int] = None
    ) -> None:
        """Windows ``[0, windows)`` are on disk; never moves backwards (a re-run flush is harmless)."""
        await self._fetch(
            "UPDATE meetings SET flushed_windows = max(flushed_windows, ?), "
            "length_samples = coalesce(?, length_samples) WHERE id = ?",
            (int(windows), length_samples, meeting_id),
        )

    async def ensure_tracks(self, meeting_id: str, user_ids: Iterable[int]) -> None:
        """Create the tracks' assembly rows if missing (idempotent)."""
        ids = sorted(set(int(u) for u in user_ids))
        if not ids:
            return
        await self._transaction(
            [
                (
                    "INSERT INTO tracks (meeting_id, user_id) VALUES (?, ?) "
                    "ON CONFLICT (meeting_id, user_id) DO NOTHING",
                    (meeting_id, u),
                )
                for u in ids
            ]
        )

    async def tracks_for_meeting(self, meeting_id: str) -> list[TrackAssembly]:
        rows = await self._fetch(
            "SELECT meeting_id, user_id, assembled_seq, assembled_bytes, assembled_frames "
            "FROM tracks WHERE meeting_id = ? ORDER BY user_id",
            (meeting_id,),
        )
        return [TrackAssembly(*r) for r in rows]

    async def advance_track(
        self, meeting_id: str, user_id: int, *, from_seq: int, to_seq: int, bytes_: int, frames: int
    ) -> None:
        """Record an append to a track's file; refuses if someone else moved it meanwhile."""
        rows = await self._fetch(
            "UPDATE tracks SET assembled_seq = ?, assembled_bytes = ?, assembled_frames = ? "
            "WHERE meeting_id = ? AND user_id = ? AND assembled_seq = ? RETURNING user_id",
            (to_seq, bytes_, frames, meeting_id, user_id, from_seq),
        )
        if not rows:
            raise IllegalTransition(
                f"Track {user_id} of meeting {meeting_id} is no longer at chunk {from_seq}."
            )

    async def temp_recordings_for_track(
        self, meeting_id: str, user_id: int, *, from_seq: int = 0, limit: int = 1000
    ) -> list[TempRecording]:
        """One track's chunks from ``from_seq`` on, in seq order (the assembler's read)."""
        rows = await self._fetch(
            f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE meeting_id = ? AND user_id = ? "
            f"AND seq >= ? ORDER BY seq LIMIT ?",
            (meeting_id, user_id, from_seq, limit),
        )
        return [_temp(r) for r in rows]

    async def failed_temp_recordings(self, *, max_attempts: Optional[int] = None) -> list[TempRecording]:
        """FAILED chunks (those with fewer than ``max_attempts`` attempts, if given)."""
        sql = f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE transcode_status = 'FAILED'"
        params: list[Any] = []
        if max_attempts is not None:
            sql += " AND attempts < ?"
            params.append(max_attempts)
        rows = await self._fetch(sql + " ORDER BY created_at, seq", params)
        return [_temp(r) for r in rows]

    async def done_uncleaned_temp_recordings(self) -> list[TempRecording]:
        """DONE chunks whose PCM was not yet removed (a crash between the two steps)."""
        rows = await self._fetch(
            f"SELECT {_TEMP_COLS} FROM temp_recordings WHERE transcode_status = 'DONE' AND cleaned = 0"
        )
        return [_temp(r) for r in rows]

    async def delete_temp_recordings_except_failed(self, meeting_id: str) -> int:
        """After promotion: drop the meeting's chunk rows but keep FAILED ones for a retry."""
        rows = await self._fetch(
            "DELETE FROM temp_recordings WHERE meeting_id = ? AND transcode_status != 'FAILED' "
            "RETURNING id",
            (meeting_id,),
        )
        return len(rows)

    async def requeue_failed_attempt(
        self, temp_id: str, *, error: str, not_before: Optional[float]
    ) -> TempRecording:
        """A failed attempt below the retry limit: FAILED, then the explicit retry, atomically.

        The row takes the lifecycle's own path (IN_PROGRESS → FAILED → QUEUED) inside
        one transaction, so nobody ever sees it FAILED: a promotion waiting for the
        queue would otherwise give up on audio that is about to be encoded again.
        """
        queued: list[Any] = []
        async with self._lock, self._immediate(self.conn) as conn:
            # The second step runs only if the first moved the row: a chunk already
            # FAILED for good must not be revived here.
            if await conn.execute_fetchall(
                "UPDATE temp_recordings SET transcode_status = 'FAILED', last_error = ?, "
                "completed_at = ? WHERE id = ? AND transcode_status = 'IN_PROGRESS' RETURNING id",
                (error[:2000], _now(), temp_id),
            ):
                queued = list(
                    await conn.execute_fetchall(
                        f"UPDATE temp_recordings SET transcode_status = 'QUEUED', completed_at = NULL, "
                        f"next_attempt_at = ? WHERE id = ? AND transcode_status = 'FAILED' "
                        f"RETURNING {_TEMP_COLS}",
                        (not_before, temp_id),
                    )
                )
        if queued:
            return _temp(queued[0])
        current = await self.get_temp_recording(temp_id)
        raise IllegalTransition(
            f"Chunk {temp_id} is {current.transcode_status.value}; it cannot be retried."
        )

    async def erase_user_tracks(self, user_id: int) -> list[str]:
        """Forget a user's track assembly rows in unfinished meetings; returns those meetings.

        Erasure: the ``.part`` files these rows describe hold the user's voice and are
        removed by the caller. Finished meetings' files are ``recordings`` rows instead.
        """
        rows = await self._fetch(
            "DELETE FROM tracks WHERE user_id = ? AND meeting_id IN "
            "(SELECT id FROM meetings WHERE status != 'PROMOTED') RETURNING meeting_id",
            (user_id,),
        )
        return sorted({r[0] for r in rows})

    async def chunk_keys(self, meeting_id: str, *, from_seq: int = 0) -> set[tuple[int, int]]:
        """``(user_id, seq)`` of a meeting's chunk rows from ``from_seq`` on (cheap existence test)."""
        rows = await self._fetch(
            "SELECT user_id, seq FROM temp_recordings WHERE meeting_id = ? AND seq >= ?",
            (meeting_id, from_seq),
        )
        return {(r[0], r[1]) for r in rows}

    async def all_meeting_ids(self) -> set[str]:
        rows = await self._fetch("SELECT id FROM meetings")
        return {r[0] for r in rows}


