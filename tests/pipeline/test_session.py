"""The session handler: frames in, chunk PCM files and QUEUED rows out, sample-exactly.

The session is driven with ``VoiceFrame``s and a settable clock against the real
store; the chunk files it writes are compared with the sources sample by sample.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from chunkrecorder.audio import mp3
from chunkrecorder.audio.mix import THRESHOLD, soft_limit
from chunkrecorder.objects import MIX_USER_ID, MeetingSettings, Strategy, TranscodeStatus, VoiceFrame
from chunkrecorder.pipeline.paths import Layout
from chunkrecorder.pipeline.session import RecordingSession
from chunkrecorder.store import SqlRecordingService
from tests.support.pipeline import Clock, Speaker, play
from tests.support.signals import RATE, read_pcm, speech_like

P, T = mp3.PRIME_SAMPLES, mp3.TAIL_SAMPLES


@pytest.fixture
async def store(tmp_path: Path):
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as s:
        yield s


async def make_session(store, tmp_path: Path, clock: Clock, **kw) -> RecordingSession:
    accept = kw.pop("accept_user", None)
    settings = MeetingSettings(flush_interval_s=kw.pop("flush_interval_s", 1.0), **kw)
    meeting = await store.create_meeting(
        guild_id=1, channel_id=2, started_by=3, strategy=settings.strategy,
        flush_interval_s=settings.flush_interval_s, channels=settings.channels,
    )
    return RecordingSession(
        meeting=meeting, settings=settings, store=store, layout=Layout(tmp_path),
        clock=clock, accept_user=accept,
    )


def expected_chunk(track: np.ndarray, grid, k: int, length: int) -> np.ndarray:
    """Chunk k's PCM as the contract says: prime before, body, tail after (zeros outside)."""
    start, end = grid.span(k, length)
    out = np.zeros(end - start, dtype=np.int16)
    lo, hi = max(0, start), min(length, end)
    out[lo - start : hi - start] = track[lo:hi]
    return out


async def chunk_rows(store, meeting_id: str) -> dict[tuple[int, int], object]:
    return {(r.user_id, r.seq): r for r in await store.get_temp_recordings_for_meeting(meeting_id)}


async def test_every_speaker_is_cut_at_the_same_boundaries_sample_exactly(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    a = Speaker(11, speech_like(3.4, seed=1))
    b = Speaker(22, speech_like(3.0, seed=2, peak=9000), start_s=0.4)
    await play(s, clock, [a, b], until_s=3.5, skip={11: {30, 31, 32, 90}})  # lost packets
    length = await s.finish()
    assert length == int(3.5 * RATE)

    grid = s.grid
    tracks = {11: a.expected(length), 22: b.expected(length)}
    for i in (30, 31, 32, 90):  # lost packets are silence, not shifted audio
        tracks[11][i * 960 : (i + 1) * 960] = 0
    rows = await chunk_rows(store, s.meeting.id)
    windows = grid.windows_for(length)
    assert windows == 4
    for k in range(windows):
        for user, track in tracks.items():
            row = rows[(user, k)]
            assert row.transcode_status is TranscodeStatus.QUEUED
            assert (row.start_sample, row.sample_count) == (grid.start(k), grid.body(k, length))
            assert (row.prime_samples, row.tail_samples) == (P, T)
            pcm = read_pcm(row.pcm_path)[:, 0]
            assert np.array_equal(pcm, expected_chunk(track, grid, k, length)), (user, k)
        # the mix chunk is the limited sum of the speakers' chunks, exactly
        total = sum(expected_chunk(t, grid, k, length).astype(np.int64) for t in tracks.values())
        mixed = read_pcm(rows[(MIX_USER_ID, k)].pcm_path)[:, 0]
        assert np.array_equal(mixed, soft_limit(total))
        fits = np.abs(total) <= THRESHOLD
        assert np.array_equal(mixed[fits], total[fits])
    pipe = await store.meeting_pipeline(s.meeting.id)
    assert pipe.flushed_windows == windows
    assert (await store.get_meeting(s.meeting.id)).length_samples == length


@pytest.mark.parametrize("meeting_channels", [1, 2])
async def test_mono_frames_land_where_stereo_frames_do_and_fill_the_meetings_channels(
        store, tmp_path: Path, meeting_channels: int) -> None:
    """The receiver decodes a mono meeting's audio straight to mono: those frames make
    the same chunks, sample for sample, as Discord's stereo frames of the same voice;
    in a stereo meeting a mono frame is the same voice in both channels."""
    chunks: dict[int, dict[tuple[int, int], np.ndarray]] = {}
    for frame_channels in (2, 1):
        clock = Clock()
        folder = tmp_path / f"frames{frame_channels}"
        s = await make_session(store, folder, clock, channels=meeting_channels)
        a = Speaker(11, speech_like(3.4, seed=1), channels=frame_channels)
        b = Speaker(22, speech_like(3.0, seed=2, peak=9000), start_s=0.4, channels=frame_channels)
        await play(s, clock, [a, b], until_s=3.5, skip={11: {30, 31, 90}})
        length = await s.finish()
        tracks = {11: a.expected(length), 22: b.expected(length)}
        for i in (30, 31, 90):
            tracks[11][i * 960 : (i + 1) * 960] = 0
        rows = await chunk_rows(store, s.meeting.id)
        assert s.snapshot().frames_invalid == 0
        chunks[frame_channels] = {key: read_pcm(r.pcm_path, meeting_channels) for key, r in rows.items()}
        for k in range(s.grid.windows_for(length)):
            for user, track in tracks.items():
                pcm = chunks[frame_channels][(user, k)]
                want = expected_chunk(track, s.grid, k, length)
                assert all(np.array_equal(pcm[:, c], want) for c in range(meeting_channels)), (user, k)
    assert chunks[1].keys() == chunks[2].keys()
    assert all(np.array_equal(chunks[1][key], chunks[2][key]) for key in chunks[1])


async def test_reordered_and_duplicated_frames_give_the_same_chunks(store, tmp_path: Path) -> None:
    sp = Speaker(5, speech_like(2.2, seed=3))

    async def run(shuffle: bool) -> list[np.ndarray]:
        clock = Clock()
        s = await make_session(store, tmp_path / ("a" if shuffle else "b"), clock)
        frames = [sp.frame(i, s.t0) for i in range(sp.n_frames)]
        if shuffle:
            rng = random.Random(4)
            # packets overtake each other within 3 frames, and some come twice
            order = sorted(range(len(frames)), key=lambda i: i + rng.uniform(0, 3))
            delivered: list[VoiceFrame] = []
            for i in order:
                f = frames[i]
                # a frame delivered after a later one arrived no earlier than that one
                arrival = max(f.arrival, delivered[-1].arrival if delivered else 0.0)
                delivered.append(VoiceFrame(f.user_id, f.ssrc, f.sequence, f.timestamp, arrival, f.pcm))
                if rng.random() < 0.1:
                    delivered.append(delivered[-1])
            frames = delivered
        for f in frames:
            clock.t = max(clock.t, f.arrival)
            s.feed(f)
            await s.advance()
        clock.t = s.t0 + 2.3
        await s.finish()
        if shuffle:
            assert s.snapshot().frames_duplicate > 0
        rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=5)
        return [read_pcm(r.pcm_path) for r in rows]

    straight, shuffled = await run(False), await run(True)
    assert len(straight) == len(shuffled) == 3
    for x, y in zip(straight, shuffled):
        assert np.array_equal(x, y)


async def test_late_joiner_and_early_leaver_cost_nothing_where_absent(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    stays = Speaker(1, speech_like(4.5, seed=5))
    leaver = Speaker(2, speech_like(1.1, seed=6))
    joiner = Speaker(3, speech_like(1.5, seed=7), start_s=3.0)
    await play(s, clock, [stays, leaver, joiner], until_s=4.6)
    length = await s.finish()
    rows = await chunk_rows(store, s.meeting.id)
    grid = s.grid
    windows = grid.windows_for(length)
    assert {k for (u, k) in rows if u == 1} == set(range(windows))
    # the leaver's audio ends at 1.1 s: window 1 still holds the tail of it (1.008-1.1 s)
    assert {k for (u, k) in rows if u == 2} == {0, 1}
    # the joiner starts at 3.0 s: window 2 (2.016-3.024 s) has their first 24 ms
    assert {k for (u, k) in rows if u == 3} == {2, 3, 4}
    files = sorted(p.name for p in Layout(tmp_path).meeting_dir(s.meeting.id).iterdir())
    assert "2_3.pcm" not in files and "3_0.pcm" not in files
    for (u, k), row in rows.items():
        if u == MIX_USER_ID:
            continue
        track = {1: stays, 2: leaver, 3: joiner}[u].expected(length)
        assert np.array_equal(read_pcm(row.pcm_path)[:, 0], expected_chunk(track, grid, k, length))


async def test_a_window_waits_for_its_tail_and_late_frames(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    sp = Speaker(9, speech_like(2.0, seed=8))
    due = (s.grid.due_at(0)) / RATE + 0.5  # tail + the 0.5 s jitter margin
    held_back = 45  # frame 45 (0.90-0.92 s) arrives 0.4 s late
    for i in range(sp.n_frames):
        f = sp.frame(i, s.t0)
        if i == held_back:
            continue
        clock.t = f.arrival
        s.feed(f)
        await s.advance()
        if f.arrival - s.t0 >= 0.92 + 0.4 and held_back is not None:
            late = sp.frame(held_back, s.t0)
            s.feed(VoiceFrame(late.user_id, late.ssrc, late.sequence, late.timestamp, clock.t, late.pcm))
            held_back = None
        rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=9)
        if clock.t - s.t0 < due - 0.021:
            assert rows == [], f"window 0 flushed at {clock.t - s.t0:.3f} s, before {due:.3f} s"
    rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=9)
    assert [r.seq for r in rows] == [0]
    want = expected_chunk(sp.expected(10 * RATE), s.grid, 0, 10 * RATE)
    assert np.array_equal(read_pcm(rows[0].pcm_path)[:, 0], want)  # the late frame is in it
    assert s.snapshot().frames_late == 0


async def test_a_repeated_flush_creates_nothing_twice(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    sp = Speaker(4, speech_like(1.5, seed=9))
    await play(s, clock, [sp], until_s=1.6, advance=False)
    s._tick(clock.t)  # place the frames without flushing
    await s._flush(0, None)
    first = await store.get_temp_recordings_for_meeting(s.meeting.id)
    data = {r.pcm_path: Path(r.pcm_path).read_bytes() for r in first}
    s._next = 0  # as if the counter update had been lost
    await s._flush(0, None)
    again = await store.get_temp_recordings_for_meeting(s.meeting.id)
    assert [r.id for r in again] == [r.id for r in first]
    assert {r.pcm_path: Path(r.pcm_path).read_bytes() for r in again} == data
    assert sorted(p.name for p in Layout(tmp_path).meeting_dir(s.meeting.id).iterdir()) == ["0_0.pcm", "4_0.pcm"]


async def test_an_opted_out_user_is_dropped_before_buffering(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock, accept_user=lambda uid: uid != 666)
    keep, refuse = Speaker(1, speech_like(1.5, seed=10)), Speaker(666, speech_like(1.5, seed=11))
    await play(s, clock, [keep, refuse], until_s=1.5)
    snap = s.snapshot()
    assert snap.speakers == (1,)
    assert snap.frames_refused == refuse.n_frames
    length = await s.finish()
    rows = await chunk_rows(store, s.meeting.id)
    assert {u for u, _ in rows} == {1, MIX_USER_ID}
    # the mix is the remaining speaker alone
    for k in range(s.grid.windows_for(length)):
        assert np.array_equal(read_pcm(rows[(MIX_USER_ID, k)].pcm_path), read_pcm(rows[(1, k)].pcm_path))


@pytest.mark.parametrize("strategy, users", [
    (Strategy.PER_USER, {1, 2}), (Strategy.MIXED, {MIX_USER_ID}), (Strategy.HYBRID, {1, 2, MIX_USER_ID}),
])
async def test_only_the_tracks_the_strategy_needs_are_written(store, tmp_path: Path, strategy, users) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock, strategy=strategy)
    await play(s, clock, [Speaker(1, speech_like(1.2, seed=1)), Speaker(2, speech_like(1.2, seed=2))], until_s=1.2)
    await s.finish()
    assert {u for u, _ in await chunk_rows(store, s.meeting.id)} == users
    assert {t.user_id for t in await store.tracks_for_meeting(s.meeting.id)} == users


async def test_memory_is_bounded_by_the_flush_interval_not_the_length(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    speakers = [Speaker(u, speech_like(20.0, seed=u)) for u in (1, 2, 3)]
    peak_early = peak_late = 0
    t0 = s.t0
    frames = sorted((f for sp in speakers for f in (sp.frame(i, t0) for i in range(sp.n_frames))),
                    key=lambda f: f.arrival)
    for n, f in enumerate(frames):
        s.feed(f)
        if n % 15 == 0:
            clock.t = f.arrival
            await s.advance()
            size = s.snapshot().buffered_bytes
            if f.arrival - t0 < 5:
                peak_early = max(peak_early, size)
            else:
                peak_late = max(peak_late, size)
    block = s.grid.chunk_samples * 2
    assert peak_late <= peak_early
    assert peak_late <= 3 * 3 * block  # three speakers, at most three window blocks each
    assert s.snapshot().windows_flushed >= 18


async def test_feed_never_raises_and_takes_frames_from_other_threads(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    sp = Speaker(8, speech_like(1.0, seed=12))
    bad = [VoiceFrame(8, 1, 0, 0, s.t0, b"\x01\x02\x03"), VoiceFrame(8, 1, 0, 0, s.t0, b""),
           VoiceFrame(0, 1, 0, 0, s.t0, bytes(3840))]  # user 0 is the mix's id, never a speaker

    def receive_thread() -> None:
        for f in bad:
            s.feed(f)
        for i in range(sp.n_frames):
            s.feed(sp.frame(i, s.t0))

    th = threading.Thread(target=receive_thread)
    th.start()
    th.join()
    clock.t = s.t0 + 1.0
    await s.advance()
    snap = s.snapshot()
    assert snap.frames_invalid == 3
    assert snap.frames_received == sp.n_frames + 3
    length = await s.finish()
    rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=8)
    got = np.concatenate([read_pcm(r.pcm_path)[P : P + r.sample_count, 0] for r in rows])
    assert np.array_equal(got, sp.expected(length))


async def test_the_length_limit_stops_the_timeline(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock, max_length_s=1.5)
    await play(s, clock, [Speaker(1, speech_like(2.5, seed=13))], until_s=2.5)
    assert s.snapshot().limit_reached
    assert await s.finish() == int(1.5 * RATE)
    rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=1)
    assert sum(r.sample_count for r in rows) == int(1.5 * RATE)


async def test_a_reconnect_with_a_new_ssrc_and_timestamps_lands_in_place(store, tmp_path: Path) -> None:
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    sp = Speaker(7, speech_like(3.0, seed=14))
    t0 = s.t0
    for i in range(sp.n_frames):
        f = sp.frame(i, t0)
        if i >= 80:  # reconnected at 1.6 s: a new SSRC, a new random timestamp base and sequence
            f = VoiceFrame(f.user_id, 999, (5000 + i) & 0xFFFF, (0xFFFFF000 + (i - 80) * 960) & 0xFFFFFFFF,
                           f.arrival, f.pcm)
        if 75 <= i < 80:
            continue  # and a few frames lost around it
        clock.t = f.arrival
        s.feed(f)
        await s.advance()
    length = await s.finish()
    want = sp.expected(length)
    want[75 * 960 : 80 * 960] = 0
    rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=7)
    got = np.concatenate([read_pcm(r.pcm_path)[P : P + r.sample_count, 0] for r in rows])
    assert np.array_equal(got, want)


async def test_a_frozen_bot_catching_up_loses_and_moves_nothing(store, tmp_path: Path) -> None:
    """The bot's process froze for 2.5 s mid-sentence (a starved host) and then read the
    backlog five times faster than real time, well inside the flush margin: every frame
    lands where its timestamp says, sample-exactly (the clock once moved 2 s late after
    50 such frames and wrote the rest of the backlog over itself)."""
    clock = Clock()
    s = await make_session(store, tmp_path, clock, flush_interval_s=4.0)
    sp = Speaker(7, speech_like(6.0, seed=21))
    t0 = s.t0
    freeze, wake = 1.0, 3.5
    for i in range(sp.n_frames):
        f = sp.frame(i, t0)
        sent = f.arrival - t0
        if sent >= freeze:
            f = VoiceFrame(f.user_id, f.ssrc, f.sequence, f.timestamp,
                           t0 + max(sent, wake + (sent - freeze) / 5), f.pcm)
        clock.t = f.arrival
        s.feed(f)
        await s.advance()
    length = await s.finish()
    rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=7)
    got = np.concatenate([read_pcm(r.pcm_path)[P : P + r.sample_count, 0] for r in rows])
    assert s.snapshot().frames_late == 0
    assert np.array_equal(got, sp.expected(length))


async def test_a_speaker_whose_rtp_timestamp_never_moves_is_recorded_whole(store, tmp_path: Path) -> None:
    """A broken client that sends a constant timestamp: nothing says where its frames go
    but their arrival, so that is where they go (main dropped every frame after the first
    as a duplicate)."""
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    sp = Speaker(9, speech_like(2.2, seed=9))
    frames = [sp.frame(i, s.t0) for i in range(sp.n_frames)]
    stuck = [VoiceFrame(f.user_id, f.ssrc, f.sequence, 4242, f.arrival, f.pcm) for f in frames]
    for f in stuck:
        clock.t = max(clock.t, f.arrival)
        s.feed(f)
        await s.advance()
    clock.t = s.t0 + 2.3
    length = await s.finish()
    assert s.snapshot().frames_duplicate == 0
    rows = await chunk_rows(store, s.meeting.id)
    track = sp.expected(length)
    for k in range(s.grid.windows_for(length)):
        pcm = read_pcm(rows[(9, k)].pcm_path)[:, 0]
        assert np.array_equal(pcm, expected_chunk(track, s.grid, k, length)), k


async def test_a_member_who_reconnects_all_meeting_long_costs_one_clock(store, tmp_path: Path) -> None:
    """Issue 8: each rejoin (a new SSRC) left its clock behind for the rest of the meeting."""
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    sp = Speaker(4, speech_like(3.0, seed=4))
    for i in range(sp.n_frames):
        f = sp.frame(i, s.t0)
        ssrc = 10_000 + i // 15  # a new connection every 0.3 s
        s.feed(VoiceFrame(f.user_id, ssrc, f.sequence, f.timestamp + ssrc * 7_777, f.arrival, f.pcm))
        clock.t = max(clock.t, f.arrival)
        await s.advance()
    assert len(s._clocks) <= 1 and len(s._held) <= 1
    clock.t = s.t0 + 3.2
    await s.finish()
    assert s._clocks == {} and s._held == {}


async def test_a_stop_ends_the_files_where_it_was_asked_for_however_long_leaving_takes(
        store, tmp_path: Path) -> None:
    """``[p]record stop`` at 2.0 s; leaving voice then takes 3 s (discord.py finishing a
    reconnect) while the member keeps talking and the ticker keeps advancing. The files
    end at 2.0 s and hold nothing said after it; a frame from before the stop that
    arrives during the wait (the reorder buffer let go of it) still lands in place."""
    clock = Clock()
    s = await make_session(store, tmp_path, clock)
    sp = Speaker(5, speech_like(5.0, seed=21))
    held_back = 90  # frame 90 ends at 1.82 s; it arrives at 2.3 s
    t0 = s.t0
    frames = [sp.frame(i, t0, arrival_delay=0.48 if i == held_back else 0.0) for i in range(sp.n_frames)]
    frames.sort(key=lambda f: f.arrival)
    sent = 0
    for step in range(1, 51):
        clock.t = t0 + step * 0.1
        while sent < len(frames) and frames[sent].arrival <= clock.t + 1e-9:
            s.feed(frames[sent])
            sent += 1
        if step == 20:
            s.end_here()  # the stop command, at 2.0 s
        await s.advance()
    assert s.elapsed_s() == 2.0  # a note taken while leaving belongs at the end, not after it
    length = await s.finish()
    assert length == int(2.0 * RATE)
    assert (await store.get_meeting(s.meeting.id)).length_samples == length
    rows = await store.get_temp_recordings_for_meeting(s.meeting.id, user_id=5)
    assert sum(r.sample_count for r in rows) == length
    got = np.concatenate([read_pcm(r.pcm_path)[P : P + r.sample_count, 0] for r in rows])
    assert np.array_equal(got, sp.expected(length))  # frame 90 included, nothing after 2.0 s
