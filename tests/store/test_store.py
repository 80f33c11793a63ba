"""The two-tier store on real SQLite files: lifecycle, transitions, migrations, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from freezegun import freeze_time

from chunkrecorder.objects import (
    IllegalTransition,
    MeetingStatus,
    RecordingKind,
    Strategy,
    TranscodeStatus,
)
from chunkrecorder.store import NewRecording, NotFound, SqlRecordingService, StoreError
from chunkrecorder.store.schema import LATEST_VERSION, MIGRATIONS

GUILD = 111
OTHER_GUILD = 222


@pytest.fixture
async def store(tmp_path: Path):
    async with SqlRecordingService(tmp_path / "store.sqlite3") as s:
        yield s


async def _meeting(store: SqlRecordingService, guild: int = GUILD):
    return await store.create_meeting(guild_id=guild, channel_id=5, started_by=7)


async def _chunk(store, meeting, user=42, seq=0, **kw):
    return await store.insert_temp_recording(
        meeting_id=meeting.id,
        user_id=user,
        guild_id=meeting.guild_id,
        pcm_path=f"/chunks/{meeting.id}/{user}_{seq}.pcm",
        seq=seq,
        start_sample=seq * 480_384,
        sample_count=480_384,
        **kw,
    )


def _file(user: int | None, kind=RecordingKind.PER_USER, name="f.mp3") -> NewRecording:
    return NewRecording(
        kind=kind,
        user_id=user,
        filename=name,
        path=f"/rec/{name}",
        duration_in_ms=20_016,
        sha256="ab" * 32,
        size_bytes=1234,
    )


# ---------------------------------------------------------------- schema and migrations


async def test_new_file_is_migrated_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "new.sqlite3"
    async with SqlRecordingService(path) as store:
        assert await store.schema_version() == LATEST_VERSION
        (mode,) = (await store.conn.execute_fetchall("PRAGMA journal_mode"))[0]
        (fk,) = (await store.conn.execute_fetchall("PRAGMA foreign_keys"))[0]
    assert mode == "wal"
    assert fk == 1
    assert path.exists()


@pytest.mark.parametrize("from_version", range(1, LATEST_VERSION))
async def test_migrates_from_each_earlier_version_keeping_rows(tmp_path: Path, from_version: int) -> None:
    path = tmp_path / "old.sqlite3"
    con = sqlite3.connect(path)
    for statements in MIGRATIONS[:from_version]:
        for sql in statements:
            con.execute(sql)
    con.execute(f"PRAGMA user_version = {from_version}")
    con.execute(
        "INSERT INTO meetings (id, guild_id, channel_id, started_by, started_at, status, strategy, "
        "flush_interval_s, sample_rate) VALUES ('0123456789abcdef', 1, 2, 3, 1.0, 'ACTIVE', 'hybrid', 10, 48000)"
    )
    con.execute(
        "INSERT INTO temp_recordings (id, meeting_id, user_id, guild_id, seq, created_at, pcm_path, "
        "start_sample, sample_count) VALUES ('fedcba9876543210', '0123456789abcdef', 9, 1, 0, 1.0, '/x.pcm', 0, 960)"
    )
    con.commit()
    con.close()

    async with SqlRecordingService(path) as store:
        assert await store.schema_version() == LATEST_VERSION
        meeting = await store.get_meeting("0123456789abcdef")
        chunks = await store.get_temp_recordings_for_meeting(meeting.id)
    assert meeting.status is MeetingStatus.ACTIVE
    assert meeting.channels == 1 and meeting.bitrate == 64_000
    assert [c.id for c in chunks] == ["fedcba9876543210"]
    assert chunks[0].prime_samples == 0


async def test_refuses_a_database_from_a_newer_cog(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        await SqlRecordingService(path).open()


async def test_failed_migration_leaves_previous_version(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "half.sqlite3"
    con = sqlite3.connect(path)
    for sql in MIGRATIONS[0]:
        con.execute(sql)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    broken = list(MIGRATIONS)
    broken[1] = (*MIGRATIONS[1][:2], "THIS IS NOT SQL")
    monkeypatch.setattr("chunkrecorder.store.database.MIGRATIONS", broken)
    with pytest.raises(StoreError, match="half.sqlite3 cannot be opened"):
        await SqlRecordingService(path).open()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    cols = {r[1] for r in con.execute("PRAGMA table_info(meetings)")}
    con.close()
    assert "channels" not in cols  # the half-applied V2 was rolled back


# ---------------------------------------------------------------- meetings


async def test_meeting_ids_are_16_chars_and_timestamps_come_from_the_clock(store) -> None:
    with freeze_time("2026-01-02 03:04:05", real_asyncio=True):
        meeting = await store.create_meeting(
            guild_id=GUILD, channel_id=5, started_by=7, strategy=Strategy.MIXED, flush_interval_s=5
        )
    assert len(meeting.id) == 16
    assert meeting.started_at == pytest.approx(1767323045.0)
    assert meeting.strategy is Strategy.MIXED and meeting.flush_interval_s == 5
    assert meeting.status is MeetingStatus.ACTIVE and meeting.ended_at is None


async def test_meeting_moves_forward_and_refuses_going_back(store) -> None:
    meeting = await _meeting(store)
    with freeze_time("2026-01-02 03:05:00", real_asyncio=True):
        stopping = await store.set_meeting_status(meeting.id, MeetingStatus.STOPPING)
    assert stopping.ended_at == pytest.approx(1767323100.0)
    promoted = await store.promote_temp_recordings_to_persistent(meeting.id, [])
    assert promoted == []
    with pytest.raises(IllegalTransition, match="PROMOTED"):
        await store.set_meeting_status(meeting.id, MeetingStatus.ACTIVE)
    assert (await store.get_meeting(meeting.id)).status is MeetingStatus.PROMOTED


async def test_interrupted_meeting_can_be_promoted_later(store) -> None:
    meeting = await _meeting(store)
    await store.set_meeting_status(meeting.id, MeetingStatus.INTERRUPTED)
    assert [m.id for m in await store.meetings_with_status(MeetingStatus.INTERRUPTED)] == [meeting.id]
    await store.set_meeting_status(meeting.id, MeetingStatus.STOPPING)
    assert (await store.get_meeting(meeting.id)).status is MeetingStatus.STOPPING


async def test_meetings_left_open_finds_active_and_stopping_only(store) -> None:
    a = await _meeting(store)
    b = await _meeting(store)
    c = await _meeting(store)
    await store.set_meeting_status(b.id, MeetingStatus.STOPPING)
    await store.set_meeting_status(c.id, MeetingStatus.FAILED)
    assert {m.id for m in await store.meetings_left_open()} == {a.id, b.id}


async def test_meeting_pages_are_per_guild_newest_first(store) -> None:
    ids = []
    for minute in range(12):
        with freeze_time(f"2026-01-02 03:{minute:02d}:00", real_asyncio=True):
            ids.append((await _meeting(store)).id)
    await _meeting(store, guild=OTHER_GUILD)
    page1, total = await store.list_meetings(GUILD, limit=5)
    page3, _ = await store.list_meetings(GUILD, limit=5, offset=10)
    assert total == 12
    assert [m.id for m in page1] == ids[::-1][:5]
    assert [m.id for m in page3] == ids[::-1][10:]
    with pytest.raises(NotFound):
        await store.get_meeting(ids[0], guild_id=OTHER_GUILD)


# ---------------------------------------------------------------- temp chunks


async def test_chunk_lifecycle_records_every_field(store) -> None:
    meeting = await _meeting(store)
    with freeze_time("2026-03-01 10:00:00", real_asyncio=True):
        chunk = await _chunk(store, meeting, prime_samples=1199, tail_samples=2304)
    assert chunk.transcode_status is TranscodeStatus.QUEUED
    assert (chunk.seq, chunk.start_sample, chunk.sample_count) == (0, 0, 480_384)
    assert (chunk.prime_samples, chunk.tail_samples) == (1199, 2304)
    assert chunk.created_at == pytest.approx(1772359200.0)
    assert not chunk.cleaned and chunk.mp3_path is None and chunk.attempts == 0

    started = await store.update_temp_recording_transcode_started(chunk.id)
    assert started.transcode_status is TranscodeStatus.IN_PROGRESS and started.attempts == 1
    with freeze_time("2026-03-01 10:00:03", real_asyncio=True):
        done = await store.update_temp_recording_transcode_completed(
            chunk.id, mp3_path="/c/0.mp3", sha256="f" * 64, duration_ms=10_008
        )
    assert done.transcode_status is TranscodeStatus.DONE
    assert (done.mp3_path, done.sha256, done.duration_ms) == ("/c/0.mp3", "f" * 64, 10_008)
    assert done.completed_at == pytest.approx(1772359203.0)
    cleaned = await store.mark_temp_recording_cleaned(chunk.id)
    assert cleaned.cleaned and cleaned.transcode_status is TranscodeStatus.DONE


async def test_repeated_flush_of_the_same_chunk_creates_one_row(store) -> None:
    meeting = await _meeting(store)
    first = await _chunk(store, meeting, seq=3)
    again = await _chunk(store, meeting, seq=3)
    assert again.id == first.id
    assert len(await store.get_temp_recordings_for_meeting(meeting.id)) == 1


ILLEGAL = [
    # (moves to get there, the illegal move)
    ((), "completed"),
    ((), "failed"),
    ((), "cleaned"),
    ((), "retry"),
    (("started",), "started"),
    (("started",), "cleaned"),
    (("started", "completed"), "started"),
    (("started", "completed"), "failed"),
    (("started", "completed"), "retry"),
    (("started", "failed"), "completed"),
    (("started", "failed"), "cleaned"),
    (("started", "failed"), "started"),
]


async def _do(store, chunk_id: str, move: str):
    if move == "started":
        return await store.update_temp_recording_transcode_started(chunk_id)
    if move == "completed":
        return await store.update_temp_recording_transcode_completed(
            chunk_id, mp3_path="/m.mp3", sha256="0" * 64, duration_ms=1
        )
    if move == "failed":
        return await store.update_temp_recording_transcode_failed(chunk_id, error="boom")
    if move == "cleaned":
        return await store.mark_temp_recording_cleaned(chunk_id)
    if move == "retry":
        return await store.retry_temp_recording(chunk_id)
    raise AssertionError(move)


@pytest.mark.parametrize("path, move", ILLEGAL)
async def test_illegal_moves_raise_and_change_nothing(store, path, move) -> None:
    meeting = await _meeting(store)
    chunk = await _chunk(store, meeting)
    for step in path:
        await _do(store, chunk.id, step)
    before = await store.get_temp_recording(chunk.id)
    with pytest.raises(IllegalTransition, match=before.transcode_status.value):
        await _do(store, chunk.id, move)
    assert await store.get_temp_recording(chunk.id) == before


async def test_failed_chunk_keeps_its_error_and_returns_only_by_explicit_retry(store) -> None:
    meeting = await _meeting(store)
    chunk = await _chunk(store, meeting)
    await store.update_temp_recording_transcode_started(chunk.id)
    failed = await store.update_temp_recording_transcode_failed(chunk.id, error="encoder exploded")
    assert failed.transcode_status is TranscodeStatus.FAILED and failed.last_error == "encoder exploded"
    with freeze_time("2026-03-01 10:00:00", real_asyncio=True):
        retried = await store.retry_temp_recording(chunk.id, not_before=1772359230.0)
        assert retried.transcode_status is TranscodeStatus.QUEUED
        assert await store.claim_next_job() is None  # backing off
        assert await store.next_retry_at() == pytest.approx(1772359230.0)
    with freeze_time("2026-03-01 10:00:31", real_asyncio=True):
        claimed = await store.claim_next_job()
    assert claimed is not None and claimed.id == chunk.id
    assert claimed.attempts == 2 and claimed.last_error == "encoder exploded"


async def test_workers_never_claim_the_same_chunk_twice(store) -> None:
    meeting = await _meeting(store)
    for seq in range(30):
        await _chunk(store, meeting, seq=seq)
    claims = await asyncio.gather(*(store.claim_next_job() for _ in range(40)))
    ids = [c.id for c in claims if c is not None]
    assert len(ids) == 30 == len(set(ids))
    assert (await store.chunk_counts(meeting.id)).in_progress == 30


async def test_requeue_in_progress_is_recovery_only_and_per_meeting(store) -> None:
    a, b = await _meeting(store), await _meeting(store)
    ca, cb = await _chunk(store, a), await _chunk(store, b)
    await store.update_temp_recording_transcode_started(ca.id)
    await store.update_temp_recording_transcode_started(cb.id)
    assert await store.requeue_in_progress(a.id) == 1
    assert (await store.get_temp_recording(ca.id)).transcode_status is TranscodeStatus.QUEUED
    assert (await store.get_temp_recording(cb.id)).transcode_status is TranscodeStatus.IN_PROGRESS
    assert await store.requeue_in_progress() == 1


async def test_queries_filter_by_user_and_status(store) -> None:
    meeting = await _meeting(store)
    for user in (1, 2):
        for seq in range(3):
            await _chunk(store, meeting, user=user, seq=seq)
    first = (await store.get_temp_recordings_for_meeting(meeting.id, user_id=2))[0]
    await store.update_temp_recording_transcode_started(first.id)
    assert [c.seq for c in await store.get_temp_recordings_for_meeting(meeting.id, user_id=1)] == [0, 1, 2]
    in_progress = await store.get_temp_recordings_for_meeting(meeting.id, status=TranscodeStatus.IN_PROGRESS)
    assert [c.id for c in in_progress] == [first.id]
    assert len(await store.pending_temp_recordings(meeting.id)) == 6
    counts = await store.chunk_counts(meeting.id)
    assert (counts.queued, counts.in_progress, counts.pending, counts.total) == (5, 1, 6, 6)


async def test_delete_temp_recordings_by_meeting_or_ids(store) -> None:
    a, b = await _meeting(store), await _meeting(store)
    chunks = [await _chunk(store, a, seq=s) for s in range(3)]
    await _chunk(store, b)
    assert await store.delete_temp_recordings(ids=[chunks[0].id, chunks[1].id]) == 2
    assert await store.delete_temp_recordings(meeting_id=a.id) == 1
    assert len(await store.get_temp_recordings_for_meeting(b.id)) == 1
    with pytest.raises(ValueError):
        await store.delete_temp_recordings()


async def test_stale_temp_rows_are_old_rows_of_promoted_meetings_only(store) -> None:
    """The invariant (issue 8): an unfinished or FAILED meeting's chunks are all it has,
    whatever their age; a gap's chunk is kept for the repair."""
    from chunkrecorder.objects import NewGap

    done, failed, live = await _meeting(store), await _meeting(store), await _meeting(store)
    with freeze_time("2026-03-01 00:00:00", real_asyncio=True):
        old_done = await _chunk(store, done, seq=0)
        gap_chunk = await _chunk(store, done, seq=2)
        await _chunk(store, failed, seq=0)
        await _chunk(store, live, seq=0)
    with freeze_time("2026-03-01 23:00:00", real_asyncio=True):
        young = await _chunk(store, done, seq=1)
    await _finish(store, old_done.id)
    await _finish(store, young.id)
    await store.update_temp_recording_transcode_started(gap_chunk.id)
    await store.update_temp_recording_transcode_failed(gap_chunk.id, error="EncodeError: rejected")
    await store.add_gaps(done.id, [NewGap(42, 2, gap_chunk.start_sample, 480_384, "EncodeError: rejected")])
    await store.set_meeting_status(done.id, MeetingStatus.STOPPING)
    await store.promote_temp_recordings_to_persistent(done.id, [_file(42)], keep_temp=True)
    await store.set_meeting_status(failed.id, MeetingStatus.FAILED)
    with freeze_time("2026-03-02 01:00:00", real_asyncio=True):
        stale = await store.stale_temp_recordings(24 * 3600)
    assert [c.id for c in stale] == [old_done.id]


# ---------------------------------------------------------------- promotion and recordings


async def test_promotion_is_refused_while_chunks_are_pending(store) -> None:
    meeting = await _meeting(store)
    await _chunk(store, meeting)
    await store.set_meeting_status(meeting.id, MeetingStatus.STOPPING)
    with pytest.raises(StoreError, match="1 chunk"):
        await store.promote_temp_recordings_to_persistent(meeting.id, [_file(42)])
    assert await store.recordings_for_meeting(meeting.id) == []
    assert (await store.get_meeting(meeting.id)).status is MeetingStatus.STOPPING


async def _finish(store, chunk_id: str) -> None:
    await store.update_temp_recording_transcode_started(chunk_id)
    await store.update_temp_recording_transcode_completed(
        chunk_id, mp3_path="/m.mp3", sha256="0" * 64, duration_ms=10
    )


async def test_promotion_inserts_rows_removes_temp_and_marks_promoted(store) -> None:
    meeting = await _meeting(store)
    for user in (1, 2):
        await _finish(store, (await _chunk(store, meeting, user=user)).id)
    await store.set_meeting_status(meeting.id, MeetingStatus.STOPPING)
    files = [_file(1, name="a.mp3"), _file(2, name="b.mp3"), _file(None, RecordingKind.MIXED, "mix.mp3")]
    recs = await store.promote_temp_recordings_to_persistent(meeting.id, files, length_samples=960_768)
    assert {(r.kind, r.user_id) for r in recs} == {
        (RecordingKind.PER_USER, 1),
        (RecordingKind.PER_USER, 2),
        (RecordingKind.MIXED, None),
    }
    assert all(r.guild_id == GUILD and len(r.id) == 16 for r in recs)
    assert await store.get_temp_recordings_for_meeting(meeting.id) == []
    promoted = await store.get_meeting(meeting.id)
    assert promoted.status is MeetingStatus.PROMOTED and promoted.length_samples == 960_768


async def test_promotion_can_keep_temp_rows_for_audit(store) -> None:
    meeting = await _meeting(store)
    await _finish(store, (await _chunk(store, meeting)).id)
    await store.set_meeting_status(meeting.id, MeetingStatus.STOPPING)
    await store.promote_temp_recordings_to_persistent(meeting.id, [_file(42)], keep_temp=True)
    assert len(await store.get_temp_recordings_for_meeting(meeting.id)) == 1


async def test_failed_promotion_rolls_back_everything(store) -> None:
    meeting = await _meeting(store)
    await _finish(store, (await _chunk(store, meeting)).id)
    await store.set_meeting_status(meeting.id, MeetingStatus.STOPPING)
    bad = NewRecording(
        kind=RecordingKind.PER_USER, user_id=1, filename="x", path="/x",
        duration_in_ms=1, sha256=None, size_bytes=1,  # type: ignore[arg-type]
    )
    with pytest.raises(sqlite3.IntegrityError):
        await store.promote_temp_recordings_to_persistent(meeting.id, [_file(42), bad])
    assert await store.recordings_for_meeting(meeting.id) == []
    assert len(await store.get_temp_recordings_for_meeting(meeting.id)) == 1
    assert (await store.get_meeting(meeting.id)).status is MeetingStatus.STOPPING


async def test_a_promoted_meeting_cannot_be_promoted_twice(store) -> None:
    meeting = await _meeting(store)
    await store.set_meeting_status(meeting.id, MeetingStatus.STOPPING)
    await store.promote_temp_recordings_to_persistent(meeting.id, [_file(1)])
    with pytest.raises(IllegalTransition):
        await store.promote_temp_recordings_to_persistent(meeting.id, [_file(1)])
    assert len(await store.recordings_for_meeting(meeting.id)) == 1


async def test_recordings_are_scoped_to_their_guild_and_paged(store) -> None:
    mine, theirs = await _meeting(store), await _meeting(store, guild=OTHER_GUILD)
    ids = []
    for i in range(7):
        with freeze_time(f"2026-04-01 00:00:0{i}", real_asyncio=True):
            ids.append((await store.insert_persistent_recording(mine.id, _file(i, name=f"{i}.mp3"))).id)
    other = await store.insert_persistent_recording(theirs.id, _file(9))
    page, total = await store.list_recordings(GUILD, limit=3, offset=3)
    assert total == 7 and [r.id for r in page] == ids[::-1][3:6]
    with pytest.raises(NotFound):
        await store.get_recording(other.id, guild_id=GUILD)
    with pytest.raises(NotFound):
        await store.delete_recording(other.id, guild_id=GUILD)
    assert (await store.get_recording(other.id, guild_id=OTHER_GUILD)).user_id == 9
    deleted = await store.delete_recording(ids[0], guild_id=GUILD)
    assert deleted.filename == "0.mp3"
    assert (await store.list_recordings(GUILD))[1] == 6


async def test_retention_query_uses_recording_age(store) -> None:
    meeting = await _meeting(store)
    with freeze_time("2026-01-01", real_asyncio=True):
        old = await store.insert_persistent_recording(meeting.id, _file(1))
    with freeze_time("2026-01-20", real_asyncio=True):
        await store.insert_persistent_recording(meeting.id, _file(2))
        assert [r.id for r in await store.recordings_older_than(7 * 86400)] == [old.id]


async def test_user_data_is_their_per_user_files_and_chunks_never_the_mix(store) -> None:
    meeting = await _meeting(store)
    await _chunk(store, meeting, user=5)
    await _chunk(store, meeting, user=6)
    await store.insert_persistent_recording(meeting.id, _file(5))
    await store.insert_persistent_recording(meeting.id, _file(None, RecordingKind.MIXED, "mix.mp3"))
    recs, temps = await store.user_data(5)
    assert [r.user_id for r in recs] == [5] and [t.user_id for t in temps] == [5]
    await store.delete_user_rows(5)
    assert await store.user_data(5) == ([], [])
    kinds = [r.kind for r in await store.recordings_for_meeting(meeting.id)]
    assert kinds == [RecordingKind.MIXED]
    assert len(await store.get_temp_recordings_for_meeting(meeting.id)) == 1


async def test_known_paths_cover_pcm_mp3_and_recordings(store) -> None:
    meeting = await _meeting(store)
    chunk = await _chunk(store, meeting)
    await _finish(store, chunk.id)
    await store.insert_persistent_recording(meeting.id, _file(1, name="r.mp3"))
    assert await store.known_paths() >= {chunk.pcm_path, "/m.mp3", "/rec/r.mp3"}


async def test_closed_store_says_so(tmp_path: Path) -> None:
    store = SqlRecordingService(tmp_path / "s.sqlite3")
    with pytest.raises(StoreError, match="not open"):
        await store.get_meeting("x" * 16)


# ---------------------------------------------------------------- concurrency


async def test_200_concurrent_writers_lose_nothing(store) -> None:
    meeting = await _meeting(store)

    async def speaker(user: int) -> None:
        for seq in range(5):
            chunk = await _chunk(store, meeting, user=user, seq=seq)
            await store.update_temp_recording_transcode_started(chunk.id)
            await store.update_temp_recording_transcode_completed(
                chunk.id, mp3_path=f"/{user}_{seq}.mp3", sha256="1" * 64, duration_ms=10_008
            )
            await store.mark_temp_recording_cleaned(chunk.id)

    await asyncio.gather(*(speaker(u) for u in range(1, 201)))
    chunks = await store.get_temp_recordings_for_meeting(meeting.id)
    assert len(chunks) == 1000
    assert all(c.transcode_status is TranscodeStatus.DONE and c.cleaned for c in chunks)


async def test_two_processes_worth_of_connections_do_not_lock(tmp_path: Path) -> None:
    """A second connection (the harness's `recover`, a second bot process) waits, never fails."""
    path = tmp_path / "shared.sqlite3"
    async with SqlRecordingService(path) as a, SqlRecordingService(path) as b:
        meeting = await _meeting(a)

        async def writer(store: SqlRecordingService, user: int) -> None:
            for seq in range(20):
                chunk = await _chunk(store, meeting, user=user, seq=seq)
                await store.update_temp_recording_transcode_started(chunk.id)

        await asyncio.gather(*(writer(s, u) for u, s in enumerate([a, b] * 10)))
        assert (await a.chunk_counts(meeting.id)).in_progress == 400


async def test_a_retried_attempt_goes_through_failed_atomically(store) -> None:
    """Below the retry limit the chunk is QUEUED again with its error; only IN_PROGRESS qualifies."""
    meeting = await _meeting(store)
    chunk = await _chunk(store, meeting)
    with pytest.raises(IllegalTransition, match="QUEUED"):
        await store.requeue_failed_attempt(chunk.id, error="x", not_before=None)
    assert (await store.get_temp_recording(chunk.id)).last_error is None
    await store.update_temp_recording_transcode_started(chunk.id)
    again = await store.requeue_failed_attempt(chunk.id, error="lame said no", not_before=123.0)
    assert again.transcode_status is TranscodeStatus.QUEUED
    assert (again.last_error, again.next_attempt_at, again.attempts) == ("lame said no", 123.0, 1)
    await store.update_temp_recording_transcode_started(chunk.id)
    await store.update_temp_recording_transcode_failed(chunk.id, error="for good")
    with pytest.raises(IllegalTransition, match="FAILED"):
        await store.requeue_failed_attempt(chunk.id, error="x", not_before=None)
    assert (await store.get_temp_recording(chunk.id)).transcode_status is TranscodeStatus.FAILED
