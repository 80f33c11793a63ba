"""The timeline's pieces, driven directly: window grid, RTP placement, buffers, mixing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from chunkrecorder.audio import mp3
from chunkrecorder.audio.mix import FULL_SCALE, THRESHOLD, mix, soft_limit, to_channels
from chunkrecorder.pipeline.timeline import Grid, SpeakerClock, TrackBuffer

RATE = 48_000


# ---------------------------------------------------------------- grid


@pytest.mark.parametrize(
    "interval, frames", [(10.0, 417), (1.0, 42), (2.5, 104), (300.0, 12_500)]
)
def test_windows_lie_on_the_mp3_frame_grid(interval: float, frames: int) -> None:
    grid = Grid.for_interval(interval)
    assert grid.chunk_samples == frames * mp3.FRAME
    assert all(grid.start(k) % mp3.FRAME == 0 for k in range(50))
    assert abs(grid.chunk_samples - interval * RATE) <= mp3.FRAME / 2


def test_the_default_window_is_the_documented_10_008_s() -> None:
    assert Grid.for_interval(10.0).chunk_samples == 480_384


def test_last_window_is_partial_and_windows_cover_the_length() -> None:
    grid = Grid.for_interval(1.0)
    length = 3 * grid.chunk_samples + 1000
    assert grid.windows_for(length) == 4
    assert grid.body(3, length) == 1000
    assert grid.body(2, length) == grid.chunk_samples
    assert grid.windows_for(0) == 0
    assert sum(mp3.frames_for(grid.body(k, length)) for k in range(4)) == mp3.frames_for(length)
    start, end = grid.span(3, length)
    assert (start, end) == (grid.start(3) - mp3.PRIME_SAMPLES, grid.start(3) + 1000 + mp3.TAIL_SAMPLES)


# ---------------------------------------------------------------- speaker clock


def _feed(clock: SpeakerClock, ts0: int, heard0: int, idx: list[int], jitter=None) -> list[int | None]:
    out = []
    for j, i in enumerate(idx):
        extra = 0 if jitter is None else jitter[j]
        out.append(clock.place((ts0 + i * 960) & 0xFFFFFFFF, heard0 + i * 960 + extra))
    return out


def test_frames_land_where_their_timestamps_say_across_a_wrap() -> None:
    clock = SpeakerClock()
    ts0 = 0xFFFFFFFF - 5 * 960  # wraps after 5 frames
    placed = _feed(clock, ts0, 48_000, list(range(20)))
    assert placed == [48_000 + i * 960 for i in range(20)]


def test_reordered_frames_go_back_where_they_belong_and_duplicates_are_refused() -> None:
    clock = SpeakerClock()
    order = [0, 1, 3, 2, 4, 6, 5, 5, 7, 3]
    # a reordered frame arrives late (one frame later than its place)
    jitter = [0, 0, 0, 960, 0, 0, 960, 2000, 0, 5000]
    placed = _feed(clock, 1000, 0, order, jitter)
    assert placed[:7] == [i * 960 for i in order[:7]]
    assert placed[7] is None and placed[9] is None  # duplicates
    assert placed[8] == 7 * 960


def test_jitter_does_not_move_a_speaker() -> None:
    rng = np.random.default_rng(3)
    clock = SpeakerClock()
    jitter = rng.integers(0, int(0.03 * RATE), size=500).tolist()
    jitter[0] = 0
    placed = _feed(clock, 5, 0, list(range(500)), jitter)
    assert placed == [i * 960 for i in range(500)]
    assert clock.reanchors == 0


@pytest.mark.parametrize("ppm", [-20_000, -1_000, 1_000, 20_000])
def test_a_drifting_sender_clock_never_drifts_the_track_from_the_wall_clock(ppm: int) -> None:
    """The sender's 20 ms frames are really (1+ppm) * 20 ms long in wall time."""
    clock = SpeakerClock()
    wall_per_frame = 960 * (1 + ppm / 1e6)
    errors = []
    for i in range(3000):  # 60 s of uninterrupted speech
        heard = int(round(i * wall_per_frame))
        pos = clock.place(1000 + i * 960, heard)
        errors.append(pos - heard)
    # bounded by the tolerance plus what drifts within one check period, for ever
    per_frame = abs(wall_per_frame - 960)
    bound = clock.tolerance + clock.check_every * per_frame + 960
    assert max(abs(e) for e in errors) <= bound
    assert max(abs(e) for e in errors[-500:]) <= bound
    if abs(ppm) >= 10_000:
        assert clock.reanchors > 0


def test_timestamps_that_stood_still_over_a_silence_are_re_anchored_once_arrival_proves_it() -> None:
    clock = SpeakerClock()
    assert _feed(clock, 0, 0, list(range(10))) == [i * 960 for i in range(10)]
    # 3 s of silence, but the client's timestamps continue as if there were none: at
    # first this looks like a delivery stall (contiguous timestamps, late arrival), so
    # the frames keep their RTP places until a whole check period arrived that late.
    resumed = [clock.place(10 * 960 + i * 960, 3 * RATE + 10 * 960 + i * 960) for i in range(2 * clock.check_every)]
    assert resumed[: clock.check_every] == [10 * 960 + i * 960 for i in range(clock.check_every)]
    assert resumed[-1] == 3 * RATE + (10 + 2 * clock.check_every - 1) * 960
    assert clock.reanchors == 1
    assert all(b > a for a, b in zip(resumed, resumed[1:]))  # nothing written over


def test_a_delivery_stall_with_contiguous_timestamps_keeps_every_frame_in_place() -> None:
    """A starved process (or a reconnect's replay) hands 300 ms of frames over at once:
    their RTP timestamps follow on, so they belong right after the frames before them,
    not 300 ms later (a hole), and the burst must not be written over itself."""
    clock = SpeakerClock()
    placed = _feed(clock, 7_000, 0, list(range(50)))
    stalled = [clock.place(7_000 + i * 960, 65 * 960) for i in range(50, 66)]  # all arrive at once
    after = _feed(clock, 7_000, 0, list(range(66, 120)))
    assert placed + stalled + after == [i * 960 for i in range(120)]
    assert clock.reanchors == 0


def test_a_frozen_process_catching_up_keeps_every_frame_in_place() -> None:
    """The bot's process froze for 3 s (a starved VPS, a long pause) and then read the
    backlog five times faster than real time. Every frame of that backlog arrived late,
    more than a whole check period of them, but late by less and less: that is a queue
    draining, not a slow sender clock, and the frames belong at their timestamps. (Seen
    under load: the anchor moved 2 s after the first 50 frames and every later frame,
    now "early", pulled it back, writing 2.5 s of speech over itself in 0.5 s.)"""
    clock = SpeakerClock()
    freeze, wake = int(5.7 * RATE), int(8.75 * RATE)
    placed = []
    for i in range(600):
        sent = i * 960
        heard = sent if sent < freeze else max(sent, wake + (sent - freeze) // 5)
        placed.append(clock.place(1_000 + sent, heard, sequence=i, samples=960))
    assert placed == [i * 960 for i in range(600)]
    assert clock.reanchors == 0


def test_audio_after_a_real_gap_is_placed_exactly() -> None:
    """The sender was quiet (or lost) for 1.5 s: its timestamps jumped as far as arrival did."""
    clock = SpeakerClock()
    _feed(clock, 0, 0, list(range(30)))
    gap = int(1.5 * RATE)
    jitter = [300, 0, 120, 40, 0]
    resumed = [clock.place(30 * 960 + gap + i * 960, 30 * 960 + gap + i * 960 + j) for i, j in enumerate(jitter)]
    assert resumed == [30 * 960 + gap + i * 960 for i in range(5)]
    # and a sender whose clock lost 100 ms over the gap is placed on arrival, at once
    late = clock.place(35 * 960 + 2 * gap, 35 * 960 + 2 * gap + int(0.1 * RATE))
    assert late == 35 * 960 + 2 * gap + int(0.1 * RATE) and clock.reanchors == 1


def test_timestamps_that_advance_over_a_silence_are_trusted() -> None:
    clock = SpeakerClock()
    _feed(clock, 0, 0, list(range(10)))
    # the client advanced its timestamp by the silence (as Discord clients do)
    ts = 10 * 960 + 3 * RATE
    assert clock.place(ts, ts + 700) == ts
    assert clock.reanchors == 0


# ---------------------------------------------------------------- buffers


def test_buffer_reads_back_what_was_written_and_silence_elsewhere() -> None:
    grid = Grid.for_interval(1.0)
    buf = TrackBuffer(grid, 1)
    assert buf.read(0, 100) is None
    x = np.arange(1, 2001, dtype=np.int16).reshape(-1, 1)
    buf.write(grid.chunk_samples - 1000, x)  # straddles blocks 0 and 1
    got = buf.read(grid.chunk_samples - 1500, grid.chunk_samples + 1500)
    assert got is not None
    assert np.array_equal(got[500:2500], x)
    assert not got[:500].any() and not got[2500:].any()
    assert buf.read(3 * grid.chunk_samples, 4 * grid.chunk_samples) is None


def test_writes_below_the_floor_are_dropped_and_blocks_released() -> None:
    grid = Grid.for_interval(1.0)
    buf = TrackBuffer(grid, 1)
    for b in range(3):
        buf.write(b * grid.chunk_samples, np.ones((10, 1), np.int16))
    buf.release_to(grid.chunk_samples + 500, grid.chunk_samples + 100)
    assert buf.nbytes == 2 * grid.chunk_samples * 2  # block 0 is gone
    dropped = buf.write(grid.chunk_samples + 400, np.full((200, 1), 5, np.int16))
    assert dropped == 100
    got = buf.read(grid.chunk_samples + 400, grid.chunk_samples + 600)
    assert got is not None and not got[:100].any() and (got[100:] == 5).all()


# ---------------------------------------------------------------- mixing


def test_mix_is_exactly_the_sum_wherever_the_sum_fits() -> None:
    rng = np.random.default_rng(0)
    tracks = [rng.integers(-8000, 8000, size=(50_000, 1)).astype(np.int16) for _ in range(3)]
    total = sum(t.astype(np.int64) for t in tracks)
    out = mix(tracks)
    inside = np.abs(total) <= THRESHOLD
    assert inside.mean() > 0.95
    assert np.array_equal(out[inside], total[inside])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-32768 * 8, 32767 * 8), min_size=1, max_size=64))
def test_limiter_never_wraps_and_keeps_order(values: list[int]) -> None:
    x = np.array(sorted(values), dtype=np.int64)
    y = soft_limit(x).astype(np.int64)
    assert (np.abs(y) <= FULL_SCALE).all()
    assert (np.diff(y) >= 0).all()  # monotonic: no wrap-around, no fold-back
    assert (np.sign(y) == np.sign(x)).all()
    small = np.abs(x) <= THRESHOLD
    assert np.array_equal(y[small], x[small])


def test_loud_overlap_is_compressed_not_clipped() -> None:
    t = np.arange(4800) / RATE
    a = (np.sin(2 * np.pi * 220 * t) * 30_000).astype(np.int16).reshape(-1, 1)
    out = mix([a, a]).astype(np.int64)
    assert out.max() < FULL_SCALE and out.min() > -FULL_SCALE
    assert np.count_nonzero(np.abs(out) >= FULL_SCALE - 1) == 0


def test_stereo_is_folded_to_mono_by_the_mean() -> None:
    stereo = np.array([[100, 300], [-32768, -32768], [32767, 32767], [1, 2]], dtype=np.int16)
    assert to_channels(stereo, 1)[:, 0].tolist() == [200, -32768, 32767, 1]
    assert to_channels(stereo, 2) is stereo


def test_a_stream_anchored_on_its_first_frames_is_not_late_by_the_first_delay() -> None:
    """The first frame came 18 ms late: anchoring on it alone would record everything 18 ms late."""
    delays = [864, 300, 20, 510, 0, 700, 90, 410, 60, 200]  # samples of network delay
    clock = SpeakerClock()
    clock.anchor_on([(1_000 + i * 960, i * 960 + d) for i, d in enumerate(delays)])
    placed = [clock.place(1_000 + i * 960, i * 960 + d) for i, d in enumerate(delays)]
    assert placed == [i * 960 for i in range(10)]
    later = clock.place(1_000 + 10 * 960, 10 * 960 + 500)
    assert later == 10 * 960 and clock.reanchors == 0


def test_an_early_frame_later_on_pulls_the_anchor_back() -> None:
    clock = SpeakerClock()
    assert clock.place(0, 900) == 900  # anchored on a delayed first frame
    assert clock.place(960, 960 + 100) == 960 + 100 - 0  # 800 samples early: the anchor moves
    assert clock.reanchors == 1
    assert clock.place(1920, 1920 + 400) == 1920 + 100  # jitter later never moves it back


def test_duplicate_detection_stays_bounded_whatever_the_timestamps_do() -> None:
    """Issue 8: a sender whose timestamp advances by 1 per frame made each frame cost more
    than the last (1.2 ms after 20 minutes). What is kept to find duplicates is bounded by
    ``SEEN`` frames however the timestamps go (bench/timeline.py measures the cost)."""
    clock = SpeakerClock()
    for i in range(60_000):  # 20 minutes of 20 ms frames
        assert clock.place(1000 + i, 5000 + i * 960, sequence=i & 0xFFFF, samples=960) == 5000 + i * 960
    assert len(clock._seen) == len(clock._seen_order) == SpeakerClock.SEEN
    last = 59_999
    assert clock.place(1000 + last, 5000 + (last + 2) * 960, sequence=last & 0xFFFF, samples=960) is None
    assert clock.place(1000 + last - 100, 5000 + (last + 2) * 960, sequence=(last - 100) & 0xFFFF,
                       samples=960) is None


def test_a_sender_whose_timestamp_never_moves_is_placed_by_arrival_not_dropped() -> None:
    clock = SpeakerClock()
    placed = [clock.place(777, 2000 + i * 960, sequence=(65_500 + i) & 0xFFFF, samples=960) for i in range(200)]
    assert placed == [2000 + i * 960 for i in range(200)]  # every frame kept, in order, at its pace
    assert clock.unusable == 199
    assert clock.place(777, 2000 + 200 * 960, sequence=(65_500 + 199) & 0xFFFF, samples=960) is None  # a real duplicate
