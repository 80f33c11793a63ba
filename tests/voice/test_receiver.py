"""The receive path end to end: harness-wire datagrams in, VoiceFrames out."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chunkrecorder.audio.opus import CODEC_DELAY_SAMPLES, FRAME_SAMPLES, OPUS_SILENCE
from chunkrecorder.objects import VoiceFrame
from chunkrecorder.voice.receiver import PENDING_LIMIT, VoiceReceiver
from chunkrecorder.voice.ws_events import VoiceWsEvents
from harness.wire import Corruption, SpeakerWire, WireGroup
from tests.support.signals import assemble, best_lag, correlation, frames_of, speech_like


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """A wire group, its receiver, a clock and what came out."""

    def __init__(self, *, dave: bool = True, seed: int = 1, **options: Any) -> None:
        self.group = WireGroup(channel_id=77, bot_user_id=999, seed=seed, dave=dave, complexity=3)
        self.clock = Clock()
        self.out: list[VoiceFrame] = []
        self.rx = self.group.make_receiver(sink=self.out.append, clock=self.clock, **options)
        self.ws = VoiceWsEvents(self.rx)

    def speaker(self, user_id: int, *, announce: bool = True) -> SpeakerWire:
        wire = self.group.add_speaker(user_id)
        if announce:
            self.ws.handle(wire.connect_event())
            self.ws.handle(wire.speaking_event())
        return wire

    def at(self, k: int) -> None:
        """Frame ``k``'s instant (plus a few ms of network)."""
        self.clock.t = k * 0.02 + 0.005

    def frames(self, user_id: int) -> list[VoiceFrame]:
        return [f for f in self.out if f.user_id == user_id]

    def finish(self) -> None:
        self.clock.t += 1.0
        self.rx.poll()
        self.rx.flush()


def test_two_speakers_decode_to_their_own_sources_sample_aligned() -> None:
    rig = Rig()
    alice, bob = rig.speaker(111), rig.speaker(222)
    a0, b0 = alice.timestamp, bob.timestamp
    sa, sb = speech_like(3.0, seed=1), speech_like(3.0, seed=2)
    fa, fb = frames_of(sa), frames_of(sb)
    for k in range(len(fa)):
        rig.at(k)
        rig.rx.on_datagram(alice.packet(fa[k]))
        rig.rx.on_datagram(bob.packet(fb[k]))
    rig.finish()

    assert rig.rx.stats.delivered == 2 * len(fa) and rig.rx.stats.dropped_corrupt == 0
    da = assemble(rig.frames(111), first_timestamp=a0, length=len(sa))
    db = assemble(rig.frames(222), first_timestamp=b0, length=len(sb))
    # Placement by RTP timestamp is sample-exact: what is left is the codec's look-ahead.
    assert abs(best_lag(sa, da) - CODEC_DELAY_SAMPLES) <= 4
    assert abs(best_lag(sb, db) - CODEC_DELAY_SAMPLES) <= 4
    assert correlation(sa, da) > 0.95 and correlation(sb, db) > 0.95
    assert abs(correlation(sb, da)) < 0.1 and abs(correlation(sa, db)) < 0.1  # no crosstalk
    frame = rig.frames(111)[10]
    assert len(frame.pcm) == FRAME_SAMPLES * 4 and frame.ssrc == alice.ssrc
    assert frame.arrival == pytest.approx(10 * 0.02 + 0.005)


def test_without_dave_frames_pass_straight_to_opus() -> None:
    rig = Rig(dave=False)
    alice = rig.speaker(111)
    t0 = alice.timestamp
    src = speech_like(1.0, seed=3)
    for k, pcm in enumerate(frames_of(src)):
        rig.at(k)
        rig.rx.on_datagram(alice.packet(pcm))
    rig.finish()
    assert correlation(src, assemble(rig.frames(111), first_timestamp=t0, length=len(src))) > 0.95


def test_corrupt_packets_are_counted_dropped_and_the_rest_survives(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    alice = rig.speaker(111)
    t0 = alice.timestamp
    src = speech_like(4.0, seed=4)
    frames = frames_of(src)
    rng = random.Random(5)
    kinds = {k: kind for k, kind in zip(range(7, len(frames), 9), [Corruption.BAD_MAC, Corruption.TRUNCATED,
                                                                    Corruption.GARBAGE_OPUS] * 100)}
    for k, pcm in enumerate(frames):
        rig.at(k)
        data = alice.packet(pcm)
        if k in kinds:
            data = rig.group.corrupt(data, kinds[k], rng)
        rig.rx.on_datagram(data)
    rig.finish()

    s = rig.rx.stats
    expected = {kind: sum(1 for v in kinds.values() if v is kind) for kind in Corruption}
    assert s.bad_mac == expected[Corruption.BAD_MAC]
    assert s.truncated == expected[Corruption.TRUNCATED]
    assert s.garbage_opus == expected[Corruption.GARBAGE_OPUS]
    assert s.dropped_corrupt == len(kinds) and s.dave_failed == 0
    # Packets that never decrypted leave one-frame gaps, concealed; garbage leaves holes.
    assert s.concealed == expected[Corruption.BAD_MAC] + expected[Corruption.TRUNCATED]
    assert s.delivered == len(frames) - expected[Corruption.GARBAGE_OPUS]
    intact = [k not in kinds for k in range(len(frames))]
    decoded = assemble(rig.frames(111), first_timestamp=t0, length=len(src))
    assert correlation(src, decoded, mask=intact) > 0.93
    assert any("Dropped voice packet (bad_mac" in r.getMessage() for r in caplog.records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(st.binary(max_size=200), min_size=1, max_size=20))
def test_garbage_never_raises_and_is_accounted_for(junk: list[bytes]) -> None:
    rig = Rig(seed=9, dave=False)
    alice = rig.speaker(111)
    for i, data in enumerate(junk):
        rig.rx.on_datagram(data)
        rig.rx.on_datagram(alice.packet_from_opus(b"\xfc" + bytes([i]) * 20))
    rig.finish()
    s = rig.rx.stats
    assert s.received == 2 * len(junk)
    accounted = s.ignored + s.bad_mac + s.truncated + s.malformed + s.unknown_ssrc + s.decrypted
    assert accounted == s.received


def test_unknown_ssrc_waits_for_its_speaking_event_then_is_replayed() -> None:
    rig = Rig()
    alice = rig.speaker(111, announce=False)
    src = speech_like(0.5, seed=6)
    for k, pcm in enumerate(frames_of(src)[:10]):
        rig.at(k)
        rig.rx.on_datagram(alice.packet(pcm))
    assert rig.out == [] and rig.rx.stats.unknown_ssrc == 0
    rig.ws.handle(alice.speaking_event())  # SPEAKING arrives late (it races the UDP path)
    rig.finish()
    assert [f.sequence for f in rig.frames(111)] == [(alice.sequence - 10 + i) & 0xFFFF for i in range(10)]


def test_never_mapped_ssrc_is_dropped_and_counted() -> None:
    rig = Rig()
    stranger = rig.speaker(333, announce=False)
    rig.at(0)
    for _ in range(3):
        rig.rx.on_datagram(stranger.packet_from_opus(OPUS_SILENCE))
    rig.clock.t += 2.5
    rig.rx.poll()
    assert rig.rx.stats.unknown_ssrc == 3 and rig.out == []


def test_reconnect_with_a_new_ssrc_keeps_the_user_and_the_audio() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    src = speech_like(2.0, seed=7)
    frames = frames_of(src)
    first_ssrc, t_first = alice.ssrc, alice.timestamp
    for k in range(40):
        rig.at(k)
        rig.rx.on_datagram(alice.packet(frames[k]))
    rig.ws.handle({"op": 13, "d": {"user_id": "111"}})  # client drops...
    new_ssrc = alice.reconnect()
    t_second = alice.timestamp
    rig.ws.handle(alice.connect_event())
    rig.ws.handle(alice.speaking_event())  # ...and comes back with a new SSRC
    for k in range(40, len(frames)):
        rig.at(k)
        rig.rx.on_datagram(alice.packet(frames[k]))
    rig.finish()

    assert new_ssrc != first_ssrc and rig.rx.ssrc_for(111) == new_ssrc
    before = [f for f in rig.frames(111) if f.ssrc == first_ssrc]
    after = [f for f in rig.frames(111) if f.ssrc == new_ssrc]
    assert len(before) == 40 and len(after) == len(frames) - 40
    tail = src[40 * FRAME_SAMPLES :]
    assert correlation(tail, assemble(after, first_timestamp=t_second, length=len(tail))) > 0.9
    head = src[: 40 * FRAME_SAMPLES]
    assert correlation(head, assemble(before, first_timestamp=t_first, length=len(head))) > 0.9


def test_duplicates_are_delivered_once_and_never_reach_dave() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    for k, pcm in enumerate(frames_of(speech_like(0.4, seed=8))):
        rig.at(k)
        data = alice.packet(pcm)
        rig.rx.on_datagram(data)
        rig.rx.on_datagram(data)
    rig.finish()
    s = rig.rx.stats
    assert s.duplicates == 20 and s.delivered == 20 and s.dave_failed == 0
    assert len({f.sequence for f in rig.frames(111)}) == 20


def test_reordered_packets_come_out_in_order_with_nothing_lost() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    t0 = alice.timestamp
    src = speech_like(2.0, seed=9)
    packets = [alice.packet(pcm) for pcm in frames_of(src)]
    rng = random.Random(3)
    order = sorted(range(len(packets)), key=lambda i: i + rng.uniform(0, 3.5))
    for n, i in enumerate(order):
        rig.at(n)
        rig.rx.on_datagram(packets[i])
    rig.finish()
    seqs = [f.sequence for f in rig.frames(111)]
    assert len(seqs) == len(packets) and rig.rx.stats.lost == 0 and rig.rx.stats.late == 0
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    assert correlation(src, assemble(rig.frames(111), first_timestamp=t0, length=len(src))) > 0.95


def test_short_gap_is_concealed_long_gap_is_left_silent() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    t0 = alice.timestamp
    frames = frames_of(speech_like(1.0, seed=10))
    packets = [alice.packet(pcm) for pcm in frames]
    lost = {10, 20, 21, 22, 23, 24, 25}  # one packet, then six in a row
    for k, data in enumerate(packets):
        if k not in lost:
            rig.at(k)
            rig.rx.on_datagram(data)
    rig.finish()
    got = {((f.timestamp - t0) % (1 << 32)) // FRAME_SAMPLES for f in rig.frames(111)}
    assert 10 in got  # concealed, at its own timestamp
    assert not got & {20, 21, 22, 23, 24, 25}
    assert rig.rx.stats.concealed == 1 and rig.rx.stats.lost == 7
    assert len(got) == len(frames) - 6


def test_a_mono_receiver_gives_the_same_voice_at_the_same_place_and_conceals_losses() -> None:
    """A mono meeting's receiver decodes straight to mono (cheaper than stereo and a
    downmix): same placement, same voice, FEC/PLC for a short gap, silence for a long one."""
    rig = Rig(channels=1)
    alice = rig.speaker(111)
    t0 = alice.timestamp
    src = speech_like(2.0, seed=10)
    frames = frames_of(src)
    lost = {10, 20, 21, 22, 23, 24, 25}
    for k, pcm in enumerate(frames):
        data = alice.packet(pcm)
        if k not in lost:
            rig.at(k)
            rig.rx.on_datagram(data)
    rig.finish()
    got = rig.frames(111)
    assert all(f.channels == 1 and len(f.pcm) == 2 * FRAME_SAMPLES for f in got)
    placed = {((f.timestamp - t0) % (1 << 32)) // FRAME_SAMPLES for f in got}
    assert 10 in placed and not placed & {20, 21, 22, 23, 24, 25}
    assert rig.rx.stats.concealed == 1 and rig.rx.stats.lost == 7
    heard = assemble(got, first_timestamp=t0, length=len(src))
    assert abs(best_lag(src, heard) - CODEC_DELAY_SAMPLES) <= 4
    intact = [not 19 <= k <= 26 for k in range(len(frames))]  # the long gap and its edges
    assert correlation(src, heard, mask=intact) > 0.95


def test_a_new_sink_with_another_channel_count_gets_frames_of_that_count_from_then_on() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    t0 = alice.timestamp
    src = speech_like(2.0, seed=11)
    frames = frames_of(src)
    later: list[VoiceFrame] = []
    for k, pcm in enumerate(frames):
        if k == 50:
            rig.rx.set_sink(later.append, channels=1)
        rig.at(k)
        rig.rx.on_datagram(alice.packet(pcm))
    rig.finish()
    assert {f.channels for f in rig.frames(111)} == {2} and {f.channels for f in later} == {1}
    assert len(rig.frames(111)) + len(later) == len(frames)
    heard = assemble(rig.frames(111) + later, first_timestamp=t0, length=len(src))
    assert abs(best_lag(src, heard) - CODEC_DELAY_SAMPLES) <= 4
    assert correlation(src, heard) > 0.95
    with pytest.raises(ValueError):
        rig.rx.set_sink(later.append, channels=3)


def test_silence_frames_decode_to_silence() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    for k, data in enumerate(alice.silence_packets()):
        rig.at(k)
        rig.rx.on_datagram(data)
    rig.finish()
    assert len(rig.frames(111)) == 5
    assert all(not np.any(np.frombuffer(f.pcm, np.int16)) for f in rig.frames(111))


def test_padded_packets_decode_and_padding_only_packets_are_ignored() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    pcm = frames_of(speech_like(0.2, seed=11))
    for k, frame in enumerate(pcm):
        rig.at(k)
        rig.rx.on_datagram(alice.packet(frame, pad=1 + k * 3))
    padding_only = rig.group.sealer.seal(b"", sequence=alice.sequence, timestamp=alice.timestamp,
                                         ssrc=alice.ssrc, nonce=999, pad=8)
    rig.rx.on_datagram(padding_only)
    rig.finish()
    s = rig.rx.stats
    assert s.delivered == len(pcm) and s.dropped_corrupt == 0 and s.ignored == 1


def test_rtcp_and_ip_discovery_are_ignored_not_corrupt() -> None:
    rig = Rig()
    rig.rx.on_datagram(bytes([0x81, 0xC9]) + bytes(30))  # RTCP receiver report
    rig.rx.on_datagram(b"\x00\x02\x00\x46" + bytes(70))  # IP discovery reply
    assert rig.rx.stats.ignored == 2 and rig.rx.stats.dropped_corrupt == 0


def test_new_secret_key_makes_old_key_packets_fail() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    old = alice.packet_from_opus(OPUS_SILENCE)
    rig.rx.set_secret_key(bytes(32))
    rig.rx.on_datagram(old)
    assert rig.rx.stats.bad_mac == 1


def test_a_failing_sink_does_not_break_the_receiver() -> None:
    rig = Rig()
    calls: list[int] = []

    def sink(frame: VoiceFrame) -> None:
        calls.append(frame.sequence)
        raise RuntimeError("sink bug")

    rig.rx.set_sink(sink)
    alice = rig.speaker(111)
    for k in range(8):
        rig.at(k)
        rig.rx.on_datagram(alice.packet_from_opus(OPUS_SILENCE))
    rig.finish()
    assert len(calls) == 8


def test_socket_thread_and_event_loop_side_can_run_at_once() -> None:
    """Datagrams from a reader thread while the loop maps SSRCs and polls."""
    rig = Rig(dave=False)
    wires = [rig.speaker(uid, announce=False) for uid in range(1, 9)]
    # No more than an unknown SSRC may wait for its SPEAKING event: however the two
    # threads interleave, every packet must then arrive (beyond it, dropping is right).
    per = PENDING_LIMIT
    packets = [[w.packet_from_opus(OPUS_SILENCE) for _ in range(per)] for w in wires]
    rig.clock.t = 0.0

    def reader() -> None:
        for i in range(per):
            for p in packets:
                rig.rx.on_datagram(p[i])

    thread = threading.Thread(target=reader)
    thread.start()
    for w in wires:
        rig.rx.map_ssrc(w.ssrc, w.user_id)
        rig.rx.poll()
    thread.join()
    rig.finish()
    assert rig.rx.stats.delivered == len(wires) * per
    for w in wires:
        seqs = [f.sequence for f in rig.frames(w.user_id)]
        assert len(seqs) == per and all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))


def test_forgotten_user_packets_become_unknown() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    rig.at(0)
    rig.rx.on_datagram(alice.packet_from_opus(OPUS_SILENCE))
    rig.ws.handle(rig.group.remove_speaker(111))
    assert rig.rx.ssrc_for(111) is None
    rig.rx.on_datagram(alice.packet_from_opus(OPUS_SILENCE))
    rig.rx.flush()
    assert rig.rx.stats.unknown_ssrc == 1 and len(rig.frames(111)) == 1


# ---- the voice-websocket side -----------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_member_join(self, user_id: int) -> None:
        self.events.append(("join", user_id))

    async def on_member_leave(self, user_id: int) -> None:
        self.events.append(("leave", user_id))

    def on_speaking(self, user_id: int, ssrc: int, speaking: bool) -> None:
        self.events.append(("speaking", user_id, ssrc, speaking))

    def on_resume(self, outage_s: float) -> None:
        self.events.append(("resume", outage_s))


async def test_ws_events_map_ssrcs_and_reach_the_listener() -> None:
    rig = Rig()
    listener = Recorder()
    rig.ws.listener = listener
    rig.ws.handle({"op": 11, "d": {"user_ids": ["5", "6"]}})
    rig.ws.handle({"op": 5, "d": {"user_id": "5", "ssrc": 1234, "speaking": 1}})
    rig.ws.handle({"op": 12, "d": {"user_id": "6", "audio_ssrc": 4321, "video_ssrc": 0}})
    rig.ws.handle({"op": 13, "d": {"user_id": "5"}})
    rig.ws.handle({"op": 9, "d": None})
    await asyncio.sleep(0)  # the async listener method runs as a task
    assert rig.rx.user_for(4321) == 6 and rig.rx.user_for(1234) is None
    assert listener.events == [("join", 5), ("join", 6), ("speaking", 5, 1234, True), ("resume", 0.0), ("leave", 5)]
    assert rig.ws.members == {6}


def test_malformed_ws_messages_change_nothing(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    for msg in ({"op": 5, "d": {"ssrc": 1}}, {"op": 5, "d": {"user_id": "x", "ssrc": 1}}, {"op": 13},
                {"op": 11, "d": {"user_ids": None}}, {"d": {}}, {"op": 4, "d": {"secret_key": [1, 2]}}):
        rig.ws.handle(msg)
    assert rig.rx.user_for(1) is None
    assert sum("malformed" in r.getMessage() for r in caplog.records) >= 4


def test_session_description_rekeys_the_receiver() -> None:
    rig = Rig()
    alice = rig.speaker(111)
    other = WireGroup(channel_id=77, bot_user_id=999, seed=42, dave=False)
    rig.ws.handle(other.session_description())
    rig.rx.on_datagram(alice.packet_from_opus(OPUS_SILENCE))
    assert rig.rx.stats.bad_mac == 1


def test_receiver_needs_a_full_key() -> None:
    with pytest.raises(ValueError):
        VoiceReceiver(secret_key=b"short", sink=lambda f: None, dave=None, clock=lambda: 0.0)
