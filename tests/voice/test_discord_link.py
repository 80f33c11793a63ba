"""The discord.py link's own parts: what it refuses, how it ends, the races it closes.

Short checks against discord.py 2.7.1's real objects (and, where a connection is
needed, :mod:`harness.discord_voice`); the recordings themselves are checked in
``test_real_client.py``.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from typing import Any, AsyncIterator

import pytest
from discord.voice_state import ConnectionFlowState, VoiceConnectionState

from chunkrecorder.voice import discord_bridge
from chunkrecorder.voice.discord_bridge import BridgeError, DiscordVoiceLink, check_discord_voice, connect
from chunkrecorder.voice.discord_client import RecordingVoiceClient, _WakingSocket
from chunkrecorder.voice.link import BaseVoiceEventListener, DisconnectReason, VoiceLink, VoiceStateVerdict
from chunkrecorder.voice.ws_events import EARLY_LIMIT, VoiceWsEvents
from harness import sources
from harness.discord_voice import FakeDiscordVoiceServer, offline_client, voice_read_timeout
from harness.wire import WireGroup

pytestmark = pytest.mark.timeout(30)

GUILD, CHANNEL, BOT = 42, 4200, 9_000_009
SPEAKER = 111


class Heard(BaseVoiceEventListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.ended = asyncio.Event()

    def on_reconnecting(self, cause: str) -> None:
        self.events.append(("reconnecting", cause))

    def on_resume(self, outage_s: float) -> None:
        self.events.append(("resume", outage_s))

    def on_disconnect(self, reason: DisconnectReason) -> None:
        self.events.append(("disconnect", reason))
        self.ended.set()


class World:
    def __init__(self, server: FakeDiscordVoiceServer, client: Any) -> None:
        self.server, self.client = server, client

    @property
    def channel(self) -> Any:
        return self.client.get_channel(CHANNEL)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    server = FakeDiscordVoiceServer(heartbeat_interval_ms=500)
    await server.start()
    call = server.add_call(GUILD, CHANNEL, dave=False)
    call.add_speaker(SPEAKER, sources.synthetic_speaker(0, 10.0, talk_spurts=False))
    client = offline_client(GUILD, voice_channels={CHANNEL: "Standup"}, members={SPEAKER: "a"}, bot_id=BOT)
    server.attach(client)
    await server.start_media()
    try:
        yield World(server, client)
    finally:
        vc = client.get_channel(CHANNEL).guild.voice_client
        if vc is not None:
            await vc.disconnect(force=True)
        await server.stop()


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- refusing
def test_a_discordpy_without_the_hooks_is_refused_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    check_discord_voice()  # 2.7.1 has them
    monkeypatch.delattr(VoiceConnectionState, "_connect_websocket")
    with pytest.raises(BridgeError) as info:
        check_discord_voice()
    message = str(info.value)
    assert "\n" not in message and message.endswith(").") and "discord.py 2.7.1" in message


async def test_connect_refuses_a_client_it_cannot_hook() -> None:
    left: list[bool] = []

    class OtherClient:
        async def disconnect(self, *, force: bool) -> None:
            left.append(force)

    class Channel:
        async def connect(self, **kwargs: Any) -> Any:
            assert kwargs["self_deaf"] is False  # a deafened bot is sent no audio
            assert kwargs["cls"] is RecordingVoiceClient
            return OtherClient()

    with pytest.raises(BridgeError):
        await connect(Channel())
    assert left == [True]


# --------------------------------------------------------------------------- living
async def test_the_link_is_the_cogs_voice_link_and_leaving_reports_nothing(world: World) -> None:
    link = await connect(world.channel)
    assert isinstance(link, VoiceLink) and isinstance(link, DiscordVoiceLink)
    heard = Heard()
    link.set_listener(heard)
    await wait_for(lambda: link.receiver.stats.delivered > 20)
    assert link.is_connected() and link.reconnects == 0 and not link.is_reconnecting()
    reader = link.voice_client._connection._socket_reader
    await link.disconnect()
    await asyncio.sleep(0.2)
    assert heard.events == [] and not link.is_connected()
    assert link.receiver.on_datagram not in reader._callbacks
    assert link.classify_voice_state(None) is VoiceStateVerdict.LEFT
    assert world.server.gateways[0].requests[-1] == (GUILD, None)  # discord.py asked to leave voice
    await link.disconnect()  # idempotent


async def test_a_reconnect_that_never_succeeds_is_given_up_and_stays_given_up(world: World) -> None:
    link = await connect(world.channel)
    link.give_up_after_s = 1.5
    heard = Heard()
    link.set_listener(heard)
    for _ in range(20):  # every reconnect's handshake fails
        world.server.fail_next_handshake(4006, at="identify")
    await world.server.close_ws(4006)
    await asyncio.wait_for(heard.ended.wait(), 15.0)
    assert [name for name, _ in heard.events] == ["reconnecting", "disconnect"]
    assert heard.events[-1] == ("disconnect", DisconnectReason.GAVE_UP)
    # discord.py's reconnect loop was stopped: it does not come back on its own later.
    sessions = sum(len(ep.sessions) for ep in world.server.endpoints)
    await asyncio.sleep(3.0)
    assert sum(len(ep.sessions) for ep in world.server.endpoints) == sessions
    assert world.channel.guild.voice_client is None
    assert world.channel.guild.me.voice is None or world.channel.guild.me.voice.channel is None


async def test_giving_up_is_reported_only_once_the_gateway_shows_the_bot_out_of_voice(world: World) -> None:
    link = await connect(world.channel)
    heard = Heard()
    link.set_listener(heard)
    world.server.gateway_latency_s = 0.3  # the leave's VOICE_STATE_UPDATE is slow to come
    await world.server.close_ws(1000)  # discord.py disconnects for good
    await asyncio.wait_for(heard.ended.wait(), 10.0)
    assert heard.events[-1] == ("disconnect", DisconnectReason.GAVE_UP)
    me = world.channel.guild.me.voice
    assert me is None or me.channel is None  # so connecting again now is safe
    again = await connect(world.channel)  # the cog's own reconnect policy
    await wait_for(lambda: again.receiver.stats.delivered > 10)
    await again.disconnect()


async def test_leaving_after_a_kick_waits_for_discordpys_own_leave(world: World) -> None:
    """The cog stops a kicked meeting from ``on_voice_state_update``, while discord.py is
    already leaving on its own: a second leave would wait for a confirmation only the
    first one gets (discord.py's whole timeout, the meeting's end held up with it)."""
    link = await connect(world.channel)
    heard = Heard()
    link.set_listener(heard)
    left = asyncio.Event()

    @world.client.event
    async def on_voice_state_update(member: Any, before: Any, after: Any) -> None:
        if member.id == BOT and after.channel is None:  # what the cog does on a kick
            assert link.classify_voice_state(None) is VoiceStateVerdict.KICKED
            await link.disconnect()
            left.set()

    await world.server.kick_bot()
    await asyncio.wait_for(left.wait(), 8.0)
    leaves = [r for r in world.server.gateways[0].requests if r[1] is None]
    assert leaves == [(GUILD, None)], world.server.gateways[0].requests  # discord.py's one leave
    assert not link.is_connected() and world.channel.guild.voice_client is None
    assert heard.events == []  # the link was left by its owner: nothing to report


async def test_a_voice_server_change_is_an_outage_from_its_notice() -> None:
    """VOICE_SERVER_UPDATE moves the call: audio from the old server ends there, though its
    websocket may still answer while discord.py closes it; the reported outage (the
    silence in the recording) starts at the notice, not at the old socket's last word."""
    client = offline_client(GUILD, voice_channels={CHANNEL: "Standup"}, members={}, bot_id=BOT)
    vc = RecordingVoiceClient(client, client.get_channel(CHANNEL))
    link = vc.link
    now = [10.0]
    link._clock = lambda: now[0]
    try:
        link.tracker.up(now[0])  # connected
        link.server_changed()
        now[0] = 10.2
        await link.ws_message(None, {"op": 6, "d": {"t": 1}})  # a heartbeat ACK on the old socket
        now[0] = 10.3
        link.flow_state(ConnectionFlowState.connected, ConnectionFlowState.got_voice_server_update)
        now[0] = 11.0
        link.tracker.up(now[0])
        assert [(o.start, o.end, o.cause) for o in link.outages] == [(10.0, 11.0, "the voice server changed")]
    finally:
        vc._connection._socket_reader.stop()


# --------------------------------------------------------------------------- early messages
def test_websocket_messages_before_the_receiver_are_kept_and_replayed_in_order() -> None:
    group = WireGroup(channel_id=1, bot_user_id=2, seed=3, dave=False)
    alice, bob = group.add_speaker(11), group.add_speaker(22)
    events = VoiceWsEvents(None)
    events.handle({"op": 11, "d": {"user_ids": ["11", "22"]}})
    events.handle(alice.speaking_event())
    events.handle(bob.speaking_event())
    events.handle({"op": 13, "d": {"user_id": "22"}})  # bob left before the key came
    events.handle({"op": 8, "d": {"heartbeat_interval": 1}})  # not kept: nothing to replay
    receiver = group.make_receiver(sink=lambda f: None, clock=time.monotonic)
    events.attach(receiver)
    assert receiver.user_for(alice.ssrc) == 11 and receiver.user_for(bob.ssrc) is None
    assert events.members == {11}


def test_early_messages_are_bounded() -> None:
    events = VoiceWsEvents(None)
    for i in range(EARLY_LIMIT + 10):
        events.handle({"op": 5, "d": {"user_id": str(i), "ssrc": i + 1, "speaking": 1}})
    group = WireGroup(channel_id=1, bot_user_id=2, seed=3, dave=False)
    receiver = group.make_receiver(sink=lambda f: None, clock=time.monotonic)
    events.attach(receiver)
    assert receiver.user_for(1) is None and receiver.user_for(EARLY_LIMIT + 10) == EARLY_LIMIT + 9


# --------------------------------------------------------------------------- discord.py's races
def test_closing_the_socket_wakes_a_reader_blocked_on_it() -> None:
    sock = _WakingSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.connect(("127.0.0.1", 9))  # like discord.py's, connected to the voice server
    woke = threading.Event()

    def reader() -> None:
        select.select([sock], [], [], 20.0)  # discord.py's reader waits up to 30 s
        woke.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert not woke.is_set()
    sock.close()
    assert woke.wait(5.0), "the reader slept on the closed socket"


async def test_waiting_for_a_flow_state_does_not_depend_on_catching_its_wake_up() -> None:
    client = offline_client(GUILD, voice_channels={CHANNEL: "Standup"}, members={}, bot_id=BOT)
    vc = RecordingVoiceClient(client, client.get_channel(CHANNEL))
    state = vc._connection
    try:
        never = asyncio.Event()
        state._state_event = never  # as if the set()/clear() happened before the wait began
        waiter = asyncio.create_task(state._wait_for_state(ConnectionFlowState.got_both_voice_updates))
        await asyncio.sleep(0.05)
        state.__dict__["_state"] = ConnectionFlowState.got_both_voice_updates  # changed, unannounced
        await asyncio.wait_for(waiter, 2.0)
        with pytest.raises(asyncio.TimeoutError):
            await state._wait_for_state(ConnectionFlowState.connected, timeout=0.3)
    finally:
        state._socket_reader.stop()


async def test_the_read_timeout_helper_only_shortens_the_wait(world: World) -> None:
    with voice_read_timeout(1.5):  # before connecting: each websocket's reads are wrapped as it is made
        link = await connect(world.channel)
        heard = Heard()
        link.set_listener(heard)
        await world.server.stall_ws()
        await wait_for(lambda: ("resume" in [n for n, _ in heard.events]), 15.0)
    assert heard.events[0] == ("reconnecting", "the voice websocket stopped answering")
    assert discord_bridge.GIVE_UP_AFTER_S > 30  # the link's own limit is well past discord.py's 30 s
    await link.disconnect()
