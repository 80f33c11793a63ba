"""The offline fake network plays the link contract's reconnects, kicks and give-ups.

The cog's own tests run on :class:`harness.network.FakeVoiceNetwork` (simulated clock);
its link must behave as the discord.py link does (``test_real_client.py``), so a cog
test of "a reconnect continues the meeting" means the same thing on both.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chunkrecorder.objects import VoiceFrame
from chunkrecorder.voice.link import BaseVoiceEventListener, DisconnectReason, VoiceLink, VoiceStateVerdict
from chunkrecorder.voice.receiver import VoiceReceiver
from harness import sources
from harness.impairments import Fate
from harness.network import FakeVoiceNetwork


class Heard(BaseVoiceEventListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_reconnecting(self, cause: str) -> None:
        self.events.append(("reconnecting", cause))

    def on_resume(self, outage_s: float) -> None:
        self.events.append(("resume", outage_s))

    def on_disconnect(self, reason: DisconnectReason) -> None:
        self.events.append(("disconnect", reason))


async def _connected() -> tuple[FakeVoiceNetwork, Any, Heard, list[VoiceFrame]]:
    net = FakeVoiceNetwork(dave=False, seed=3)
    net.add_speaker(11, sources.synthetic_speaker(0, 5.0, talk_spurts=False))
    link = await net.connector(net.channel)
    heard, frames = Heard(), []
    link.receiver.set_sink(frames.append)
    link.set_listener(heard)
    return net, link, heard, frames


async def test_a_reconnect_keeps_the_link_loses_the_outage_and_reports_both_ends() -> None:
    net, link, heard, frames = await _connected()
    assert isinstance(link, VoiceLink) and type(link.receiver) is VoiceReceiver
    gateway: list[Optional[int]] = []
    await net.run(1.0)
    await net.reconnect_bot(0.5, gateway=gateway.append)
    assert link.is_reconnecting() and not link.is_connected()
    assert link.classify_voice_state(None) is VoiceStateVerdict.RECONNECT
    await net.run(1.5)
    await net.drain()
    assert heard.events == [("reconnecting", "the voice websocket closed (4006)"), ("resume", 0.5)]
    assert gateway == [None, net.channel.id] and link.reconnects == 1 and link.is_connected()
    fates = net.fates(11)
    outage = (fates[50:75] == Fate.NOT_SENT).all() and (fates[:50] == Fate.DELIVERED).all()
    assert outage and (fates[76:] == Fate.DELIVERED).all(), fates
    arrivals = np.array([f.arrival for f in frames])
    assert not ((arrivals > 1.03) & (arrivals < 1.5)).any() and (arrivals > 1.55).sum() > 40


async def test_a_kick_and_a_give_up_are_reported_as_such() -> None:
    net, link, heard, _ = await _connected()
    await net.run(0.2)
    await net.kick_bot()
    assert heard.events == [("disconnect", DisconnectReason.KICKED)]
    assert link.classify_voice_state(None) is VoiceStateVerdict.KICKED and not link.is_connected()

    net2, link2, heard2, _ = await _connected()
    await net2.run(0.2)
    await net2.disconnect_bot()
    assert heard2.events == [("disconnect", DisconnectReason.GAVE_UP)]
    assert link2.classify_voice_state(None) is VoiceStateVerdict.LEFT
    assert link2.classify_voice_state(net2.channel.id + 1) is VoiceStateVerdict.MOVED
