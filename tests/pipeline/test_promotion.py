"""End to end through the ``Recorder``: frames in, promoted MP3s out, decoded and compared.

Real store, real process pool, real LAME. Meetings are seconds long with a 1 s flush
interval, so every file spans several chunk boundaries.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from chunkrecorder.audio import id3, mp3
from chunkrecorder.objects import MeetingSettings, MeetingStatus, RecordingKind, Strategy
from chunkrecorder.pipeline import PipelineError, Progress, Recorder
from chunkrecorder.store import NotFound, SqlRecordingService
from tests.support.pipeline import Clock, Speaker, play, wait_for
from tests.support.signals import RATE, TOLERANCE, boundaries, decode_file, lag_at, snr_db, speech_like


@pytest.fixture
async def recorder(tmp_path: Path):
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=tmp_path, workers=2)
        await rec.start()
        try:
            yield rec
        finally:
            await rec.close()


async def record(rec: Recorder, speakers, *, seconds: float, progress=None, **settings):
    clock = Clock()
    session = await rec.start_meeting(
        guild_id=1, channel_id=settings.pop("channel_id", 2), started_by=3,
        settings=MeetingSettings(flush_interval_s=settings.pop("flush_interval_s", 1.0), **settings),
        clock=clock,
    )
    await play(session, clock, speakers, until_s=seconds, tick=rec.tick)
    result = await rec.stop_meeting(session.meeting.id, progress=progress)
    return session, result


async def test_every_track_starts_at_zero_stays_in_sync_and_has_the_meeting_length(recorder: Recorder) -> None:
    alice = Speaker(101, speech_like(5.3, seed=1))
    bob = Speaker(202, speech_like(1.7, seed=2, peak=10_000))  # leaves at 1.7 s
    carol = Speaker(303, speech_like(2.8, seed=3, peak=8_000), start_s=2.5)  # joins at 2.5 s
    session, result = await record(recorder, [alice, bob, carol], seconds=5.3)
    length = int(5.3 * RATE)
    assert result.length_ms == 5300
    assert result.failed_chunks == 0
    by_user = {r.user_id: r for r in result.recordings if r.kind is RecordingKind.PER_USER}
    assert set(by_user) == {101, 202, 303}
    grid = session.grid
    frames = mp3.frames_for(length)
    for sp in (alice, bob, carol):
        rec = by_user[sp.user_id]
        decoded = decode_file(rec.path)
        assert len(decoded) == frames * mp3.FRAME  # within one MP3 frame of the meeting
        assert 0 <= len(decoded) - length < mp3.FRAME
        assert rec.duration_in_ms == round(frames * mp3.FRAME * 1000 / RATE)
        ref = sp.expected(length).astype(np.float64)
        checked = 0
        for b in boundaries(grid, length):
            lo, hi = b - int(0.12 * RATE), b + int(0.12 * RATE)
            if lo < 0 and b > 0 or np.abs(ref[max(0, lo):hi]).max() < 1000:
                continue  # nothing said there
            lag, corr = lag_at(decoded, ref, max(b, int(0.125 * RATE)), search=int(0.01 * RATE))
            assert abs(lag) <= TOLERANCE and lag == 0, (sp.user_id, b, lag)
            assert corr > 0.95
            checked += 1
        assert checked >= 2
        spoken = ref != 0
        assert snr_db(decoded[:length][spoken], ref[spoken]) > 15
    # absent speakers are silent where they were absent
    carol_dec = decode_file(by_user[303].path)
    assert np.abs(carol_dec[: int(2.4 * RATE)]).max() == 0
    bob_dec = decode_file(by_user[202].path)
    assert np.abs(bob_dec[int(1.8 * RATE):]).max() == 0

    mix = next(r for r in result.recordings if r.kind is RecordingKind.MIXED)
    assert mix.user_id is None and mix.filename == f"recording_{session.meeting.id}_mix.mp3"
    mixed = decode_file(mix.path)
    total = sum(sp.expected(length).astype(np.float64) for sp in (alice, bob, carol))
    assert len(mixed) == frames * mp3.FRAME
    assert snr_db(mixed, total) > 15
    for b in boundaries(grid, length)[1:]:
        assert lag_at(mixed, total, b, search=int(0.01 * RATE))[0] == 0
    decoded_sum = sum(decode_file(by_user[u].path) for u in by_user)
    assert snr_db(mixed, decoded_sum) > 15


async def test_rows_files_and_cleanup_after_promotion(recorder: Recorder) -> None:
    session, result = await record(recorder, [Speaker(7, speech_like(2.2, seed=4))], seconds=2.5)
    store = recorder.store
    meeting = await store.get_meeting(session.meeting.id)
    assert meeting.status is MeetingStatus.PROMOTED
    assert meeting.length_samples == int(2.5 * RATE)
    names = sorted(r.filename for r in result.recordings)
    assert names == [f"recording_{meeting.id}_7.mp3", f"recording_{meeting.id}_mix.mp3"]
    for r in result.recordings:
        data = Path(r.path).read_bytes()
        assert Path(r.path).parent == recorder.layout.recordings_dir
        assert r.sha256 == hashlib.sha256(data).hexdigest()
        assert r.size_bytes == len(data)
        assert mp3.count_frames(data) == mp3.frames_for(meeting.length_samples)
    assert await store.get_temp_recordings_for_meeting(meeting.id) == []
    assert not recorder.layout.meeting_dir(meeting.id).exists()
    assert not list(recorder.layout.recordings_dir.glob("*.part"))
    assert {r.id for r in await store.recordings_for_meeting(meeting.id)} == {r.id for r in result.recordings}


async def test_progress_goes_through_the_phases_in_order(recorder: Recorder) -> None:
    seen: list[Progress] = []

    async def progress(p: Progress) -> None:
        seen.append(p)

    await record(recorder, [Speaker(1, speech_like(3.0, seed=5)), Speaker(2, speech_like(3.0, seed=6))],
                 seconds=3.0, progress=progress)
    phases = [p.phase for p in seen]
    order = ["flushing", "transcoding", "assembling", "done"]
    assert [ph for i, ph in enumerate(phases) if i == 0 or phases[i - 1] != ph] == order
    for phase in order:
        steps = [p for p in seen if p.phase == phase]
        assert all(0 <= p.done <= p.total for p in steps)
        assert [p.done for p in steps] == sorted(p.done for p in steps) or phase == "transcoding"
    assert seen[-1] == Progress("done", 3, 3)


async def test_tracks_are_assembled_while_recording_so_stop_only_finishes_the_tail(recorder: Recorder) -> None:
    clock = Clock()
    session = await recorder.start_meeting(
        guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
    sp = Speaker(5, speech_like(8.0, seed=7))
    await play(session, clock, [sp], until_s=6.0, tick=recorder.tick)
    store, mid = recorder.store, session.meeting.id

    async def assembled() -> bool:
        tracks = {t.user_id: t for t in await store.tracks_for_meeting(mid)}
        return len(tracks) == 2 and all(t.assembled_seq >= 4 for t in tracks.values())

    await wait_for(assembled)
    await recorder.wait_idle()  # a later window may be mid-append: the .part runs ahead of its row until it ends
    part = recorder.layout.part_path(mid, 5)
    track = {t.user_id: t for t in await store.tracks_for_meeting(mid)}[5]
    assert part.stat().st_size == track.assembled_bytes
    assert mp3.count_frames(part.read_bytes()) == track.assembled_frames == track.assembled_seq * session.grid.chunk_frames
    # chunks already in the file are gone from the temp tier
    left = {p.name for p in recorder.layout.meeting_dir(mid).iterdir()}
    assert not any(n.startswith("5_0.") for n in left)
    await play(session, clock, [], until_s=0.0, tick=recorder.tick)
    clock.t = session.t0 + 6.5
    result = await recorder.stop_meeting(mid)
    decoded = decode_file(next(r.path for r in result.recordings if r.user_id == 5))
    length = int(6.5 * RATE)
    assert len(decoded) == mp3.frames_for(length) * mp3.FRAME
    ref = sp.expected(length).astype(np.float64)
    for b in boundaries(session.grid, length)[1:]:
        assert lag_at(decoded, ref, b, search=int(0.01 * RATE))[0] == 0


@pytest.mark.parametrize("strategy, kinds", [
    (Strategy.PER_USER, {RecordingKind.PER_USER}),
    (Strategy.MIXED, {RecordingKind.MIXED}),
    (Strategy.HYBRID, {RecordingKind.PER_USER, RecordingKind.MIXED}),
])
async def test_the_strategy_decides_which_files_exist(recorder: Recorder, strategy, kinds) -> None:
    speakers = [Speaker(1, speech_like(1.5, seed=8)), Speaker(2, speech_like(1.5, seed=9))]
    _, result = await record(recorder, speakers, seconds=1.5, strategy=strategy)
    assert {r.kind for r in result.recordings} == kinds
    n_user = sum(r.kind is RecordingKind.PER_USER for r in result.recordings)
    assert n_user == (2 if strategy.wants_per_user else 0)


async def test_keep_temp_rows_keeps_the_audit_trail(recorder: Recorder) -> None:
    session, _ = await record(recorder, [Speaker(1, speech_like(2.0, seed=10))], seconds=2.0, keep_temp_rows=True)
    rows = await recorder.store.get_temp_recordings_for_meeting(session.meeting.id)
    assert len(rows) == 2 * 2 and all(r.transcode_status.value == "DONE" and r.cleaned for r in rows)
    assert all(r.sha256 and r.duration_ms for r in rows)


async def test_promotion_is_idempotent_and_errors_are_clear(recorder: Recorder) -> None:
    session, first = await record(recorder, [Speaker(1, speech_like(1.2, seed=11))], seconds=1.2)
    again = await recorder.promote(session.meeting.id)
    assert [r.id for r in again.recordings] == [r.id for r in first.recordings]
    stopped_twice = await recorder.stop_meeting(session.meeting.id)
    assert [r.sha256 for r in stopped_twice.recordings] == [r.sha256 for r in first.recordings]
    with pytest.raises(NotFound, match="No meeting"):
        await recorder.stop_meeting("0123456789abcdef")
    live = await recorder.start_meeting(guild_id=1, channel_id=9, started_by=3, settings=MeetingSettings())
    with pytest.raises(PipelineError, match="already being recorded"):
        await recorder.start_meeting(guild_id=1, channel_id=9, started_by=3, settings=MeetingSettings())
    with pytest.raises(PipelineError, match="still being recorded"):
        await recorder.promote(live.meeting.id)
    await recorder.stop_meeting(live.meeting.id)


async def test_stereo_meetings_keep_both_channels(recorder: Recorder) -> None:
    sp = Speaker(1, speech_like(2.0, seed=12))
    session, result = await record(recorder, [sp], seconds=2.0, channels=2, strategy=Strategy.PER_USER)
    (rec,) = result.recordings
    decoded = mp3.decode(Path(rec.path).read_bytes(), channels=2)
    assert decoded.shape == (mp3.frames_for(2 * RATE) * mp3.FRAME, 2)
    ref = sp.expected(2 * RATE).astype(np.float64)
    for ch in (0, 1):
        assert lag_at(decoded[:, ch].astype(np.float64), ref, session.grid.start(1), search=480)[0] == 0


async def test_a_meeting_nobody_spoke_in_is_promoted_empty(recorder: Recorder) -> None:
    session, result = await record(recorder, [], seconds=2.0)
    assert result.recordings == []
    assert result.meeting.status is MeetingStatus.PROMOTED
    assert result.length_ms == 2000


async def test_an_erased_user_leaves_no_trace_in_an_unfinished_meeting(recorder: Recorder) -> None:
    clock = Clock()
    session = await recorder.start_meeting(
        guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
    stays, erased = Speaker(1, speech_like(6.0, seed=20)), Speaker(2, speech_like(6.0, seed=21))
    await play(session, clock, [stays, erased], until_s=4.0, tick=recorder.tick)
    mid = session.meeting.id
    await wait_for(lambda: recorder.layout.part_path(mid, 2).exists())  # their voice is on disk already
    erased_report = await recorder.erase_user(2)
    assert erased_report.rows > 0 and erased_report.files > 0 and erased_report.bytes_freed > 0
    assert not recorder.layout.part_path(mid, 2).exists()
    assert [p.name for p in recorder.layout.meeting_dir(mid).iterdir() if p.name.startswith("2_")] == []
    # they keep talking; nothing of it is kept
    t0 = session.t0
    for i in range(200, 300):
        clock.t = t0 + (i + 1) * 0.02
        session.feed(erased.frame(i, t0))
        session.feed(stays.frame(i, t0))
        await recorder.tick()
    clock.t = t0 + 6.0
    result = await recorder.stop_meeting(mid)
    assert {r.user_id for r in result.recordings} == {1, None}
    everything = [p.name for p in recorder.layout.data_dir.rglob("*") if p.is_file()]
    assert not any(f"_{mid}_2." in n or n.startswith("2_") for n in everything)
    assert await recorder.store.user_data(2) == ([], [])
    # the mix of windows flushed after the erasure is the remaining speaker alone
    mixed = decode_file(next(r.path for r in result.recordings if r.user_id is None))
    alone = decode_file(next(r.path for r in result.recordings if r.user_id == 1))
    late = slice(session.grid.start(4), session.grid.start(5))
    assert snr_db(mixed[late], alone[late]) > 30


async def test_two_promotions_of_one_meeting_give_one_result(recorder: Recorder) -> None:
    clock = Clock()
    session = await recorder.start_meeting(
        guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
    await play(session, clock, [Speaker(1, speech_like(2.0, seed=30))], until_s=2.0, tick=recorder.tick)
    mid = session.meeting.id
    stop = asyncio.create_task(recorder.stop_meeting(mid))
    await asyncio.sleep(0)
    while recorder.session(mid) is not None:
        await asyncio.sleep(0.001)
    admin = await recorder.promote(mid)  # the admin's promote while the stop is still finishing
    stopped = await stop
    assert [r.id for r in admin.recordings] == [r.id for r in stopped.recordings]
    assert len(await recorder.store.recordings_for_meeting(mid)) == 2


@pytest.mark.parametrize("executor", ["process", "thread"])
async def test_a_one_speaker_meetings_mix_is_the_speakers_file_encoded_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str) -> None:
    encodes: list[int] = []
    real = mp3.encode_chunk_file

    def counted(*args, **kwargs):
        encodes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mp3, "encode_chunk_file", counted)  # seen by the thread executor only
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=tmp_path, workers=2,
                       executor=executor)
        await rec.start()
        try:
            speaker = Speaker(7, speech_like(4.2, seed=21, peak=30_000))  # loud: no limiter on one voice
            session, result = await record(rec, [speaker], seconds=4.2)
        finally:
            await rec.close()
    (mine,) = [r for r in result.recordings if r.kind is RecordingKind.PER_USER]
    (mixed,) = [r for r in result.recordings if r.kind is RecordingKind.MIXED]
    assert mixed.id != mine.id and mixed.path != mine.path and mixed.user_id is None
    # the same frames; each file has its own tags in front (title, artist: issue 14)
    assert _frames(mixed.path) == _frames(mine.path)
    assert mixed.duration_in_ms == mine.duration_in_ms
    assert mixed.sha256 != mine.sha256
    assert Path(mixed.path).stat().st_ino != Path(mine.path).stat().st_ino  # its own file
    windows = session.grid.windows_for(int(4.2 * RATE))
    if executor == "thread":
        assert len(encodes) == windows  # one encode per window, not one per track
    decoded = decode_file(mixed.path)
    assert snr_db(decoded[: int(4.2 * RATE)], speaker.expected(int(4.2 * RATE))) > 15


def _frames(path: str) -> bytes:
    """A finished file's MP3 frames (its ID3v2 tag left out)."""
    data = Path(path).read_bytes()
    return data[id3.tag_length(data[: id3.HEADER_SIZE]) :]
