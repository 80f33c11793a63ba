"""The link's reading of what discord.py does with a connection (ConnectionTracker).

The sequences are the ones discord.py 2.7.1 goes through (``voice_state.py``), fed
with plain calls and a fake clock; the real client walks the same paths in
``test_real_client.py``.
"""

from __future__ import annotations

from typing import Any

from chunkrecorder.voice.link import DisconnectReason, VoiceStateVerdict
from chunkrecorder.voice.reconnects import RECENT_S, ConnectionTracker, LinkState

CH, OTHER = 10, 20


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, name: str, *args: Any) -> None:
        self.events.append((name, args))


def connected(channel: int = CH) -> tuple[ConnectionTracker, Heard]:
    heard = Heard()
    tracker = ConnectionTracker(channel, emit=heard)
    tracker.voice_state(channel, expecting_disconnect=False, now=0.0)  # the join
    tracker.up(0.1)
    assert tracker.state is LinkState.CONNECTED and heard.events == []
    return tracker, heard


def test_a_generic_reconnect_is_one_outage_with_its_length_and_cause() -> None:
    t, heard = connected()
    # 4006: the websocket closes (last datagram at 9.98), discord.py waits, leaves
    # (expecting the "no channel" update), rejoins, and is connected again.
    t.down("the voice websocket closed (4006)", 10.0, alive_at=9.98)
    t.down("discord.py is reconnecting", 11.2)  # its disconnect(cleanup=False): same outage
    assert t.voice_state(None, expecting_disconnect=True, now=11.3) is VoiceStateVerdict.RECONNECT
    assert t.voice_state(CH, expecting_disconnect=False, now=11.4) is VoiceStateVerdict.SAME
    assert t.is_reconnecting(11.5)
    t.up(11.6)
    assert heard.events == [("on_reconnecting", ("the voice websocket closed (4006)",)),
                            ("on_resume", (11.6 - 9.98,))]
    assert t.reconnects == 1 and [(o.start, o.end) for o in t.outages] == [(9.98, 11.6)]
    # The cog, asking about those gateway events afterwards, hears the same verdicts.
    assert t.classify(None, 12.0) is VoiceStateVerdict.RECONNECT
    assert t.classify(CH, 12.0) is VoiceStateVerdict.SAME
    assert t.is_reconnecting(11.6 + RECENT_S - 0.1) and not t.is_reconnecting(11.6 + RECENT_S)


def test_a_sign_of_life_after_the_drop_is_not_the_outage_start() -> None:
    t, heard = connected()
    t.down("x", 5.0, alive_at=7.0)  # a clock skew must not make the outage start later
    t.up(6.0)
    assert heard.events[-1] == ("on_resume", (1.0,))


def test_an_unexpected_no_channel_is_a_kick_and_ends_as_kicked() -> None:
    t, heard = connected()
    assert t.voice_state(None, expecting_disconnect=False, now=3.0) is VoiceStateVerdict.KICKED
    t.down("the voice websocket closed (1000)", 3.1)  # discord.py's own disconnect: not a reconnect
    assert t.ended(3.2) is DisconnectReason.KICKED
    assert heard.events == [] and t.state is LinkState.ENDED
    assert t.classify(None, 4.0) is VoiceStateVerdict.KICKED


def test_a_kick_after_the_websocket_closed_first_is_still_a_kick() -> None:
    t, heard = connected()
    t.down("the voice websocket closed (4014)", 3.0)
    assert t.voice_state(None, expecting_disconnect=False, now=3.05) is VoiceStateVerdict.KICKED
    assert t.ended(3.1) is DisconnectReason.KICKED
    assert [name for name, _ in heard.events] == ["on_reconnecting"]


def test_the_end_without_a_kick_is_giving_up_and_the_links_own_leave_is_silent() -> None:
    t, heard = connected()
    t.down("the voice websocket closed (1000)", 3.0)
    assert t.ended(3.1) is DisconnectReason.GAVE_UP
    assert t.ended(3.2) is None  # reported once
    assert t.classify(None, 3.3) is VoiceStateVerdict.LEFT  # a leave the link never saw: over already

    t2, heard2 = connected()
    t2.leaving = True
    t2.down("the voice websocket closed (1000)", 3.0)
    assert t2.voice_state(None, expecting_disconnect=True, now=3.1) is VoiceStateVerdict.LEFT
    assert t2.ended(3.2) is None and heard2.events == []


def test_a_move_is_reported_with_the_new_channel_and_the_reconnect_that_follows() -> None:
    t, heard = connected()
    assert t.voice_state(OTHER, expecting_disconnect=False, now=5.0) is VoiceStateVerdict.MOVED
    assert t.channel_id == OTHER
    t.down("moved to channel 20", 5.05)
    t.up(5.2)
    assert [name for name, _ in heard.events] == ["on_move", "on_reconnecting", "on_resume"]
    assert heard.events[0] == ("on_move", (OTHER,))
    assert t.classify(OTHER, 6.0) is VoiceStateVerdict.MOVED


def test_retries_of_the_first_handshake_are_not_reconnects() -> None:
    heard = Heard()
    t = ConnectionTracker(CH, emit=heard)
    t.down("the voice websocket closed (4006)", 0.5)
    assert t.voice_state(None, expecting_disconnect=True, now=0.6) is VoiceStateVerdict.RECONNECT
    t.up(2.0)
    assert t.state is LinkState.CONNECTED and heard.events == [] and t.reconnects == 0


def test_a_reconnect_overdue_is_counted_from_when_the_drop_was_noticed() -> None:
    t, _ = connected()
    assert not t.overdue(100.0, 45.0)
    # A read timeout notices a dead connection 30 s after its last sign of life.
    t.down("the voice websocket stopped answering", 40.0, alive_at=10.0)
    assert t.down_since == 10.0
    assert not t.overdue(84.9, 45.0) and t.overdue(85.0, 45.0)


def test_verdicts_are_remembered_per_event_not_forever() -> None:
    t, _ = connected()
    t.voice_state(None, expecting_disconnect=True, now=1.0)
    assert t.classify(None, 2.0) is VoiceStateVerdict.RECONNECT
    # Long after, an unexplained "no channel" the link has not seen reads as a kick.
    assert t.classify(None, 1000.0) is VoiceStateVerdict.KICKED

