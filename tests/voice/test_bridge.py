"""The discord.py bridge, on discord.py 2.7.1's real voice objects with a fake network edge.

A real ``VoiceClient`` (with its real ``VoiceConnectionState`` and ``SocketReader``
thread) reads from one end of a local datagram socket pair; the test writes
Discord-shaped datagrams into the other end. Voice-websocket messages go through
discord.py's real ``DiscordVoiceWebSocket.received_message``/``received_binary_message``,
so discord.py itself runs the DAVE handshake and keeps the session the bridge reads.
Only aiohttp's websocket is faked (it just records what discord.py sends).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import types
from typing import Any, AsyncIterator

import davey
import discord
import numpy as np
import pytest
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import ConnectionFlowState

from chunkrecorder.voice import discord_bridge
from chunkrecorder.voice.discord_bridge import BridgeError, DiscordVoiceLink, check_voice_client
from chunkrecorder.voice.link import BaseVoiceEventListener, VoiceLink
from harness.wire import WireGroup
from harness.wire.mls import ExternalSender
from tests.support.signals import assemble, correlation, frames_of, speech_like

BOT, CHANNEL, GUILD = 999, 5151, 42


class FakeAiohttpWebSocket:
    """Stands in for aiohttp's websocket: records what discord.py sends."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.binary: list[bytes] = []

    async def send_str(self, data: str) -> None:
        self.text.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.binary.append(data)

    async def close(self, code: int = 1000) -> None:
        return None


class FakeGuild:
    def __init__(self) -> None:
        self.id = GUILD
        self.me = types.SimpleNamespace(voice=None)
        self.voice_changes: list[Any] = []

    async def change_voice_state(self, *, channel: Any, **kwargs: Any) -> None:
        self.voice_changes.append(channel)


class Rig:
    def __init__(self, vc: discord.VoiceClient, ws: DiscordVoiceWebSocket, raw: FakeAiohttpWebSocket,
                 sender: socket.socket, group: WireGroup) -> None:
        self.vc, self.ws, self.raw, self.sender, self.group = vc, ws, raw, sender, group
        self.state = vc._connection

    async def session_description(self, dave_version: int) -> None:
        msg = self.group.session_description()
        msg["d"]["dave_protocol_version"] = dave_version
        await self.ws.received_message(msg)

    async def binary(self, op: int, payload: bytes, seq: int = 1) -> None:
        await self.ws.received_binary_message(struct.pack(">HB", seq, op) + payload)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    client = discord.Client(intents=discord.Intents.none())
    client._connection.loop = asyncio.get_running_loop()
    client._connection.user = types.SimpleNamespace(id=BOT)
    guild = FakeGuild()
    channel = types.SimpleNamespace(id=CHANNEL, guild=guild)
    vc = discord.VoiceClient(client, channel)
    client._connection._add_voice_client(GUILD, vc)  # what channel.connect() does first
    state = vc._connection
    state.timeout = 0.2
    receiving, sending = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiving.setblocking(False)
    state.socket = receiving
    state.ssrc = 4321  # from READY
    state._socket_reader.resume()  # what discord.py's _create_socket does
    raw = FakeAiohttpWebSocket()
    ws = DiscordVoiceWebSocket(raw, asyncio.get_running_loop())
    ws._connection = state
    state.ws = ws
    group = WireGroup(channel_id=CHANNEL, bot_user_id=BOT, seed=11, dave=False)
    r = Rig(vc, ws, raw, sending, group)
    yield r
    state._socket_reader.stop()
    receiving.close()
    sending.close()


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def test_records_dave_encrypted_speech_through_discordpys_own_connection(rig: Rig) -> None:
    # Voice server → bot: the key and "this call is end-to-end encrypted" (discord.py
    # answers with its key package, op 26).
    await rig.session_description(dave_version=1)
    bot_key_package = rig.raw.binary[0][1:]
    assert rig.raw.binary[0][0] == DiscordVoiceWebSocket.MLS_KEY_PACKAGE
    rig.state.state = ConnectionFlowState.connected
    frames: list[Any] = []
    link = DiscordVoiceLink(rig.vc, sink=frames.append, watch=False)
    assert isinstance(link, VoiceLink)

    # A speaker's client already formed the group; the server proposes adding the bot,
    # the speaker commits, the bot is welcomed (op 30) and the transition executes (op 22).
    server = ExternalSender()
    speaker = davey.DaveSession(1, 111, CHANNEL)
    speaker.set_external_sender(server.package())
    proposals = server.proposals_payload(CHANNEL.to_bytes(8, "big"), 0, [bot_key_package])
    commit = speaker.process_proposals(davey.ProposalsOperationType.append, proposals)
    speaker.process_commit(commit.commit)
    await rig.binary(DiscordVoiceWebSocket.MLS_EXTERNAL_SENDER, server.package(), seq=1)
    await rig.binary(DiscordVoiceWebSocket.MLS_WELCOME, struct.pack(">H", 3) + commit.welcome, seq=2)
    await rig.ws.received_message({"op": 22, "d": {"transition_id": 3}})
    assert rig.state.dave_session.ready and rig.state.dave_protocol_version == 1

    wire = rig.group.add_speaker(111)
    wire.dave = speaker  # the speaker's real DAVE session encrypts its frames
    await rig.ws.received_message(wire.speaking_event())  # SPEAKING → the bridge's hook
    assert link.receiver.user_for(wire.ssrc) == 111

    t0 = wire.timestamp
    src = speech_like(1.0, seed=21)
    for pcm in frames_of(src):
        rig.sender.send(wire.packet(pcm))  # into the socket discord.py's reader thread watches
    await wait_for(lambda: link.receiver.stats.received == 50)
    link.receiver.flush()
    stats = link.receiver.stats
    assert stats.delivered == 50 and stats.dropped_corrupt == 0
    assert correlation(src, assemble(frames, first_timestamp=t0, length=len(src))) > 0.95
    await link.disconnect()


async def test_unencrypted_call_and_corrupt_datagrams(rig: Rig) -> None:
    await rig.session_description(dave_version=0)
    rig.state.state = ConnectionFlowState.connected
    link = DiscordVoiceLink(rig.vc, watch=False)
    wire = rig.group.add_speaker(7)
    await rig.ws.received_message(wire.speaking_event())
    good = wire.packet(frames_of(speech_like(0.1, seed=1))[0])
    rig.sender.send(good[:10])
    rig.sender.send(good[:20] + bytes([good[20] ^ 1]) + good[21:])
    rig.sender.send(good)
    await wait_for(lambda: link.receiver.stats.received == 3)
    assert link.receiver.stats.truncated == 1 and link.receiver.stats.bad_mac == 1
    await link.disconnect()


async def test_hook_reaches_new_websockets_and_keeps_an_earlier_hook(rig: Rig) -> None:
    seen: list[int] = []

    async def earlier_hook(ws: Any, msg: dict) -> None:
        seen.append(msg["op"])

    rig.state.hook = earlier_hook
    await rig.session_description(dave_version=0)
    rig.state.state = ConnectionFlowState.connected
    link = DiscordVoiceLink(rig.vc, watch=False)
    # discord.py builds a new websocket on reconnect, passing state.hook to it.
    fresh = DiscordVoiceWebSocket(FakeAiohttpWebSocket(), asyncio.get_running_loop(), hook=rig.state.hook)
    fresh._connection = rig.state
    await fresh.received_message({"op": 5, "d": {"user_id": "55", "ssrc": 777, "speaking": 1}})
    await fresh.received_message({"op": 13, "d": {"user_id": "55"}})
    assert seen == [5, 13]
    assert link.receiver.user_for(777) is None and link.events.members == set()
    await link.disconnect()
    assert rig.state.hook is earlier_hook  # put back as it was


async def test_reconnect_key_reaches_the_receiver(rig: Rig) -> None:
    await rig.session_description(dave_version=0)
    rig.state.state = ConnectionFlowState.connected
    link = DiscordVoiceLink(rig.vc, watch=False)
    rekeyed = WireGroup(channel_id=CHANNEL, bot_user_id=BOT, seed=12, dave=False)
    await rig.ws.received_message(rekeyed.session_description())  # a reconnect's new key
    wire = rekeyed.add_speaker(8)
    await rig.ws.received_message(wire.speaking_event())
    rig.sender.send(wire.packet_from_opus(b"\xf8\xff\xfe"))
    await wait_for(lambda: link.receiver.stats.received == 1)
    link.receiver.flush()
    assert link.receiver.stats.delivered == 1 and link.receiver.stats.bad_mac == 0
    await link.disconnect()


async def test_check_reports_move_resume_and_disconnect(rig: Rig) -> None:
    await rig.session_description(dave_version=0)
    rig.state.state = ConnectionFlowState.connected
    link = DiscordVoiceLink(rig.vc, watch=False, disconnect_grace_s=10.0)
    assert link.check(0.0) is None
    rig.vc.channel = types.SimpleNamespace(id=6262, guild=rig.vc.channel.guild)
    assert link.check(1.0) == "move" and link.channel_id == 6262
    rig.state.state = ConnectionFlowState.disconnected  # discord.py is reconnecting...
    assert link.check(2.0) is None and not link.is_connected()
    rig.state.state = ConnectionFlowState.connected  # ...and made it
    assert link.check(3.0) == "resume"
    rig.state.state = ConnectionFlowState.disconnected
    assert link.check(4.0) is None
    assert link.check(13.9) is None
    assert link.check(14.0) == "disconnect"
    await link.disconnect()


async def test_a_client_discordpy_has_let_go_of_is_a_disconnect_at_once(rig: Rig) -> None:
    await rig.session_description(dave_version=0)
    rig.state.state = ConnectionFlowState.connected
    link = DiscordVoiceLink(rig.vc, watch=False, disconnect_grace_s=60.0)
    rig.state.state = ConnectionFlowState.disconnected
    assert link.check(0.0) is None  # down, maybe reconnecting
    rig.vc.client._connection._remove_voice_client(GUILD)  # kicked: discord.py cleaned up
    assert link.check(0.5) == "disconnect"
    await link.disconnect()


async def test_watcher_tells_the_listener_and_stops_receiving(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord_bridge, "WATCH_INTERVAL_S", 0.01)
    await rig.session_description(dave_version=0)
    rig.state.state = ConnectionFlowState.connected
    events: list[tuple[str, Any]] = []

    class Listener(BaseVoiceEventListener):
        def on_move(self, channel_id: int) -> None:
            events.append(("move", channel_id))

        async def on_disconnect(self, reason: str) -> None:
            events.append(("disconnect", reason))

    link = DiscordVoiceLink(rig.vc, disconnect_grace_s=0.05)
    link.set_listener(Listener())
    rig.vc.channel = types.SimpleNamespace(id=7373, guild=rig.vc.channel.guild)
    await wait_for(lambda: events == [("move", 7373)])
    rig.state.state = ConnectionFlowState.disconnected
    await wait_for(lambda: len(events) == 2)
    assert events[1][0] == "disconnect" and not link.is_connected()
    assert link.receiver.on_datagram not in rig.state._socket_reader._callbacks
    await link.disconnect()  # idempotent


async def test_disconnect_leaves_the_channel_and_unhooks(rig: Rig) -> None:
    await rig.session_description(dave_version=0)
    rig.state.state = ConnectionFlowState.connected
    link = DiscordVoiceLink(rig.vc, watch=False)
    assert link.receiver.on_datagram in rig.state._socket_reader._callbacks
    await link.disconnect()
    assert link.receiver.on_datagram not in rig.state._socket_reader._callbacks
    assert rig.vc.channel.guild.voice_changes == [None]  # discord.py asked to leave voice
    assert not link.is_connected()


def test_an_unexpected_voice_client_is_refused_with_one_sentence() -> None:
    with pytest.raises(BridgeError) as info:
        check_voice_client(types.SimpleNamespace(_connection=object()))
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
            return OtherClient()

    with pytest.raises(BridgeError):
        await discord_bridge.connect(Channel())
    assert left == [True]
