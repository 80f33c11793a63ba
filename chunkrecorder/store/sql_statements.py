"""Every SQL statement of the store, one named constant each (as Red's audio cog keeps them).

Reading one module shows everything the cog asks of its database, and a statement is
written once however many methods run it. Parameters are named (``:meeting_id``), so a
statement reads on its own and its callers pass a dict. The column lists of the rows
the store hands out are generated from the row dataclasses (:func:`.rows.columns`), so
a SELECT and the field it fills cannot disagree.

Lists of values (the statuses a move may start from, the chunk ids to delete) are one
JSON array parameter read with ``json_each``: the statement stays one constant whatever
the list's length, and no list runs into SQLite's limit on parameters.

The schema itself (``CREATE TABLE`` and every later change) is in ``schema.py``, as
versioned migrations.
"""

from __future__ import annotations

from typing import Final

from ..objects.records import Meeting, Note, Recording, TempRecording
from ..objects.results import Gap, MeetingPipeline, TrackAssembly
from .rows import columns

__all__ = [
    # connection and transactions
    "PRAGMA_SET_BUSY_TIMEOUT",
    "PRAGMA_SET_JOURNAL_MODE_WAL",
    "PRAGMA_SET_SYNCHRONOUS_NORMAL",
    "PRAGMA_SET_FOREIGN_KEYS_ON",
    "PRAGMA_FETCH_USER_VERSION",
    "PRAGMA_SET_USER_VERSION",
    "TRANSACTION_BEGIN_IMMEDIATE",
    "TRANSACTION_COMMIT",
    "TRANSACTION_ROLLBACK",
    # meetings
    "MEETING_COLUMNS",
    "MEETINGS_INSERT",
    "MEETINGS_FETCH",
    "MEETINGS_MOVE",
    "MEETINGS_FETCH_PAGE_FOR_GUILD",
    "MEETINGS_COUNT_FOR_GUILD",
    "MEETINGS_FETCH_LEFT_OPEN",
    "MEETINGS_FETCH_WITH_STATUS",
    "MEETINGS_FETCH_ALL_IDS",
    "MEETINGS_DELETE",
    "MEETINGS_SET_PIPELINE",
    "MEETINGS_FETCH_PIPELINE",
    "MEETINGS_SET_FLUSHED_WINDOWS",
    # temp_recordings
    "TEMP_COLUMNS",
    "TEMP_INSERT",
    "TEMP_FETCH",
    "TEMP_FETCH_BY_KEY",
    "TEMP_SET_STARTED",
    "TEMP_SET_COMPLETED",
    "TEMP_SET_FAILED",
    "TEMP_RETRY",
    "TEMP_SET_CLEANED",
    "TEMP_CLAIM_NEXT",
    "TEMP_FETCH_NEXT_RETRY_AT",
    "TEMP_REQUEUE_IN_PROGRESS",
    "TEMP_FETCH_FOR_MEETING",
    "TEMP_FETCH_PENDING",
    "TEMP_FETCH_FOR_TRACK",
    "TEMP_FETCH_FAILED",
    "TEMP_FETCH_DONE_UNCLEANED",
    "TEMP_FETCH_STALE",
    "TEMP_FETCH_CHUNK_KEYS",
    "TEMP_COUNT_BY_STATUS",
    "TEMP_DELETE_FOR_MEETING",
    "TEMP_DELETE_FOR_MEETING_EXCEPT_FAILED",
    "TEMP_DELETE_BY_IDS",
    "FILES_FETCH_KNOWN_PATHS",
    # recordings
    "RECORDING_COLUMNS",
    "RECORDINGS_WITH_GUILD",
    "RECORDINGS_INSERT",
    "RECORDINGS_FETCH",
    "RECORDINGS_FETCH_FOR_MEETING",
    "RECORDINGS_FETCH_PAGE_FOR_GUILD",
    "RECORDINGS_COUNT_FOR_GUILD",
    "RECORDINGS_FETCH_OLDER_THAN",
    "RECORDINGS_DELETE",
    # a user's data (recordings and temp_recordings)
    "USER_RECORDINGS_FETCH",
    "USER_TEMP_FETCH",
    "USER_RECORDINGS_DELETE",
    "USER_TEMP_DELETE",
    "USER_GAPS_DELETE",
    # tracks
    "TRACK_COLUMNS",
    "TRACKS_INSERT_MISSING",
    "TRACKS_FETCH_FOR_MEETING",
    "TRACKS_ADVANCE",
    "TRACKS_DELETE_FOR_USER_UNFINISHED",
    # notes (V4)
    "NOTE_COLUMNS",
    "NOTES_INSERT",
    "NOTES_FETCH_FOR_MEETING",
    "NOTES_DELETE_FOR_AUTHOR",
    "NOTES_MEETINGS_OF_AUTHOR",
    "RECORDINGS_SET_FILE",
    # gaps (V5)
    "GAP_COLUMNS",
    "GAPS_INSERT",
    "GAPS_FETCH_FOR_MEETING",
    "GAPS_COUNT_FOR_MEETING",
    "GAPS_DELETE_SEQS",
    "GAPS_DELETE_TRACK",
    "TEMP_COUNT_PENDING_NOT_GAP",
    "TEMP_DELETE_FOR_MEETING_EXCEPT_GAPS",
    "TEMP_FETCH_FOR_GAPS",
    "TEMP_REQUEUE_GAPS",
    "TRACK_ROWS_DELETE_AFTER_RECORDING",
    "TRACK_TEMP_FETCH",
    # removals (V5)
    "REMOVALS_INSERT",
    "REMOVALS_FETCH",
    "MEETINGS_INSERT_ADOPTED",
    "TRACKS_INSERT_ADOPTED",
    "TEMP_INSERT_DONE",
    "TEMP_REENCODE",
]

# ------------------------------------------------------------------ connection
# PRAGMAs take no parameters: the two with a number are formatted with an int.
PRAGMA_SET_BUSY_TIMEOUT: Final = "PRAGMA busy_timeout = {milliseconds:d}"
PRAGMA_SET_JOURNAL_MODE_WAL: Final = "PRAGMA journal_mode = WAL"
PRAGMA_SET_SYNCHRONOUS_NORMAL: Final = "PRAGMA synchronous = NORMAL"
PRAGMA_SET_FOREIGN_KEYS_ON: Final = "PRAGMA foreign_keys = ON"
PRAGMA_FETCH_USER_VERSION: Final = "PRAGMA user_version"
PRAGMA_SET_USER_VERSION: Final = "PRAGMA user_version = {version:d}"

TRANSACTION_BEGIN_IMMEDIATE: Final = "BEGIN IMMEDIATE"
TRANSACTION_COMMIT: Final = "COMMIT"
TRANSACTION_ROLLBACK: Final = "ROLLBACK"

# ------------------------------------------------------------------ meetings
MEETING_COLUMNS: Final = columns(Meeting)

MEETINGS_INSERT: Final = f"""
INSERT INTO meetings (id, guild_id, channel_id, started_by, started_at, status,
                      strategy, flush_interval_s, sample_rate, channels, bitrate)
VALUES (:id, :guild_id, :channel_id, :started_by, :started_at, 'ACTIVE',
        :strategy, :flush_interval_s, :sample_rate, :channels, :bitrate)
RETURNING {MEETING_COLUMNS}
"""

MEETINGS_FETCH: Final = f"SELECT {MEETING_COLUMNS} FROM meetings WHERE id = :id"

#: A lifecycle move: only from a status in ``:allowed_from`` (a JSON array), so the
#: check and the write are one atomic step. ``ended_at`` is stamped on the first move.
MEETINGS_MOVE: Final = f"""
UPDATE meetings
SET status = :status,
    ended_at = coalesce(ended_at, :now),
    length_samples = coalesce(:length_samples, length_samples),
    note = coalesce(:note, note)
WHERE id = :id AND status IN (SELECT value FROM json_each(:allowed_from))
RETURNING {MEETING_COLUMNS}
"""

MEETINGS_FETCH_PAGE_FOR_GUILD: Final = f"""
SELECT {MEETING_COLUMNS} FROM meetings WHERE guild_id = :guild_id
ORDER BY started_at DESC, id LIMIT :limit OFFSET :offset
"""

MEETINGS_COUNT_FOR_GUILD: Final = "SELECT count(*) FROM meetings WHERE guild_id = :guild_id"

MEETINGS_FETCH_LEFT_OPEN: Final = f"""
SELECT {MEETING_COLUMNS} FROM meetings WHERE status IN ('ACTIVE', 'STOPPING') ORDER BY started_at
"""

MEETINGS_FETCH_WITH_STATUS: Final = f"""
SELECT {MEETING_COLUMNS} FROM meetings
WHERE status IN (SELECT value FROM json_each(:statuses)) ORDER BY started_at
"""

MEETINGS_FETCH_ALL_IDS: Final = "SELECT id FROM meetings"

#: The meeting's temp, persistent and track rows go with it (ON DELETE CASCADE).
MEETINGS_DELETE: Final = "DELETE FROM meetings WHERE id = :id"

MEETINGS_SET_PIPELINE: Final = (
    "UPDATE meetings SET quality = :quality, keep_temp = :keep_temp, archive = :archive WHERE id = :id"
)

MEETINGS_FETCH_PIPELINE: Final = f"SELECT {columns(MeetingPipeline)} FROM meetings WHERE id = :id"

#: Never moves backwards: a flush re-run after a crash is harmless.
MEETINGS_SET_FLUSHED_WINDOWS: Final = """
UPDATE meetings
SET flushed_windows = max(flushed_windows, :windows),
    length_samples = coalesce(:length_samples, length_samples)
WHERE id = :id
"""

# ------------------------------------------------------------------ temp_recordings
TEMP_COLUMNS: Final = columns(TempRecording)

#: Idempotent per (meeting, user, seq): a repeat inserts nothing and returns no row.
TEMP_INSERT: Final = f"""
INSERT INTO temp_recordings (id, meeting_id, user_id, guild_id, seq, created_at, pcm_path,
                             start_sample, sample_count, prime_samples, tail_samples)
VALUES (:id, :meeting_id, :user_id, :guild_id, :seq, :created_at, :pcm_path,
        :start_sample, :sample_count, :prime_samples, :tail_samples)
ON CONFLICT (meeting_id, user_id, seq) DO NOTHING
RETURNING {TEMP_COLUMNS}
"""

TEMP_FETCH: Final = f"SELECT {TEMP_COLUMNS} FROM temp_recordings WHERE id = :id"

TEMP_FETCH_BY_KEY: Final = f"""
SELECT {TEMP_COLUMNS} FROM temp_recordings
WHERE meeting_id = :meeting_id AND user_id = :user_id AND seq = :seq
"""

# The lifecycle moves: each names the one status it moves from, so an illegal move
# matches no row and writes nothing.
TEMP_SET_STARTED: Final = f"""
UPDATE temp_recordings
SET transcode_status = 'IN_PROGRESS', attempts = attempts + 1, next_attempt_at = NULL
WHERE id = :id AND transcode_status = 'QUEUED'
RETURNING {TEMP_COLUMNS}
"""

TEMP_SET_COMPLETED: Final = f"""
UPDATE temp_recordings
SET transcode_status = 'DONE', mp3_path = :mp3_path, sha256 = :sha256, duration_ms = :duration_ms,
    completed_at = :now, last_error = NULL
WHERE id = :id AND transcode_status = 'IN_PROGRESS'
RETURNING {TEMP_COLUMNS}
"""

TEMP_SET_FAILED: Final = f"""
UPDATE temp_recordings
SET transcode_status = 'FAILED', last_error = :error, completed_at = :now
WHERE id = :id AND transcode_status = 'IN_PROGRESS'
RETURNING {TEMP_COLUMNS}
"""

#: The only way back from FAILED.
TEMP_RETRY: Final = f"""
UPDATE temp_recordings
SET transcode_status = 'QUEUED', completed_at = NULL, next_attempt_at = :not_before
WHERE id = :id AND transcode_status = 'FAILED'
RETURNING {TEMP_COLUMNS}
"""

#: Only a DONE chunk's PCM may go.
TEMP_SET_CLEANED: Final = f"""
UPDATE temp_recordings SET cleaned = 1
WHERE id = :id AND transcode_status = 'DONE'
RETURNING {TEMP_COLUMNS}
"""

#: The oldest due QUEUED chunk becomes IN_PROGRESS in one statement: two workers never
#: take the same chunk.
TEMP_CLAIM_NEXT: Final = f"""
UPDATE temp_recordings
SET transcode_status = 'IN_PROGRESS', attempts = attempts + 1, next_attempt_at = NULL
WHERE id = (SELECT id FROM temp_recordings
            WHERE transcode_status = 'QUEUED' AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
            ORDER BY created_at, seq LIMIT 1)
  AND transcode_status = 'QUEUED'
RETURNING {TEMP_COLUMNS}
"""

TEMP_FETCH_NEXT_RETRY_AT: Final = (
    "SELECT min(next_attempt_at) FROM temp_recordings WHERE transcode_status = 'QUEUED'"
)

#: Recovery only (``:meeting_id`` NULL = every meeting): the worker of these rows died.
TEMP_REQUEUE_IN_PROGRESS: Final = """
UPDATE temp_recordings SET transcode_status = 'QUEUED'
WHERE transcode_status = 'IN_PROGRESS' AND (:meeting_id IS NULL OR meeting_id = :meeting_id)
RETURNING id
"""

#: ``:user_id`` and ``:status`` NULL = any.
TEMP_FETCH_FOR_MEETING: Final = f"""
SELECT {TEMP_COLUMNS} FROM temp_recordings
WHERE meeting_id = :meeting_id
  AND (:user_id IS NULL OR user_id = :user_id)
  AND (:status IS NULL OR transcode_status = :status)
ORDER BY user_id, seq
"""

#: ``:meeting_id`` NULL = every meeting.
TEMP_FETCH_PENDING: Final = f"""
SELECT {TEMP_COLUMNS} FROM temp_recordings
WHERE transcode_status IN ('QUEUED', 'IN_PROGRESS') AND (:meeting_id IS NULL OR meeting_id = :meeting_id)
ORDER BY created_at, seq
"""

TEMP_FETCH_FOR_TRACK: Final = f"""
SELECT {TEMP_COLUMNS} FROM temp_recordings
WHERE meeting_id = :meeting_id AND user_id = :user_id AND seq >= :from_seq
ORDER BY seq LIMIT :limit
"""

#: ``:max_attempts`` NULL = however many attempts.
TEMP_FETCH_FAILED: Final = f"""
SELECT {TEMP_COLUMNS} FROM temp_recordings
WHERE transcode_status = 'FAILED' AND (:max_attempts IS NULL OR attempts < :max_attempts)
ORDER BY created_at, seq
"""

TEMP_FETCH_DONE_UNCLEANED: Final = f"""
SELECT {TEMP_COLUMNS} FROM temp_recordings WHERE transcode_status = 'DONE' AND cleaned = 0
"""

#: Old rows of finished meetings whose audio a recording holds. Never a row of a
#: meeting that is not PROMOTED (its chunks are all it has, whatever their age: a
#: FAILED meeting is promoted again), and never a gap's chunk (kept for the repair).
TEMP_FETCH_STALE: Final = f"""
SELECT {columns(TempRecording, table="t")}
FROM temp_recordings t JOIN meetings m ON m.id = t.meeting_id
WHERE t.created_at < :before AND m.status = 'PROMOTED'
  AND NOT EXISTS (SELECT 1 FROM gaps g
                  WHERE g.meeting_id = t.meeting_id AND g.user_id = t.user_id AND g.seq = t.seq)
ORDER BY t.created_at
"""

TEMP_FETCH_CHUNK_KEYS: Final = """
SELECT user_id, seq FROM temp_recordings WHERE meeting_id = :meeting_id AND seq >= :from_seq
"""

TEMP_COUNT_BY_STATUS: Final = """
SELECT transcode_status, count(*) FROM temp_recordings WHERE meeting_id = :meeting_id
GROUP BY transcode_status
"""

TEMP_DELETE_FOR_MEETING: Final = "DELETE FROM temp_recordings WHERE meeting_id = :meeting_id RETURNING id"

#: After promotion: FAILED rows stay for a retry.
TEMP_DELETE_FOR_MEETING_EXCEPT_FAILED: Final = """
DELETE FROM temp_recordings WHERE meeting_id = :meeting_id AND transcode_status != 'FAILED'
RETURNING id
"""

TEMP_DELETE_BY_IDS: Final = """
DELETE FROM temp_recordings WHERE id IN (SELECT value FROM json_each(:ids)) RETURNING id
"""

#: Every file a row points at, in either tier: the cleanup job never deletes these.
FILES_FETCH_KNOWN_PATHS: Final = """
SELECT pcm_path FROM temp_recordings
UNION SELECT mp3_path FROM temp_recordings WHERE mp3_path IS NOT NULL
UNION SELECT path FROM recordings
"""

# ------------------------------------------------------------------ recordings
#: A recording's ``guild_id`` is its meeting's: the one join every recording read uses.
RECORDING_COLUMNS: Final = columns(Recording, table="r", sources={"guild_id": "m"})
_RECORDINGS_JOIN_MEETINGS: Final = "recordings r JOIN meetings m ON m.id = r.meeting_id"

#: Recordings with their meeting's guild; every recording read is this plus a WHERE.
RECORDINGS_WITH_GUILD: Final = f"SELECT {RECORDING_COLUMNS} FROM {_RECORDINGS_JOIN_MEETINGS}"

RECORDINGS_INSERT: Final = """
INSERT INTO recordings (id, meeting_id, created_at, duration_in_ms, sha256, filename,
                        user_id, kind, path, size_bytes)
VALUES (:id, :meeting_id, :created_at, :duration_in_ms, :sha256, :filename,
        :user_id, :kind, :path, :size_bytes)
RETURNING id
"""

RECORDINGS_FETCH: Final = f"{RECORDINGS_WITH_GUILD} WHERE r.id = :id"

RECORDINGS_FETCH_FOR_MEETING: Final = f"""
{RECORDINGS_WITH_GUILD} WHERE r.meeting_id = :meeting_id ORDER BY r.kind DESC, r.user_id
"""

RECORDINGS_FETCH_PAGE_FOR_GUILD: Final = f"""
{RECORDINGS_WITH_GUILD} WHERE m.guild_id = :guild_id
ORDER BY r.created_at DESC, r.id LIMIT :limit OFFSET :offset
"""

RECORDINGS_COUNT_FOR_GUILD: Final = (
    f"SELECT count(*) FROM {_RECORDINGS_JOIN_MEETINGS} WHERE m.guild_id = :guild_id"
)

RECORDINGS_FETCH_OLDER_THAN: Final = f"""
{RECORDINGS_WITH_GUILD} WHERE r.created_at < :before ORDER BY r.created_at
"""

RECORDINGS_DELETE: Final = "DELETE FROM recordings WHERE id = :id"

# ------------------------------------------------------------------ a user's data
# A user's own data is their per-user files and their chunks; a mixed file holds
# everyone's voices and belongs to nobody alone.
USER_RECORDINGS_FETCH: Final = f"""
{RECORDINGS_WITH_GUILD} WHERE r.user_id = :user_id AND r.kind = 'per_user'
"""

USER_TEMP_FETCH: Final = f"SELECT {TEMP_COLUMNS} FROM temp_recordings WHERE user_id = :user_id"

USER_RECORDINGS_DELETE: Final = "DELETE FROM recordings WHERE user_id = :user_id AND kind = 'per_user'"

USER_TEMP_DELETE: Final = "DELETE FROM temp_recordings WHERE user_id = :user_id"

#: A user's gaps go with their files (``user_id`` is never 0, the mix's).
USER_GAPS_DELETE: Final = "DELETE FROM gaps WHERE user_id = :user_id"

# ------------------------------------------------------------------ tracks
TRACK_COLUMNS: Final = columns(TrackAssembly)

TRACKS_INSERT_MISSING: Final = """
INSERT INTO tracks (meeting_id, user_id) VALUES (:meeting_id, :user_id)
ON CONFLICT (meeting_id, user_id) DO NOTHING
"""

TRACKS_FETCH_FOR_MEETING: Final = f"""
SELECT {TRACK_COLUMNS} FROM tracks WHERE meeting_id = :meeting_id ORDER BY user_id
"""

#: Only from where the caller read it: a concurrent append makes this match nothing.
TRACKS_ADVANCE: Final = """
UPDATE tracks SET assembled_seq = :to_seq, assembled_bytes = :bytes, assembled_frames = :frames
WHERE meeting_id = :meeting_id AND user_id = :user_id AND assembled_seq = :from_seq
RETURNING user_id
"""

#: Erasure: a user's assembly rows in meetings not yet promoted (their ``.part`` files).
TRACKS_DELETE_FOR_USER_UNFINISHED: Final = """
DELETE FROM tracks
WHERE user_id = :user_id AND meeting_id IN (SELECT id FROM meetings WHERE status != 'PROMOTED')
RETURNING meeting_id
"""

# ------------------------------------------------------------------ notes (V4)
NOTE_COLUMNS: Final = columns(Note)

NOTES_INSERT: Final = f"""
INSERT INTO notes (id, meeting_id, at_ms, author_id, text, created_at)
VALUES (:id, :meeting_id, :at_ms, :author_id, :text, :created_at)
RETURNING {NOTE_COLUMNS}
"""

NOTES_FETCH_FOR_MEETING: Final = f"""
SELECT {NOTE_COLUMNS} FROM notes WHERE meeting_id = :meeting_id ORDER BY at_ms, created_at, id
"""

#: A data deletion: the author's notes go; the meetings they were in are returned so
#: that files made from them (labels, chapters) can be rewritten without them.
NOTES_DELETE_FOR_AUTHOR: Final = "DELETE FROM notes WHERE author_id = :author_id RETURNING meeting_id"

NOTES_MEETINGS_OF_AUTHOR: Final = "SELECT DISTINCT meeting_id FROM notes WHERE author_id = :author_id"

#: A finished file rewritten in place (its tag changed): its new digest and size.
RECORDINGS_SET_FILE: Final = """
UPDATE recordings SET sha256 = :sha256, size_bytes = :size_bytes WHERE id = :id RETURNING id
"""

# ------------------------------------------------------------------ gaps (V5)
#: A gap and the status of the chunk kept for its repair (NULL: nothing kept).
GAP_COLUMNS: Final = ", ".join(
    [f"g.{name} AS {name}" for name in
     ("meeting_id", "user_id", "seq", "start_sample", "sample_count", "reason", "created_at")]
    + ["t.transcode_status AS chunk_status"]
)
_GAPS_JOIN_TEMP: Final = (
    "gaps g LEFT JOIN temp_recordings t "
    "ON t.meeting_id = g.meeting_id AND t.user_id = g.user_id AND t.seq = g.seq"
)

#: Idempotent: assembly re-run after a crash records the same gap once.
GAPS_INSERT: Final = """
INSERT INTO gaps (meeting_id, user_id, seq, start_sample, sample_count, reason, created_at)
VALUES (:meeting_id, :user_id, :seq, :start_sample, :sample_count, :reason, :created_at)
ON CONFLICT (meeting_id, user_id, seq) DO NOTHING
"""

GAPS_FETCH_FOR_MEETING: Final = f"""
SELECT {GAP_COLUMNS} FROM {_GAPS_JOIN_TEMP} WHERE g.meeting_id = :meeting_id ORDER BY g.seq, g.user_id
"""

GAPS_COUNT_FOR_MEETING: Final = "SELECT count(*) FROM gaps WHERE meeting_id = :meeting_id"

GAPS_DELETE_SEQS: Final = """
DELETE FROM gaps WHERE meeting_id = :meeting_id AND user_id = :user_id
  AND seq IN (SELECT value FROM json_each(:seqs))
"""

GAPS_DELETE_TRACK: Final = "DELETE FROM gaps WHERE meeting_id = :meeting_id AND user_id = :user_id"

#: Chunks a promotion still has to wait for: pending ones that are not gaps (a gap's
#: chunk may go on retrying after the promotion; the repair takes it in).
TEMP_COUNT_PENDING_NOT_GAP: Final = """
SELECT count(*) FROM temp_recordings t
WHERE t.meeting_id = :meeting_id AND t.transcode_status IN ('QUEUED', 'IN_PROGRESS')
  AND NOT EXISTS (SELECT 1 FROM gaps g
                  WHERE g.meeting_id = t.meeting_id AND g.user_id = t.user_id AND g.seq = t.seq)
"""

#: After promotion: the chunks of gaps stay for the repair, the rest go.
TEMP_DELETE_FOR_MEETING_EXCEPT_GAPS: Final = """
DELETE FROM temp_recordings
WHERE meeting_id = :meeting_id
  AND NOT EXISTS (SELECT 1 FROM gaps g
                  WHERE g.meeting_id = temp_recordings.meeting_id AND g.user_id = temp_recordings.user_id
                    AND g.seq = temp_recordings.seq)
RETURNING id
"""

#: The chunk rows of a meeting's gaps.
TEMP_FETCH_FOR_GAPS: Final = f"""
SELECT {columns(TempRecording, table="t")}
FROM temp_recordings t JOIN gaps g ON g.meeting_id = t.meeting_id AND g.user_id = t.user_id AND g.seq = t.seq
WHERE t.meeting_id = :meeting_id ORDER BY t.user_id, t.seq
"""

#: A repair asked for now: every gap chunk not DONE is due again (FAILED ones get a new
#: round of attempts: a deterministic failure may be gone after an update).
TEMP_REQUEUE_GAPS: Final = f"""
UPDATE temp_recordings
SET transcode_status = 'QUEUED', next_attempt_at = NULL, completed_at = NULL,
    attempts = CASE WHEN transcode_status = 'FAILED' THEN 0 ELSE attempts END
WHERE meeting_id = :meeting_id AND transcode_status IN ('QUEUED', 'FAILED')
  AND EXISTS (SELECT 1 FROM gaps g
              WHERE g.meeting_id = temp_recordings.meeting_id AND g.user_id = temp_recordings.user_id
                AND g.seq = temp_recordings.seq)
RETURNING {TEMP_COLUMNS}
"""

#: A track's chunk rows left after its recording is gone (a deleted or expired file):
#: the gaps' chunks, read before they are deleted with the recording.
TRACK_TEMP_FETCH: Final = f"""
SELECT {TEMP_COLUMNS} FROM temp_recordings WHERE meeting_id = :meeting_id AND user_id = :user_id
"""

TRACK_ROWS_DELETE_AFTER_RECORDING: Final = """
DELETE FROM temp_recordings WHERE meeting_id = :meeting_id AND user_id = :user_id
"""

# ------------------------------------------------------------------ removals (V5)
#: Written with the rows a deletion or an erasure removes; a user's latest erasure wins.
REMOVALS_INSERT: Final = """
INSERT INTO removals (kind, subject, removed_at) VALUES (:kind, :subject, :removed_at)
ON CONFLICT (kind, subject) DO UPDATE SET removed_at = max(removed_at, excluded.removed_at)
"""

REMOVALS_FETCH: Final = "SELECT kind, subject, removed_at FROM removals"

#: A meeting found again from its manifest after the database was lost (``adoption``).
MEETINGS_INSERT_ADOPTED: Final = f"""
INSERT INTO meetings (id, guild_id, channel_id, started_by, started_at, ended_at, status, strategy,
                      flush_interval_s, sample_rate, channels, bitrate, length_samples, note, quality, archive)
VALUES (:id, :guild_id, :channel_id, :started_by, :started_at, :ended_at, :status, :strategy,
        :flush_interval_s, :sample_rate, :channels, :bitrate, :length_samples, :note, :quality, :archive)
ON CONFLICT (id) DO NOTHING
RETURNING {MEETING_COLUMNS}
"""

#: A track found again: how far its ``.part`` (or finished file) holds whole windows.
TRACKS_INSERT_ADOPTED: Final = """
INSERT INTO tracks (meeting_id, user_id, assembled_seq, assembled_bytes, assembled_frames)
VALUES (:meeting_id, :user_id, :assembled_seq, :assembled_bytes, :assembled_frames)
ON CONFLICT (meeting_id, user_id) DO NOTHING
"""

#: A chunk found again as its encoded MP3 alone (its PCM was removed once it was DONE).
TEMP_INSERT_DONE: Final = f"""
INSERT INTO temp_recordings (id, meeting_id, user_id, guild_id, seq, created_at, completed_at, pcm_path,
                             mp3_path, transcode_status, sha256, duration_ms, cleaned, start_sample,
                             sample_count, prime_samples, tail_samples, attempts)
VALUES (:id, :meeting_id, :user_id, :guild_id, :seq, :created_at, :created_at, :pcm_path,
        :mp3_path, 'DONE', :sha256, :duration_ms, 1, :start_sample,
        :sample_count, :prime_samples, :tail_samples, 1)
ON CONFLICT (meeting_id, user_id, seq) DO NOTHING
RETURNING {TEMP_COLUMNS}
"""

#: A done chunk whose MP3 was found damaged while its PCM is still there: encode it again.
TEMP_REENCODE: Final = f"""
UPDATE temp_recordings
SET transcode_status = 'QUEUED', mp3_path = NULL, sha256 = NULL, duration_ms = NULL, cleaned = 0,
    completed_at = NULL, next_attempt_at = NULL
WHERE id = :id AND transcode_status = 'DONE'
RETURNING {TEMP_COLUMNS}
"""
