"""The fake voice channel, through the bot's real receive path (wire → VoiceReceiver).

These tests stop at the receiver's sink: what the pipeline would be fed. The
lifecycle tests (tests/harness/test_lifecycle_*.py) go on through the pipeline to MP3s.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from chunkrecorder.objects import VoiceFrame
from chunkrecorder.voice.link import BaseVoiceEventListener, VoiceLink
from harness import sources
from harness.clock import WallClock
from harness.impairments import Fate, Impairments
from harness.network import FakeVoiceNetwork
from harness.sources import FRAME_SAMPLES, Activity

#: Samples by which decoded Opus trails its input (the encoder's look-ahead).
OPUS_DELAY = 312


class Recorder(BaseVoiceEventListener):
    """Collects frames from the sink and every listener event."""

    def __init__(self) -> None:
        self.frames: dict[int, list[VoiceFrame]] = defaultdict(list)
        self.events: list[tuple[Any, ...]] = []

    def sink(self, frame: VoiceFrame) -> None:
        self.frames[frame.user_id].append(frame)

    def on_member_join(self, user_id: int) -> None:
        self.events.append(("join", user_id))

    def on_member_leave(self, user_id: int) -> None:
        self.events.append(("leave", user_id))

    def on_disconnect(self, reason: str) -> None:
        self.events.append(("disconnect", reason))


async def _connect(net: FakeVoiceNetwork) -> tuple[Any, Recorder]:
    link = await net.connector(net.channel)
    rec = Recorder()
    link.receiver.set_sink(rec.sink)
    link.set_listener(rec)
    return link, rec


def _track(frames: list[VoiceFrame], first_ts: int, samples: int) -> np.ndarray:
    """Lay frames out by RTP timestamp, as a recording would."""
    out = np.zeros((samples, 2), dtype=np.int16)
    for f in frames:
        pos = (f.timestamp - first_ts) % (1 << 32)
        pcm = np.frombuffer(f.pcm, dtype=np.int16).reshape(-1, 2)
        if pos + len(pcm) <= samples:
            out[pos : pos + len(pcm)] = pcm
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / den) if den else 0.0


async def test_link_is_the_cogs_voice_link_with_the_real_receiver() -> None:
    net = FakeVoiceNetwork(dave=False)
    link = await net.connector(net.channel)
    from chunkrecorder.voice.receiver import VoiceReceiver

    assert isinstance(link, VoiceLink)
    assert type(link.receiver) is VoiceReceiver
    assert link.channel_id == net.channel.id and link.is_connected()
    with pytest.raises(RuntimeError, match="Already connected"):
        await net.connector(net.channel)
    await link.disconnect()
    assert not link.is_connected()


async def test_clean_channel_delivers_every_frame_to_its_speaker_only() -> None:
    net = FakeVoiceNetwork(seed=1)
    alice, bob = sources.sweep(300, 700), sources.sweep(1500, 2200)
    net.add_speaker(111, alice, name="alice")
    net.add_speaker(222, bob, name="bob")
    link, rec = await _connect(net)
    await net.run(2.0)
    await net.drain()
    link.receiver.flush()

    assert {u: len(f) for u, f in rec.frames.items()} == {111: 100, 222: 100}
    stats = link.receiver.stats
    assert stats.dropped_corrupt == 0 and stats.lost == 0 and stats.unknown_ssrc == 0
    assert (net.fates(111) == Fate.DELIVERED).all()
    n = 100 * FRAME_SAMPLES
    got_a = _track(rec.frames[111], rec.frames[111][0].timestamp, n)[:, 0]
    got_b = _track(rec.frames[222], rec.frames[222][0].timestamp, n)[:, 0]
    ref_a = alice.samples(0, n)[:, 0]
    ref_b = bob.samples(0, n)[:, 0]
    for got, ref, other in ((got_a, ref_a, ref_b), (got_b, ref_b, ref_a)):
        # Decoded Opus trails its input by the encoder's look-ahead, and only by that.
        lag = max(range(OPUS_DELAY - 40, OPUS_DELAY + 40), key=lambda d: _corr(got[d:], ref[: n - d]))
        assert abs(lag - OPUS_DELAY) <= 8
        assert _corr(got[lag:], ref[: n - lag]) > 0.9
        assert abs(_corr(got[lag:], other[: n - lag])) < 0.05
    # The receiver stamps arrival from the harness's clock: frame k arrives at (k+1)*20 ms.
    assert [f.arrival for f in rec.frames[111][:3]] == pytest.approx([0.02, 0.04, 0.06])


async def test_quiet_speakers_send_nothing_but_their_rtp_clock_runs_on() -> None:
    net = FakeVoiceNetwork(dave=False)
    spurts = Activity.from_seconds([(0.0, 0.5), (1.2, 1.6)])
    net.add_speaker(111, sources.tone(440, activity=spurts))
    link, rec = await _connect(net)
    await net.run(2.0)
    await net.drain()
    link.receiver.flush()
    frames = rec.frames[111]
    # 25 + 20 talking frames, each spurt followed by the 5 Opus-silence frames clients send.
    assert len(frames) == 25 + 5 + 20 + 5
    ts = [(f.timestamp - frames[0].timestamp) % (1 << 32) for f in frames]
    assert ts[30] == 60 * FRAME_SAMPLES  # second spurt sits 1.2 s after the first
    assert not np.frombuffer(frames[27].pcm, dtype=np.int16).any()  # silence frame decodes to silence
    fates = net.fates(111)
    assert (fates[35:60] == Fate.NOT_SENT).all()


async def test_late_join_early_leave_reach_the_listener_and_the_channel() -> None:
    net = FakeVoiceNetwork(dave=False)
    net.add_speaker(111, sources.tone(440))
    net.add_speaker(222, sources.tone(880), join_at=0.5, leave_at=1.5)
    link, rec = await _connect(net)
    assert [m.id for m in net.channel.members] == [111]
    await net.run(1.0)
    assert sorted(m.id for m in net.channel.members) == [111, 222]
    await net.run(1.0)
    await net.drain()
    link.receiver.flush()
    assert [m.id for m in net.channel.members] == [111]
    assert ("join", 222) in rec.events and ("leave", 222) in rec.events
    assert rec.events.index(("join", 222)) < rec.events.index(("leave", 222))
    assert len(rec.frames[222]) == 50
    first = rec.frames[222][0].arrival
    assert first == pytest.approx(0.52)
    assert net.fates(222)[:25].tolist() == [Fate.NOT_SENT] * 25


async def test_reconnect_brings_a_new_ssrc_that_stays_with_the_same_user() -> None:
    net = FakeVoiceNetwork(seed=3)
    net.add_speaker(111, sources.tone(440), reconnects=(1.0,), reconnect_gap_s=0.2)
    link, rec = await _connect(net)
    await net.run(2.0)
    await net.drain()
    link.receiver.flush()
    (f0, s0), (f1, s1) = net.ssrcs(111)
    assert s0 != s1 and f1 == 60
    frames = rec.frames[111]
    assert {f.ssrc for f in frames} == {s0, s1}
    assert len(frames) == 100 - 10  # nothing during the 0.2 s gap
    assert all(f.ssrc == s1 for f in frames if f.arrival > 1.1)
    assert link.receiver.stats.unknown_ssrc == 0


async def test_every_corrupt_packet_is_counted_and_dropped_without_harm() -> None:
    imp = Impairments(bad_mac=0.05, truncated=0.05, garbage_opus=0.05, seed=11)
    net = FakeVoiceNetwork(impairments=imp, seed=11)
    net.add_speaker(111, sources.tone(440))
    net.add_speaker(222, sources.tone(880))
    link, rec = await _connect(net)
    await net.run(4.0)
    await net.drain()
    link.receiver.flush()
    stats = link.receiver.stats
    corrupted = net.path.stats.corrupted
    assert min(corrupted.values()) > 5
    assert stats.bad_mac == corrupted["bad_mac"]
    assert stats.truncated == corrupted["truncated"]
    assert stats.garbage_opus == corrupted["garbage_opus"]
    assert set(rec.frames) == {111, 222}
    for uid in (111, 222):
        # Every intact frame came through; each damaged one was dropped (or concealed).
        assert len(rec.frames[uid]) >= int((net.fates(uid) == Fate.DELIVERED).sum())


async def test_bot_disconnect_is_reported_and_a_new_connect_records_again() -> None:
    net = FakeVoiceNetwork(dave=False)
    net.add_speaker(111, sources.tone(440))
    link, rec = await _connect(net)
    await net.run(0.5)
    await net.disconnect_bot("channel deleted")
    assert not link.is_connected()
    assert rec.events[-1] == ("disconnect", "channel deleted")
    before = len(rec.frames[111])
    await net.run(0.5)
    assert len(rec.frames[111]) == before
    assert net.stats.undelivered == 25

    net.fail_next_connect(TimeoutError("voice handshake timed out"))
    with pytest.raises(TimeoutError):
        await net.connector(net.channel)
    link2, rec2 = await _connect(net)
    await net.run(0.5)
    await net.drain()
    link2.receiver.flush()
    assert len(rec2.frames[111]) == 25


async def test_same_seed_same_run() -> None:
    async def once() -> tuple[list[int], dict[str, int]]:
        net = FakeVoiceNetwork(impairments=Impairments(loss=0.1, reorder=0.1, jitter_ms=30, seed=5), seed=5)
        net.add_speaker(111, sources.noise_bursts(3, seed=1))
        link, _ = await _connect(net)
        await net.run(3.0)
        await net.drain()
        link.receiver.flush()
        return net.fates(111).tolist(), link.receiver.stats.as_dict()

    assert await once() == await once()


async def test_realtime_streams_at_wall_clock_pace_off_the_event_loop() -> None:
    net = FakeVoiceNetwork(clock=WallClock(), dave=False)
    net.add_speaker(111, sources.tone(440))
    link, rec = await _connect(net)
    net.rebase()
    ticks: list[float] = []
    t0 = time.monotonic()
    await net.run(0.6, on_tick=ticks.append, tick_s=0.1)
    await net.drain()
    link.receiver.flush()
    elapsed = time.monotonic() - t0
    assert elapsed > 0.55  # never ahead of the wall clock (how far behind is load, not a defect)
    assert len(rec.frames[111]) == 30
    assert len(ticks) >= 4 and ticks == sorted(ticks)


async def test_cached_opus_packets_carry_the_same_audio() -> None:
    # Benchmarks replay each looping signal's Opus packets instead of encoding live:
    # what arrives must still be that signal, in place.
    from harness.network import OpusCache

    cache = OpusCache()
    net = FakeVoiceNetwork(dave=False, opus_cache=cache)
    src = sources.synthetic_speaker(2, 2.0, talk_spurts=False)
    net.add_speaker(111, src)
    net.add_speaker(222, sources.synthetic_speaker(2, 2.0, talk_spurts=False))
    link, rec = await _connect(net)
    await net.run(2.0)
    await net.drain()
    link.receiver.flush()
    assert cache.frames(src) == 100  # one stream, shared by both clients
    n = 100 * FRAME_SAMPLES
    got = _track(rec.frames[111], rec.frames[111][0].timestamp, n)[:, 0]
    ref = src.samples(0, n)[:, 0]
    lag = max(range(OPUS_DELAY - 40, OPUS_DELAY + 40), key=lambda d: _corr(got[d:], ref[: n - d]))
    assert abs(lag - OPUS_DELAY) <= 8 and _corr(got[lag:], ref[: n - lag]) > 0.9


async def test_prerendered_schedule_replays_in_real_time() -> None:
    # The capacity benchmark's path: clients' work done up front, datagrams replayed.
    # What is checked is what the bot would notice: every frame, in order, none before
    # its time. How late a loaded machine delivers is a figure, not a pass/fail:
    # bench/capacity.py prints the sender's lag (p99, max, at the end).
    net = FakeVoiceNetwork(clock=WallClock(), dave=True, seed=2)
    net.add_speaker(111, sources.tone(440))
    net.add_speaker(222, sources.tone(880), join_at=0.2)
    link, rec = await _connect(net)
    schedule = net.prerender(0.6)
    assert [k for _, k, _ in schedule].count("dgram") == 30 + 20
    assert schedule == sorted(schedule, key=lambda x: x[0])
    due: dict[int, list[float]] = defaultdict(list)  # per SSRC, in sending order
    for at, kind, payload in schedule:
        if kind == "dgram":
            due[int.from_bytes(payload[8:12], "big")].append(at)
    t0 = net.clock()
    await net.replay(schedule, tick_s=0.05)
    await net.drain()
    link.receiver.flush()
    assert (len(rec.frames[111]), len(rec.frames[222])) == (30, 20)
    for uid in (111, 222):
        frames = rec.frames[uid]
        assert [f.timestamp - frames[0].timestamp for f in frames] == [960 * i for i in range(len(frames))]
        # Paced by the wall clock: no datagram was handed over before its time.
        offsets = due[frames[0].ssrc]
        assert all(f.arrival >= t0 + at for f, at in zip(frames, offsets)), uid
    # 222 joined 0.2 s in: its first frame came after 111's first ten, never before.
    first_222 = rec.frames[222][0].arrival
    assert rec.frames[111][9].arrival <= first_222 and first_222 >= t0 + 0.2
    assert len(net.stats.lags) == 50
