"""The ``temp_recordings`` table: one row per flushed chunk, and the transcode queue itself.

The store is the queue: a worker claims a chunk with one atomic ``UPDATE … RETURNING``,
which is what lets jobs survive a restart and several workers share it without taking
the same chunk twice. Each lifecycle move (QUEUED → IN_PROGRESS → DONE/FAILED, FAILED →
QUEUED by explicit retry, DONE → cleaned) names the one status it moves from, so an
illegal move matches no row and writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Optional, Sequence

import aiosqlite

from ...objects.errors import IllegalTransition, NotFound
from ...objects.records import ChunkCounts, TempRecording, TranscodeStatus
from .. import sql_statements as sql
from ..database import Database, Params, fetch_in, new_id, wall_clock
from ..rows import row_to

__all__ = ["TempRecordingsTable", "count_chunks"]

#: Longest error text kept per chunk: a traceback's tail is enough to act on.
_MAX_ERROR_CHARS = 2000


async def count_chunks(conn: aiosqlite.Connection, meeting_id: str) -> ChunkCounts:
    """A meeting's chunks by status, on a connection the caller holds (promotion reads it too)."""
    rows = await fetch_in(conn, sql.TEMP_COUNT_BY_STATUS, {"meeting_id": meeting_id})
    counts: dict[str, int] = {str(status): int(n) for status, n in rows}
    return ChunkCounts(
        queued=counts.get("QUEUED", 0),
        in_progress=counts.get("IN_PROGRESS", 0),
        done=counts.get("DONE", 0),
        failed=counts.get("FAILED", 0),
    )


class TempRecordingsTable(Database):
    """CRUD and queue operations for ``temp_recordings``.

    Also :meth:`stale_temp_recordings` (reads the meeting's status) and
    :meth:`known_paths` (reads both tiers' paths): both serve the cleanup of this tier.
    """

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
        inserted = await self._fetch_as(
            TempRecording,
            sql.TEMP_INSERT,
            {
                "id": new_id(),
                "meeting_id": meeting_id,
                "user_id": user_id,
                "guild_id": guild_id,
                "seq": seq,
                "created_at": wall_clock(),
                "pcm_path": str(pcm_path),
                "start_sample": start_sample,
                "sample_count": sample_count,
                "prime_samples": prime_samples,
                "tail_samples": tail_samples,
            },
        )
        if inserted:
            return inserted[0]
        (first,) = await self._fetch_as(
            TempRecording, sql.TEMP_FETCH_BY_KEY, {"meeting_id": meeting_id, "user_id": user_id, "seq": seq}
        )
        return first

    async def insert_done_chunk(
        self,
        *,
        meeting_id: str,
        user_id: int,
        guild_id: int,
        pcm_path: str,
        mp3_path: str,
        sha256: str,
        duration_ms: int,
        seq: int,
        start_sample: int,
        sample_count: int,
        prime_samples: int,
        tail_samples: int,
    ) -> Optional[TempRecording]:
        """A chunk found again as its verified MP3 alone (adoption); None if its row exists."""
        rows = await self._fetch_as(
            TempRecording,
            sql.TEMP_INSERT_DONE,
            {
                "id": new_id(), "meeting_id": meeting_id, "user_id": user_id, "guild_id": guild_id,
                "seq": seq, "created_at": wall_clock(), "pcm_path": str(pcm_path), "mp3_path": str(mp3_path),
                "sha256": sha256, "duration_ms": int(duration_ms), "start_sample": start_sample,
                "sample_count": sample_count, "prime_samples": prime_samples, "tail_samples": tail_samples,
            },
        )
        return rows[0] if rows else None

    async def pending_not_gap_count(self, meeting_id: str) -> int:
        """Chunks a promotion still waits for: pending ones that are not gaps."""
        rows = await self._fetch(sql.TEMP_COUNT_PENDING_NOT_GAP, {"meeting_id": meeting_id})
        return int(rows[0][0])

    async def get_temp_recording(self, temp_id: str) -> TempRecording:
        rows = await self._fetch_as(TempRecording, sql.TEMP_FETCH, {"id": temp_id})
        if not rows:
            raise NotFound(f"No chunk `{temp_id}`.")
        return rows[0]

    async def _move(self, temp_id: str, statement: str, target: str, **params: Any) -> TempRecording:
        """Run one lifecycle move; if it matched nothing, say what the chunk is instead."""
        moved = await self._fetch_as(TempRecording, statement, {"id": temp_id, **params})
        if moved:
            return moved[0]
        current = await self.get_temp_recording(temp_id)
        raise IllegalTransition(
            f"Chunk {temp_id} is {current.transcode_status.value}"
            f"{' and cleaned' if current.cleaned else ''}; it cannot move to {target}."
        )

    async def update_temp_recording_transcode_started(self, temp_id: str) -> TempRecording:
        return await self._move(temp_id, sql.TEMP_SET_STARTED, "IN_PROGRESS")

    async def update_temp_recording_transcode_completed(
        self, temp_id: str, *, mp3_path: str, sha256: str, duration_ms: int
    ) -> TempRecording:
        return await self._move(
            temp_id,
            sql.TEMP_SET_COMPLETED,
            "DONE",
            mp3_path=str(mp3_path),
            sha256=sha256,
            duration_ms=int(duration_ms),
            now=wall_clock(),
        )

    async def update_temp_recording_transcode_failed(
        self, temp_id: str, *, error: str = "transcode failed"
    ) -> TempRecording:
        return await self._move(
            temp_id, sql.TEMP_SET_FAILED, "FAILED", error=error[:_MAX_ERROR_CHARS], now=wall_clock()
        )

    async def retry_temp_recording(self, temp_id: str, *, not_before: Optional[float] = None) -> TempRecording:
        """The only way back from FAILED: an explicit retry, optionally after a backoff."""
        return await self._move(temp_id, sql.TEMP_RETRY, "QUEUED", not_before=not_before)

    async def mark_temp_recording_cleaned(self, temp_id: str) -> TempRecording:
        """Record that the PCM is gone; only a DONE chunk's PCM may go."""
        return await self._move(temp_id, sql.TEMP_SET_CLEANED, "cleaned")

    async def requeue_failed_attempt(
        self, temp_id: str, *, error: str, not_before: Optional[float]
    ) -> TempRecording:
        """A failed attempt below the retry limit: FAILED, then the explicit retry, atomically.

        The row takes the lifecycle's own path (IN_PROGRESS → FAILED → QUEUED) inside
        one transaction, so nobody ever sees it FAILED: a promotion waiting for the
        queue would otherwise give up on audio that is about to be encoded again.
        """
        queued: list[sqlite3.Row] = []
        async with self._lock, self._immediate(self.conn) as conn:
            # The second step runs only if the first moved the row: a chunk already
            # FAILED for good must not be revived here.
            if await fetch_in(
                conn, sql.TEMP_SET_FAILED, {"id": temp_id, "error": error[:_MAX_ERROR_CHARS], "now": wall_clock()}
            ):
                queued = await fetch_in(conn, sql.TEMP_RETRY, {"id": temp_id, "not_before": not_before})
        if queued:
            return row_to(TempRecording, queued[0])
        current = await self.get_temp_recording(temp_id)
        raise IllegalTransition(
            f"Chunk {temp_id} is {current.transcode_status.value}; it cannot be retried."
        )

    async def claim_next_job(self, *, now: Optional[float] = None) -> Optional[TempRecording]:
        """Atomically take the oldest due QUEUED chunk and mark it IN_PROGRESS.

        The store is the queue: this is what lets jobs survive a restart and lets
        several workers share it without taking the same chunk twice.
        """
        due = wall_clock() if now is None else now
        claimed = await self._fetch_as(TempRecording, sql.TEMP_CLAIM_NEXT, {"now": due})
        return claimed[0] if claimed else None

    async def next_retry_at(self) -> Optional[float]:
        """When the earliest backed-off chunk becomes due, so workers sleep exactly that long."""
        rows = await self._fetch(sql.TEMP_FETCH_NEXT_RETRY_AT)
        value = rows[0][0]
        return None if value is None else float(value)

    async def requeue_in_progress(self, meeting_id: Optional[str] = None) -> int:
        """Recovery only: IN_PROGRESS rows whose worker died go back to QUEUED."""
        rows = await self._fetch(sql.TEMP_REQUEUE_IN_PROGRESS, {"meeting_id": meeting_id})
        return len(rows)

    async def get_temp_recordings_for_meeting(
        self,
        meeting_id: str,
        *,
        user_id: Optional[int] = None,
        status: Optional[TranscodeStatus] = None,
    ) -> list[TempRecording]:
        return await self._fetch_as(
            TempRecording,
            sql.TEMP_FETCH_FOR_MEETING,
            {
                "meeting_id": meeting_id,
                "user_id": user_id,
                "status": None if status is None else TranscodeStatus(status).value,
            },
        )

    async def pending_temp_recordings(self, meeting_id: Optional[str] = None) -> list[TempRecording]:
        """QUEUED and IN_PROGRESS chunks, oldest first: what still has to be transcoded."""
        return await self._fetch_as(TempRecording, sql.TEMP_FETCH_PENDING, {"meeting_id": meeting_id})

    async def temp_recordings_for_track(
        self, meeting_id: str, user_id: int, *, from_seq: int = 0, limit: int = 1000
    ) -> list[TempRecording]:
        """One track's chunks from ``from_seq`` on, in seq order (the assembler's read)."""
        return await self._fetch_as(
            TempRecording,
            sql.TEMP_FETCH_FOR_TRACK,
            {"meeting_id": meeting_id, "user_id": user_id, "from_seq": from_seq, "limit": limit},
        )

    async def failed_temp_recordings(self, *, max_attempts: Optional[int] = None) -> list[TempRecording]:
        """FAILED chunks (those with fewer than ``max_attempts`` attempts, if given)."""
        return await self._fetch_as(TempRecording, sql.TEMP_FETCH_FAILED, {"max_attempts": max_attempts})

    async def done_uncleaned_temp_recordings(self) -> list[TempRecording]:
        """DONE chunks whose PCM was not yet removed (a crash between the two steps)."""
        return await self._fetch_as(TempRecording, sql.TEMP_FETCH_DONE_UNCLEANED)

    async def chunk_counts(self, meeting_id: str) -> ChunkCounts:
        async with self._lock:
            return await count_chunks(self.conn, meeting_id)

    async def chunk_keys(self, meeting_id: str, *, from_seq: int = 0) -> set[tuple[int, int]]:
        """``(user_id, seq)`` of a meeting's chunk rows from ``from_seq`` on (cheap existence test)."""
        rows = await self._fetch(sql.TEMP_FETCH_CHUNK_KEYS, {"meeting_id": meeting_id, "from_seq": from_seq})
        return {(int(r[0]), int(r[1])) for r in rows}

    async def delete_temp_recordings(
        self, *, meeting_id: Optional[str] = None, ids: Optional[Sequence[str]] = None
    ) -> int:
        if (meeting_id is None) == (ids is None):
            raise ValueError("Give exactly one of meeting_id or ids.")
        statement: str
        params: Params
        if meeting_id is not None:
            statement, params = sql.TEMP_DELETE_FOR_MEETING, {"meeting_id": meeting_id}
        else:
            statement, params = sql.TEMP_DELETE_BY_IDS, {"ids": json.dumps(list(ids or ()))}
        return len(await self._fetch(statement, params))

    async def delete_temp_recordings_except_failed(self, meeting_id: str) -> int:
        """After promotion: drop the meeting's chunk rows but keep FAILED ones for a retry."""
        return len(await self._fetch(sql.TEMP_DELETE_FOR_MEETING_EXCEPT_FAILED, {"meeting_id": meeting_id}))

    async def stale_temp_recordings(self, ttl_s: float) -> list[TempRecording]:
        """Temp rows older than the TTL whose meeting is over (never a live meeting's)."""
        return await self._fetch_as(TempRecording, sql.TEMP_FETCH_STALE, {"before": wall_clock() - ttl_s})

    async def known_paths(self) -> set[str]:
        """Every file path a row still points at; the cleanup job never deletes these."""
        rows = await self._fetch(sql.FILES_FETCH_KNOWN_PATHS)
        return {str(r[0]) for r in rows}
