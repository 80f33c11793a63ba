"""Packets of SSRCs nobody has claimed yet: kept long enough, never without bound.

Discord's SPEAKING for a member can come after the member's first packets (it travels
the websocket, the audio UDP), so the receiver parks packets of an unknown SSRC and
replays them when the SSRC is claimed. A flood of invented SSRCs must not make that
cost memory or time: parking is capped in total (``PENDING_TOTAL``), and its per-packet
work does not grow with the number of parked SSRCs (``bench/parking.py`` measures it).
"""

from __future__ import annotations

import tracemalloc

from chunkrecorder.audio.opus import OPUS_SILENCE
from chunkrecorder.objects import VoiceFrame
from chunkrecorder.voice.receiver import PENDING_LIMIT, PENDING_MAX_AGE_S, PENDING_TOTAL, VoiceReceiver
from chunkrecorder.voice.ws_events import VoiceWsEvents
from harness.wire import WireGroup

from tests.support.signals import frames_of, speech_like

FLOOD = 20_000


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _rig(dave: bool = False) -> tuple[WireGroup, Clock, list[VoiceFrame], VoiceReceiver, VoiceWsEvents]:
    group = WireGroup(channel_id=77, bot_user_id=999, seed=4, dave=dave, complexity=3)
    clock = Clock()
    out: list[VoiceFrame] = []
    rx = group.make_receiver(sink=out.append, clock=clock)
    return group, clock, out, rx, VoiceWsEvents(rx)


def _stranger(group: WireGroup, ssrc: int) -> bytes:
    return group.sealer.seal(OPUS_SILENCE, sequence=ssrc & 0xFFFF, timestamp=ssrc, ssrc=ssrc, nonce=ssrc)


def test_a_speaking_20_packets_late_still_gets_the_member_from_the_first_packet() -> None:
    group, clock, out, rx, ws = _rig(dave=True)
    alice = group.add_speaker(111)
    first = alice.sequence
    for k, pcm in enumerate(frames_of(speech_like(1.0, seed=3))[:40]):
        clock.t = k * 0.02
        rx.on_datagram(alice.packet(pcm))
        if k == 19:
            ws.handle(alice.speaking_event())  # after 20 of its packets
    clock.t += 1.0
    rx.poll()
    rx.flush()
    assert [f.sequence for f in out] == [(first + i) & 0xFFFF for i in range(40)]
    assert rx.stats.unknown_ssrc == 0 and rx.parked == 0


def test_twenty_thousand_unknown_ssrcs_stay_within_the_bound_and_a_speaker_is_unharmed() -> None:
    group, clock, out, rx, ws = _rig()
    alice = group.add_speaker(111)
    ws.handle(alice.speaking_event())
    flood = [_stranger(group, 1_000_000 + i) for i in range(FLOOD)]
    alice_packets = [alice.packet_from_opus(OPUS_SILENCE) for _ in range(FLOOD // 100)]

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i, data in enumerate(flood):
        clock.t = i * 1e-5  # the whole flood within 0.2 s: nothing is old enough to expire
        rx.on_datagram(data)
        if i % 100 == 0:
            rx.on_datagram(alice_packets[i // 100])
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert rx.parked == PENDING_TOTAL and rx.parked_ssrcs == PENDING_TOTAL
    assert rx.stats.unknown_ssrc == FLOOD - PENDING_TOTAL  # every packet let go is counted
    # 4096 parked packets are well under a megabyte; a map of 20,000 queues was ~20 MB.
    assert peak - base < 4 * 2**20, (peak - base) / 2**20
    rx.flush()
    assert len([f for f in out if f.user_id == 111]) == len(alice_packets)
    assert rx.parked == 0 and rx.stats.unknown_ssrc == FLOOD


def test_one_ssrc_keeps_its_newest_packets_up_to_its_own_limit() -> None:
    group, clock, out, rx, ws = _rig()
    bob = group.add_speaker(222)
    for k in range(PENDING_LIMIT + 30):
        clock.t = k * 0.005
        rx.on_datagram(bob.packet_from_opus(OPUS_SILENCE))
    assert rx.parked == PENDING_LIMIT and rx.stats.unknown_ssrc == 30
    ws.handle(bob.speaking_event())
    rx.flush()
    assert len(out) == PENDING_LIMIT


def test_packets_too_old_when_claimed_are_not_replayed() -> None:
    group, clock, out, rx, ws = _rig()
    early, late = group.add_speaker(1), group.add_speaker(2)
    clock.t = 0.0
    rx.on_datagram(early.packet_from_opus(OPUS_SILENCE))
    clock.t = 1.9
    rx.on_datagram(late.packet_from_opus(OPUS_SILENCE))
    clock.t = 2.05  # a new arrival expires the oldest SSRC's packet...
    rx.on_datagram(_stranger(group, 99))
    assert rx.parked == 2 and rx.stats.unknown_ssrc == 1
    clock.t = 1.9 + PENDING_MAX_AGE_S + 0.1  # ...and a claim refuses one past its age
    ws.handle(late.speaking_event())
    rx.flush()
    assert [f.user_id for f in out] == [] and rx.stats.unknown_ssrc == 3
