"""Versioned schema of the two-tier store.

Each migration is a list of statements applied in one transaction together with the
bump of ``PRAGMA user_version``, so a crash mid-migration leaves the previous version
intact. Never edit a released migration: append a new one.
"""

from __future__ import annotations

from typing import Sequence

#: Version 1: the design's tables as given, plus what correctness needs from day one
#: (chunk sequence with a uniqueness constraint, timeline position, attempts).
V1: Sequence[str] = (
    """
    CREATE TABLE meetings (
        id              TEXT PRIMARY KEY CHECK (length(id) = 16),
        guild_id        INTEGER NOT NULL,
        channel_id      INTEGER NOT NULL,
        started_by      INTEGER NOT NULL,
        started_at      REAL    NOT NULL,
        ended_at        REAL,
        status          TEXT    NOT NULL CHECK (status IN
                            ('ACTIVE','STOPPING','PROMOTED','INTERRUPTED','FAILED')),
        strategy        TEXT    NOT NULL CHECK (strategy IN ('per_user','mixed','hybrid')),
        flush_interval_s REAL   NOT NULL CHECK (flush_interval_s > 0),
        sample_rate     INTEGER NOT NULL CHECK (sample_rate > 0)
    )
    """,
    "CREATE INDEX meetings_guild ON meetings (guild_id, started_at)",
    "CREATE INDEX meetings_status ON meetings (status)",
    """
    CREATE TABLE temp_recordings (
        id               TEXT PRIMARY KEY CHECK (length(id) = 16),
        meeting_id       TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        user_id          INTEGER NOT NULL,
        guild_id         INTEGER NOT NULL,
        seq              INTEGER NOT NULL CHECK (seq >= 0),
        created_at       REAL    NOT NULL,
        completed_at     REAL,
        pcm_path         TEXT    NOT NULL,
        mp3_path         TEXT,
        transcode_status TEXT    NOT NULL DEFAULT 'QUEUED' CHECK (transcode_status IN
                             ('QUEUED','IN_PROGRESS','DONE','FAILED')),
        sha256           TEXT,
        duration_ms      INTEGER,
        cleaned          INTEGER NOT NULL DEFAULT 0 CHECK (cleaned IN (0, 1)),
        start_sample     INTEGER NOT NULL CHECK (start_sample >= 0),
        sample_count     INTEGER NOT NULL CHECK (sample_count > 0),
        attempts         INTEGER NOT NULL DEFAULT 0,
        last_error       TEXT,
        UNIQUE (meeting_id, user_id, seq)
    )
    """,
    "CREATE INDEX temp_status ON temp_recordings (transcode_status, created_at)",
    "CREATE INDEX temp_created ON temp_recordings (created_at)",
    """
    CREATE TABLE recordings (
        id             TEXT PRIMARY KEY CHECK (length(id) = 16),
        meeting_id     TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        created_at     REAL    NOT NULL,
        duration_in_ms INTEGER NOT NULL,
        sha256         TEXT    NOT NULL,
        filename       TEXT    NOT NULL,
        user_id        INTEGER,
        kind           TEXT    NOT NULL CHECK (kind IN ('per_user','mixed')),
        path           TEXT    NOT NULL,
        size_bytes     INTEGER NOT NULL
    )
    """,
    "CREATE INDEX recordings_meeting ON recordings (meeting_id)",
    "CREATE INDEX recordings_user ON recordings (user_id)",
)

#: Version 2: what the gapless encoder and the retry policy need: per-meeting encoding
#: parameters, each chunk's priming and look-ahead samples, and a retry time.
V2: Sequence[str] = (
    "ALTER TABLE meetings ADD COLUMN channels INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE meetings ADD COLUMN bitrate INTEGER NOT NULL DEFAULT 64000",
    "ALTER TABLE meetings ADD COLUMN length_samples INTEGER",
    "ALTER TABLE meetings ADD COLUMN note TEXT",
    "ALTER TABLE temp_recordings ADD COLUMN prime_samples INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE temp_recordings ADD COLUMN tail_samples INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE temp_recordings ADD COLUMN next_attempt_at REAL",
    "CREATE INDEX temp_meeting_user ON temp_recordings (meeting_id, user_id, seq)",
)

#: Version 3: what the pipeline needs to finish a meeting after a crash with the same
#: bytes it would have produced live: the encoder quality and audit setting the chunks
#: were made with, how many timeline windows are safely on disk (a window below that
#: with no chunk row for a track is silence, not a loss), and per track how far its
#: file has been assembled (``assembled_bytes`` is the length of the ``.part`` file
#: after ``assembled_seq`` chunks; anything beyond it is a half-done append to cut off).
V3: Sequence[str] = (
    "ALTER TABLE meetings ADD COLUMN quality INTEGER NOT NULL DEFAULT 7",
    "ALTER TABLE meetings ADD COLUMN keep_temp INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE meetings ADD COLUMN flushed_windows INTEGER NOT NULL DEFAULT 0",
    """
    CREATE TABLE tracks (
        meeting_id       TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        user_id          INTEGER NOT NULL,
        assembled_seq    INTEGER NOT NULL DEFAULT 0 CHECK (assembled_seq >= 0),
        assembled_bytes  INTEGER NOT NULL DEFAULT 0 CHECK (assembled_bytes >= 0),
        assembled_frames INTEGER NOT NULL DEFAULT 0 CHECK (assembled_frames >= 0),
        PRIMARY KEY (meeting_id, user_id)
    )
    """,
)

#: Version 4 (issue 12; the number issue 8 reserved was not on main yet, so this is the
#: next free one): notes taken during a meeting, each a marker at ``at_ms`` from t=0
#: with its author. They go with their meeting (cascade) and with their author's data.
V4: Sequence[str] = (
    """
    CREATE TABLE notes (
        id          TEXT    PRIMARY KEY CHECK (length(id) = 16),
        meeting_id  TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
        author_id   INTEGER NOT NULL,
        text        TEXT    NOT NULL,
        created_at  REAL    NOT NULL
    )
    """,
    "CREATE INDEX notes_meeting ON notes (meeting_id, at_ms)",
    "CREATE INDEX notes_author ON notes (author_id)",
)

#: Version 5 (issue 8, "nothing recorded is ever lost"; issue 12 took V4 first, so this is
#: the next free number): where a finished file is silent
#: though audio was recorded there, and what an admin or an erasure removed.
#:
#: ``gaps``: one row per track and window that a promotion filled with silence (a chunk
#: still failing, failed for good, or unreadable); its chunk row and PCM stay while
#: they exist, and a repair splices the chunk into the file and deletes the gap.
#: ``removals``: a meeting deleted, or a user's data erased (``subject`` is the user id,
#: ``removed_at`` the latest erasure), written in the same transaction as the rows it
#: removes: files a crash left behind are then known to be removable, and are never
#: adopted again (a chunk of an erased user older than the erasure stays erased).
V5: Sequence[str] = (
    """
    CREATE TABLE gaps (
        meeting_id   TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        user_id      INTEGER NOT NULL,
        seq          INTEGER NOT NULL CHECK (seq >= 0),
        start_sample INTEGER NOT NULL CHECK (start_sample >= 0),
        sample_count INTEGER NOT NULL CHECK (sample_count > 0),
        reason       TEXT    NOT NULL,
        created_at   REAL    NOT NULL,
        PRIMARY KEY (meeting_id, user_id, seq)
    )
    """,
    """
    CREATE TABLE removals (
        kind       TEXT NOT NULL CHECK (kind IN ('meeting', 'user')),
        subject    TEXT NOT NULL,
        removed_at REAL NOT NULL,
        PRIMARY KEY (kind, subject)
    )
    """,
)

#: Version 6 (issue 14, the lossless archive): the format a meeting's files are encoded in,
#: chosen at its start (``MeetingSettings.archive``) and kept for its whole life, so a
#: restart, a recovery or a repair encodes its remaining chunks alike.
V6: Sequence[str] = (
    "ALTER TABLE meetings ADD COLUMN archive TEXT NOT NULL DEFAULT 'mp3' CHECK (archive IN ('mp3', 'flac'))",
)

MIGRATIONS: Sequence[Sequence[str]] = (V1, V2, V3, V4, V5, V6)

#: The version a fully migrated database reports in ``PRAGMA user_version``.
LATEST_VERSION = len(MIGRATIONS)
