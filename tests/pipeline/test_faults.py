"""File-system faults while recording and promoting: disk full, permission denied.

pyfakefs provides the faults (a disk of limited size, a folder without write
permission; ``allow_root_user=False`` so permissions hold even for root). The
database stays a real file on the real disk (SQLite's C code does not go through
Python's ``open``), opened before the fake file system is switched on. Encoding runs
in threads here, because worker processes would not see the fake file system.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import numpy as np
import pytest
from pyfakefs.fake_filesystem_unittest import Patcher

from chunkrecorder.audio import mp3
from chunkrecorder.objects import MIX_USER_ID, MeetingSettings, MeetingStatus, RecordingKind, TranscodeStatus
from chunkrecorder.pipeline import FlushError, PipelineError, Recorder
from chunkrecorder.pipeline.paths import Layout, write_atomic
from chunkrecorder.pipeline.session import RecordingSession
from chunkrecorder.store import SqlRecordingService
from tests.support.pipeline import Clock, Speaker, play
from tests.support.signals import RATE, lag_at, read_pcm, speech_like

DATA = Path("/srv/chunkrecorder")


@pytest.fixture
async def store(tmp_path: Path):
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as s:
        yield s


@pytest.fixture
def fakefs():
    with Patcher(allow_root_user=False) as patcher:
        patcher.fs.create_dir(DATA)
        yield patcher.fs


async def new_session(store, clock: Clock, **kw) -> RecordingSession:
    settings = MeetingSettings(flush_interval_s=1.0, strategy=kw.pop("strategy", MeetingSettings().strategy), **kw)
    meeting = await store.create_meeting(guild_id=1, channel_id=2, started_by=3, strategy=settings.strategy,
                                         flush_interval_s=1.0)
    return RecordingSession(meeting=meeting, settings=settings, store=store, layout=Layout(DATA), clock=clock)


async def assert_complete(store, session: RecordingSession, speaker: Speaker, length: int) -> None:
    """Every window of the speaker is on disk, with exactly the audio that was fed."""
    rows = await store.get_temp_recordings_for_meeting(session.meeting.id, user_id=speaker.user_id)
    assert [r.seq for r in rows] == list(range(session.grid.windows_for(length)))
    body = np.concatenate([read_pcm(r.pcm_path)[r.prime_samples : r.prime_samples + r.sample_count, 0]
                           for r in rows])
    assert np.array_equal(body, speaker.expected(length))


def test_an_atomic_write_that_fails_leaves_nothing_behind(fakefs) -> None:
    fakefs.set_disk_usage(10_000)
    target = DATA / "chunks" / "m" / "1_0.pcm"
    with pytest.raises(OSError) as err:
        write_atomic(target, np.zeros(20_000, dtype=np.int16))
    assert err.value.errno == errno.ENOSPC
    assert os.listdir(target.parent) == []


async def test_disk_full_during_flush_keeps_the_audio_until_there_is_room(store, fakefs) -> None:
    clock = Clock()
    s = await new_session(store, clock, strategy=MeetingSettings().strategy)
    sp = Speaker(1, speech_like(3.0, seed=1))
    fakefs.set_disk_usage(50_000)  # not even one window fits
    await play(s, clock, [sp], until_s=3.0)
    snap = s.snapshot()
    assert snap.flush_errors > 0 and "No space left" in (snap.last_error or "")
    assert snap.windows_flushed == 0 and snap.windows_lost == 0
    assert await store.get_temp_recordings_for_meeting(s.meeting.id) == []
    assert not [p for p in Path(DATA).rglob("*") if p.is_file()]  # no half-written chunk
    fakefs.set_disk_usage(10**9)  # room again
    await play(s, clock, [], until_s=0)
    clock.t = s.t0 + 4.0
    await s.advance()
    length = await s.finish()
    await assert_complete(store, s, sp, length)
    assert s.snapshot().windows_lost == 0


async def test_permission_denied_during_flush_is_reported_and_recovered(store, fakefs) -> None:
    clock = Clock()
    s = await new_session(store, clock)
    sp = Speaker(2, speech_like(2.2, seed=2))
    folder = Layout(DATA).meeting_dir(s.meeting.id)
    fakefs.create_dir(folder)
    os.chmod(folder, 0o500)
    await play(s, clock, [sp], until_s=2.2)
    snap = s.snapshot()
    assert snap.flush_errors > 0 and "Permission denied" in (snap.last_error or "")
    assert snap.windows_flushed == 0
    os.chmod(folder, 0o700)
    clock.t = s.t0 + 3.0
    length = await s.finish()
    await assert_complete(store, s, sp, length)


async def test_a_disk_that_stays_full_costs_the_oldest_windows_not_the_session(store, fakefs) -> None:
    clock = Clock()
    s = await new_session(store, clock)
    sp = Speaker(3, speech_like(10.0, seed=3))
    fakefs.set_disk_usage(50_000)
    await play(s, clock, [sp], until_s=10.0)
    snap = s.snapshot()
    assert snap.windows_lost >= 2  # given up, counted, reported
    assert snap.buffered_bytes <= (s._max_backlog + 3) * s.grid.chunk_samples * 2  # memory stays bounded
    fakefs.set_disk_usage(10**9)
    await play(s, clock, [], until_s=0)
    clock.t = s.t0 + 12.0
    length = await s.finish()
    rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=3)
    kept = [r.seq for r in rows]
    spoken = s.grid.windows_for(int(10.0 * RATE))  # windows 10 and 11 were silent
    assert kept == list(range(snap.windows_lost, spoken))  # the rest is all there
    for r in rows:
        got = read_pcm(r.pcm_path)[r.prime_samples : r.prime_samples + r.sample_count, 0]
        want = sp.expected(length)[r.start_sample : r.start_sample + r.sample_count]
        assert np.array_equal(got, want)


async def test_a_stop_on_a_full_disk_fails_cleanly_and_can_be_retried(store, fakefs) -> None:
    clock = Clock()
    s = await new_session(store, clock)
    sp = Speaker(4, speech_like(2.5, seed=4))
    await play(s, clock, [sp], until_s=2.5)
    fakefs.set_disk_usage(sum(p.stat().st_size for p in Path(DATA).rglob("*") if p.is_file()) + 1000)
    with pytest.raises(FlushError, match="still held in memory"):
        await s.finish()
    assert not s.finished
    assert (await store.get_meeting(s.meeting.id)).status is MeetingStatus.ACTIVE
    fakefs.set_disk_usage(10**9)
    length = await s.finish()
    assert length == int(2.5 * RATE)
    await assert_complete(store, s, sp, length)


async def test_disk_full_during_promotion_fails_cleanly_and_the_admin_can_finish_it(store, fakefs) -> None:
    recordings = Layout(DATA).recordings_dir
    fakefs.add_mount_point(str(recordings), total_size=20_000)  # the persistent tier is full
    rec = Recorder(store=store, data_dir=DATA, workers=1, executor="thread")
    await rec.start()
    try:
        clock = Clock()
        session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3,
                                          settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
        sp = Speaker(5, speech_like(3.0, seed=5))
        await play(session, clock, [sp], until_s=3.0, tick=rec.tick)
        await rec.wait_idle()
        with pytest.raises(PipelineError, match="Nothing was lost"):
            await rec.stop_meeting(session.meeting.id)
        meeting = await store.get_meeting(session.meeting.id)
        assert meeting.status is MeetingStatus.FAILED and "No space" in (meeting.note or "")
        counts = await store.chunk_counts(meeting.id)
        assert counts.done == counts.total > 0  # every chunk is still there, encoded
        fakefs.set_disk_usage(10**9, path=str(recordings))
        result = await rec.promote(meeting.id)
        assert result.meeting.status is MeetingStatus.PROMOTED and result.failed_chunks == 0
        rec5 = next(r for r in result.recordings if r.user_id == 5)
        decoded = mp3.decode(Path(rec5.path).read_bytes(), channels=1)[:, 0].astype(np.float64)
        length = int(3.0 * RATE)
        assert len(decoded) == mp3.frames_for(length) * mp3.FRAME
        ref = sp.expected(length).astype(np.float64)
        for b in (session.grid.start(1), session.grid.start(2)):
            assert lag_at(decoded, ref, b, search=480)[0] == 0
        assert {r.kind for r in result.recordings} == {RecordingKind.PER_USER, RecordingKind.MIXED}
    finally:
        await rec.close()


async def test_an_unwritable_recordings_folder_fails_promotion_without_losing_chunks(store, fakefs) -> None:
    rec = Recorder(store=store, data_dir=DATA, workers=1, executor="thread")
    await rec.start()
    try:
        os.chmod(Layout(DATA).recordings_dir, 0o500)
        clock = Clock()
        session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3,
                                          settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
        await play(session, clock, [Speaker(6, speech_like(2.0, seed=6))], until_s=2.0, tick=rec.tick)
        with pytest.raises(PipelineError, match="Permission denied"):
            await rec.stop_meeting(session.meeting.id)
        rows = await store.get_temp_recordings_for_meeting(session.meeting.id)
        assert rows and all(r.transcode_status is TranscodeStatus.DONE for r in rows)
        assert all(Path(r.mp3_path).exists() for r in rows)  # nothing assembled, nothing deleted
        os.chmod(Layout(DATA).recordings_dir, 0o700)
        result = await rec.promote(session.meeting.id)
        assert sorted(r.user_id or MIX_USER_ID for r in result.recordings) == [MIX_USER_ID, 6]
    finally:
        await rec.close()


# ---------------------------------------------------------------- encoder failures at stop


async def _record_with(store, tmp_path: Path, encoder, retry) -> tuple:
    from chunkrecorder.pipeline import RetryPolicy  # noqa: F401 - the type of ``retry``

    rec = Recorder(store=store, data_dir=tmp_path, workers=1, executor="thread", encoder=encoder,
                   retry=retry)
    await rec.start()
    clock = Clock()
    session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3,
                                      settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
    sp = Speaker(8, speech_like(3.0, seed=8))
    await play(session, clock, [sp], until_s=3.0, tick=rec.tick)
    return rec, session, sp


async def test_chunks_still_being_retried_at_stop_are_waited_for_not_silenced(store, tmp_path: Path) -> None:
    from chunkrecorder.pipeline import RetryPolicy
    from chunkrecorder.pipeline.encode_worker import encode

    failures: set[str] = set()

    def fails_once_each(job):
        if job.pcm_path not in failures:
            failures.add(job.pcm_path)
            raise RuntimeError("transient encoder failure")
        return encode(job)

    rec, session, sp = await _record_with(store, tmp_path, fails_once_each, RetryPolicy(3, 0.05, 1.0))
    try:
        result = await rec.stop_meeting(session.meeting.id)
    finally:
        await rec.close()
    assert result.failed_chunks == 0
    assert len(failures) == 2 * 3  # every chunk failed once and was retried
    user = next(r for r in result.recordings if r.user_id == 8)
    decoded = mp3.decode(Path(user.path).read_bytes(), channels=1)[:, 0].astype(np.float64)
    ref = sp.expected(3 * RATE).astype(np.float64)
    for b in (session.grid.start(1), session.grid.start(2)):
        assert lag_at(decoded, ref, b, search=480)[0] == 0
    err = decoded[: len(ref)] - ref
    assert 10 * np.log10(np.dot(ref, ref) / np.dot(err, err)) > 15  # no silent gap anywhere


async def test_a_chunk_that_fails_for_good_becomes_silence_of_its_length_and_is_kept(store, tmp_path: Path) -> None:
    from chunkrecorder.pipeline import RetryPolicy
    from chunkrecorder.pipeline.encode_worker import encode

    def window_1_is_broken(job):
        if Path(job.pcm_path).name == "8_1.pcm":
            raise RuntimeError("this chunk never encodes")
        return encode(job)

    rec, session, sp = await _record_with(store, tmp_path, window_1_is_broken, RetryPolicy(2, 0.05, 1.0))
    try:
        result = await rec.stop_meeting(session.meeting.id)
    finally:
        await rec.close()
    assert result.failed_chunks == 1
    assert result.meeting.status is MeetingStatus.PROMOTED
    (kept,) = await store.get_temp_recordings_for_meeting(session.meeting.id)
    assert kept.transcode_status is TranscodeStatus.FAILED and kept.seq == 1 and kept.attempts == 2
    assert "never encodes" in kept.last_error and Path(kept.pcm_path).exists()  # the audio is not thrown away
    user = next(r for r in result.recordings if r.user_id == 8)
    decoded = mp3.decode(Path(user.path).read_bytes(), channels=1)[:, 0].astype(np.float64)
    grid, length = session.grid, 3 * RATE
    assert len(decoded) == mp3.frames_for(length) * mp3.FRAME  # full length, in sync after the hole
    assert not decoded[grid.start(1) + 1200 : grid.start(2) - 1200].any()
    ref = sp.expected(length).astype(np.float64)
    assert lag_at(decoded, ref, grid.start(2) + 6000, search=480)[0] == 0


async def test_a_stop_that_outlives_its_wait_is_finished_in_the_background(store, tmp_path: Path) -> None:
    import threading

    from chunkrecorder.pipeline import PromotionTimeout, RetryPolicy
    from chunkrecorder.pipeline.encode_worker import encode

    gate = threading.Event()

    def slow(job):
        gate.wait(30)  # a backlog: the encoders are far behind
        return encode(job)

    promoted: list = []
    rec = Recorder(store=store, data_dir=tmp_path, workers=1, executor="thread", encoder=slow,
                   retry=RetryPolicy(), on_promoted=promoted.append)
    await rec.start()
    try:
        clock = Clock()
        session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3,
                                          settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
        await play(session, clock, [Speaker(9, speech_like(2.0, seed=9))], until_s=2.0, tick=rec.tick)
        seen = []
        with pytest.raises(PromotionTimeout, match="still being encoded"):
            await rec.stop_meeting(session.meeting.id, timeout_s=0.3, progress=seen.append)
        assert (await store.get_meeting(session.meeting.id)).status is MeetingStatus.STOPPING
        assert seen and seen[-1].phase == "transcoding" and seen[-1].done < seen[-1].total
        gate.set()
        deadline = asyncio.get_running_loop().time() + 30
        while not promoted and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        (result,) = promoted
        assert result.meeting.status is MeetingStatus.PROMOTED and len(result.recordings) == 2
    finally:
        gate.set()
        await rec.close()


async def test_chunks_written_while_the_store_kept_failing_are_not_lost(tmp_path: Path) -> None:
    """The disk works but the database refuses window 1's rows for longer than the backlog
    allows: the window is given up in memory, yet its files are on disk and end up in
    the recordings."""
    import sqlite3

    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=tmp_path, workers=2)
        await rec.start()
        try:
            real_insert = store.insert_temp_recording
            broken = True

            async def insert(**kw):
                if broken and kw["seq"] == 1:
                    raise sqlite3.OperationalError("database is locked")
                return await real_insert(**kw)

            store.insert_temp_recording = insert  # type: ignore[method-assign]
            clock = Clock()
            session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3,
                                              settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
            sp = Speaker(3, speech_like(9.5, seed=12))
            await play(session, clock, [sp], until_s=9.5, tick=rec.tick)
            assert session.snapshot().windows_lost == 1
            broken = False
            result = await rec.stop_meeting(session.meeting.id)
        finally:
            await rec.close()
    assert result.failed_chunks == 0
    user = next(r for r in result.recordings if r.user_id == 3)
    decoded = mp3.decode(Path(user.path).read_bytes(), channels=1)[:, 0].astype(np.float64)
    length = int(9.5 * RATE)
    ref = sp.expected(length).astype(np.float64)
    grid = session.grid
    window_1 = slice(grid.start(1), grid.start(2))
    err = decoded[window_1] - ref[window_1]
    assert 10 * np.log10(np.dot(ref[window_1], ref[window_1]) / np.dot(err, err)) > 15  # window 1 is there
    for b in (grid.start(1), grid.start(2)):
        assert lag_at(decoded, ref, b, search=480)[0] == 0
