"""A fake Discord voice channel: members, their clients, the UDP path and the bot's link.

This is the only place the harness stands in for Discord. Everything on the bot's
side of it is real: :meth:`FakeVoiceNetwork.connect` (the ``VoiceConnector`` the cog
takes) returns a :class:`FakeVoiceLink` whose ``receiver`` is the real
``chunkrecorder.voice.receiver.VoiceReceiver``, built by the wire with the group's
transport key and DAVE session; voice-websocket payloads go through the real
``VoiceWsEvents``. A test builds a channel in a few lines::

    net = FakeVoiceNetwork()                      # simulated clock, no impairments
    net.add_speaker(111, sources.tone(440))
    link = await net.connector(net.channel)       # what the cog does
    link.receiver ... / link.set_listener(...)
    await net.run(3.0, on_tick=recorder.tick)     # 3 s of meeting in a blink

Time. On a :class:`SimulatedClock` the network runs a discrete-event simulation:
each 20 ms every present member's client emits its frame, the impaired path gives
each datagram an arrival instant, and datagrams are handed to the receiver in
arrival order with the clock set to that instant, so jitter is exact and
reproducible. With a :class:`WallClock` (``--realtime``) the same loop runs in its
own thread at wall-clock pace, as Discord's socket-reader thread does, and the
event loop stays free for the pipeline.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence, Union

import numpy as np

from .clock import SimulatedClock, WallClock
from .impairments import CorruptKind, Fate, Impairments, NetworkPath
from .scenario import SpeakerPlan
from .sources import FRAME_S, Source

__all__ = [
    "OpusCache",
    "FakeGuild",
    "FakeMember",
    "FakeVoiceChannel",
    "FakeVoiceLink",
    "FakeVoiceNetwork",
    "NetworkStats",
]

log = logging.getLogger("harness.network")

Clock = Union[SimulatedClock, WallClock]
TickCallback = Callable[[float], Union[Awaitable[Any], Any]]
ProgressFn = Callable[[int, int], None]

#: Frames of Opus silence a client sends when its user stops talking.
SILENCE_TAIL = 5


# --------------------------------------------------------------------------- discord-ish objects
@dataclass
class FakeGuild:
    id: int
    name: str = "Harness guild"


@dataclass
class FakeMember:
    """The attributes of ``discord.Member`` the cog reads about a voice participant."""

    id: int
    name: str
    guild: FakeGuild
    bot: bool = False

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


class FakeVoiceChannel:
    """Stands where a ``discord.VoiceChannel`` would: id, name, guild, current members."""

    def __init__(self, network: "FakeVoiceNetwork", *, id: int, name: str, guild: FakeGuild) -> None:
        self._network = network
        self.id = id
        self.name = name
        self.guild = guild

    @property
    def members(self) -> list[FakeMember]:
        return self._network.members_present()

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def __repr__(self) -> str:
        return f"<FakeVoiceChannel id={self.id} name={self.name!r}>"


# --------------------------------------------------------------------------- the link
class FakeVoiceLink:
    """The bot's end of the fake channel; implements ``chunkrecorder.voice.link.VoiceLink``.

    Datagrams reach ``receiver.on_datagram`` only while connected; a disconnect
    (by the cog or by :meth:`FakeVoiceNetwork.disconnect_bot` / ``kick_bot``) is final
    for this link, as for a discord.py ``VoiceClient``: the cog connects again for a new
    one. :meth:`FakeVoiceNetwork.reconnect_bot` plays discord.py's own reconnect: the
    link stays, reports ``on_reconnecting`` and ``on_resume(outage_s)``, and hears
    nothing in between.
    """

    def __init__(self, network: "FakeVoiceNetwork", channel_id: int, receiver: Any, ws: Any) -> None:
        self._network = network
        self.channel_id = channel_id
        self.receiver = receiver
        self._ws = ws
        self._connected = True
        self._listener: Any = None
        self.disconnect_reason: Optional[Any] = None
        self.reconnects = 0
        self._back_at: Optional[float] = None  # network time a reconnect in progress ends
        self._outage_s = 0.0
        self._kicked = False
        self._left = False
        self._moved_to: Optional[int] = None  # the channel of the last move (its verdict is MOVED)
        self._gateway: Optional[Callable[[Optional[int]], Any]] = None
        self._quiet_since: Optional[float] = None  # network time the server stopped reaching it

    def is_connected(self) -> bool:
        return self._connected and self._back_at is None

    def is_reconnecting(self) -> bool:
        return self._connected and self._back_at is not None

    def quiet_for(self) -> float:
        if self._quiet_since is None:
            return 0.0  # reconnect_bot's drops are reported the moment they happen
        return max(0.0, self._network.now - self._quiet_since)

    async def until_hearing(self, timeout: float) -> bool:
        if not self._connected:
            raise ConnectionError("the fake voice link ended")
        return True  # the fake channel has no DAVE group to join

    def classify_voice_state(self, channel_id: Optional[int]) -> Any:
        from chunkrecorder.voice.link import VoiceStateVerdict

        if channel_id is None:
            if self._back_at is not None:
                return VoiceStateVerdict.RECONNECT
            if self._left or (not self._connected and not self._kicked):
                return VoiceStateVerdict.LEFT
            return VoiceStateVerdict.KICKED
        if int(channel_id) == self._moved_to:
            return VoiceStateVerdict.MOVED
        return VoiceStateVerdict.SAME if int(channel_id) == self.channel_id else VoiceStateVerdict.MOVED

    def set_listener(self, listener: Any) -> None:
        self._listener = listener
        if hasattr(self._ws, "listener"):
            self._ws.listener = listener

    async def disconnect(self) -> None:
        slow = self._network._slow_leave
        if slow is not None and self._connected:
            # Discord (discord.py mid-reconnect) lets the bot go only after a while;
            # members keep talking and the bot keeps hearing them meanwhile.
            self._network._slow_leave = None
            seconds, on_tick = slow
            await self._network.run(seconds, on_tick=on_tick)
        if self._connected:
            self._connected = False
            self._left = True
            self.disconnect_reason = "disconnected by the bot"
            self._network._link_closed(self)
            await asyncio.to_thread(self._flush_receiver)

    # -- called by the network
    def _flush_receiver(self) -> None:
        flush = getattr(self.receiver, "flush", None)
        if flush is not None:
            flush()

    def _hears(self) -> bool:
        return self.is_connected() and self._quiet_since is None

    def _datagram(self, data: bytes) -> None:
        if self._hears():
            self.receiver.on_datagram(data)

    def _ws_message(self, msg: dict[str, Any]) -> None:
        if self._hears():
            self._ws.handle(msg)

    async def _dropped(self, reason: Any, *, kicked: bool = False) -> None:
        """Discord dropped us (kick, channel deleted, discord.py gave up)."""
        if not self._connected:
            return
        self._connected = False
        self._kicked = kicked
        self._back_at = None
        self.disconnect_reason = reason
        await asyncio.to_thread(self._flush_receiver)
        await _notify(self._listener, "on_disconnect", reason)


async def _notify(listener: Any, name: str, *args: Any) -> None:
    fn = getattr(listener, name, None) if listener is not None else None
    if fn is None:
        return
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


# --------------------------------------------------------------------------- a member's client
class OpusCache:
    """Opus packets of each distinct source, encoded once and shared by every client.

    For benchmarks: a hundred clients encoding Opus would cost the machine a core that
    Discord's users' computers pay in reality, and the number measured would be the
    harness's, not the bot's. Each source is encoded as one continuous stream (Opus
    predicts from the previous frames, so replaying a short loop of packets drives a
    decoder off the rails within a few loops) and grown on demand;
    :meth:`prepare` encodes ahead so a timed window does not pay for it.
    """

    def __init__(self, *, bitrate: int = 64_000, complexity: int = 5) -> None:
        self.bitrate = bitrate
        self.complexity = complexity
        self._streams: dict[int, tuple[Any, list[bytes], Source]] = {}
        self._lock = threading.Lock()

    def _stream(self, source: Source) -> tuple[Any, list[bytes], Source]:
        key = id(source.audio)
        entry = self._streams.get(key)
        if entry is None:
            from chunkrecorder.audio.opus import OpusEncoder

            enc = OpusEncoder(bitrate=self.bitrate, complexity=self.complexity, application="audio")
            entry = self._streams[key] = (enc, [], source)
        return entry

    def prepare(self, source: Source, frames: int) -> None:
        with self._lock:
            enc, packets, src = self._stream(source)
            while len(packets) < frames:
                packets.append(enc.encode(src.frame(len(packets)).tobytes()))

    def packet(self, source: Source, frame: int) -> bytes:
        with self._lock:
            enc, packets, src = self._stream(source)
            while len(packets) <= frame:
                packets.append(enc.encode(src.frame(len(packets)).tobytes()))
            return packets[frame]

    def frames(self, source: Source) -> int:
        with self._lock:
            return len(self._stream(source)[1])


class _Client:
    """One member's voice client: decides, frame by frame, what it sends."""

    def __init__(self, plan: SpeakerPlan, wire: Any, cache: Optional[OpusCache] = None) -> None:
        self.plan = plan
        self.wire = wire
        self._opus = cache
        self.fates = bytearray()
        self.ssrcs: list[tuple[int, int]] = [(plan.join_frame, self._ssrc())]
        self.in_spurt = False
        self.silence: list[bytes] = []
        self.joined = False
        self.left = False
        self.away = False  # inside a reconnect gap
        self._reconnect_frames = sorted({round(r / FRAME_S) for r in plan.reconnects})
        self._gap = round(plan.reconnect_gap_s / FRAME_S)

    def _ssrc(self) -> int:
        return int(getattr(self.wire, "ssrc"))

    @property
    def source(self) -> Source:
        return self.plan.source

    def log(self, frame: int, fate: Fate) -> None:
        if len(self.fates) < frame:
            self.fates.extend(b"\x00" * (frame - len(self.fates)))
        if len(self.fates) == frame:
            self.fates.append(fate)
        else:
            self.fates[frame] = fate

    def step(self, k: int) -> tuple[list[dict[str, Any]], list[bytes]]:
        """Frame ``k``: voice-websocket messages the server relays, then datagrams sent."""
        plan = self.plan
        ws: list[dict[str, Any]] = []
        out: list[bytes] = []
        if not self.joined:
            if k < plan.join_frame:
                return ws, out
            self.joined = True
            ws.append(_clients_connect(plan.user_id))
        if self.left:
            return ws, out
        if plan.leave_frame is not None and k >= plan.leave_frame:
            self.left = True
            self.in_spurt = False
            self.silence = []
            ws.append(_client_disconnect(plan.user_id))
            return ws, out
        for r in self._reconnect_frames:
            if k == r:
                # The client drops: the server tells everyone, nothing is sent for the gap.
                self.away = True
                self.in_spurt = False
                self.silence = []
                ws.append(_client_disconnect(plan.user_id))
            if k == r + self._gap:
                self.away = False
                self.wire.reconnect()
                self.ssrcs.append((k, self._ssrc()))
                ws.append(_clients_connect(plan.user_id))
        if self.away:
            return ws, out
        if self.source.talking(k):
            if not self.in_spurt:
                self.in_spurt = True
                self.silence = []
                ws.append(self.wire.speaking_event())
            if self._opus is not None:
                out.append(self.wire.packet_from_opus(self._opus.packet(self.source, k)))
            else:
                out.append(self.wire.packet(self.source.frame(k).tobytes()))
            return ws, out
        if self.in_spurt:
            self.in_spurt = False
            if not any(self.source.talking(j) for j in range(k, k + SILENCE_TAIL)):
                self.silence = list(self.wire.silence_packets())
        if self.silence:
            out.append(self.silence.pop(0))
        else:
            self.wire.pause(frames=1)
        return ws, out

    def present(self) -> bool:
        return self.joined and not self.left and not self.away


def _clients_connect(user_id: int) -> dict[str, Any]:
    return {"op": 11, "d": {"user_ids": [str(user_id)]}}


def _client_disconnect(user_id: int) -> dict[str, Any]:
    return {"op": 13, "d": {"user_id": str(user_id)}}


# --------------------------------------------------------------------------- stats
@dataclass
class NetworkStats:
    """What the harness did to the stream; the receiver's own stats say what it saw."""

    frames: int = 0
    sent: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    corrupted: int = 0
    undelivered: int = 0  # sent while the bot was not connected
    max_lag_s: float = 0.0  # realtime only: how far the sender fell behind wall time
    late_frames: int = 0  # realtime only: frames sent more than 20 ms after their time
    lags: list[float] = field(default_factory=list)  # realtime only: each frame's send lag (s)
    send_cpu_s: float = 0.0  # realtime only: the fake clients' CPU (encode, DAVE, seal)
    receive_cpu_s: float = 0.0  # realtime only: on_datagram's CPU on the reader thread

    def record_lag(self, lag: float) -> None:
        """One frame sent ``lag`` seconds after its time (realtime runs)."""
        self.lags.append(lag)
        if lag > self.max_lag_s:
            self.max_lag_s = lag
        if lag > FRAME_S:
            self.late_frames += 1


# --------------------------------------------------------------------------- the network
class FakeVoiceNetwork:
    """One fake voice channel with its members, their clients and the path to the bot."""

    def __init__(
        self,
        *,
        clock: Optional[Clock] = None,
        impairments: Optional[Impairments] = None,
        seed: int = 0,
        dave: bool = True,
        guild_id: int = 4242,
        channel_id: int = 5151,
        bot_user_id: int = 9999,
        channel_name: str = "Harness voice",
        opus_cache: Optional[OpusCache] = None,
        opus_complexity: int = 5,
    ) -> None:
        from .wire import WireGroup  # the wire is its own module; import where used

        self.clock: Clock = clock if clock is not None else SimulatedClock()
        self.realtime = isinstance(self.clock, WallClock)
        self.impairments = impairments or Impairments(seed=seed)
        self.seed = seed
        self.guild = FakeGuild(guild_id)
        self.channel = FakeVoiceChannel(self, id=channel_id, name=channel_name, guild=self.guild)
        self.bot_user_id = bot_user_id
        self.group = WireGroup(channel_id=channel_id, bot_user_id=bot_user_id, seed=seed, dave=dave,
                               complexity=opus_complexity)
        self.opus_cache = opus_cache
        self.path = NetworkPath(self.impairments, corrupt=self._corrupt)
        self.stats = NetworkStats()
        self.link: Optional[FakeVoiceLink] = None
        self.links: list[FakeVoiceLink] = []
        self._clients: dict[int, _Client] = {}
        self._members: dict[int, FakeMember] = {}
        self._t0 = self.clock()
        self._frame = 0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._order = itertools.count()
        self._connect_errors: list[BaseException] = []
        self._lock = threading.RLock()
        self._slow_leave: Optional[tuple[float, Optional[TickCallback]]] = None

    # ------------------------------------------------------------------ set-up
    def add_speaker(self, user_id: int, source: Source, **plan: Any) -> SpeakerPlan:
        """Add a member who talks ``source``; keyword arguments are :class:`SpeakerPlan`'s."""
        return self.add(SpeakerPlan(user_id=user_id, source=source, **plan))

    def add(self, plan: SpeakerPlan) -> SpeakerPlan:
        return self.add_many([plan])[0]

    def add_many(self, plans: Sequence[SpeakerPlan]) -> list[SpeakerPlan]:
        """Add several members at once: one DAVE commit for all (a hundred epochs would
        cost seconds of MLS work before the meeting even starts)."""
        seen: set[int] = set()
        for plan in plans:
            if plan.user_id in self._clients or plan.user_id == self.bot_user_id or plan.user_id in seen:
                raise ValueError(f"user {plan.user_id} is already in the channel")
            if plan.join_frame < self._frame:
                raise ValueError(f"{plan.name} would join at {plan.join_at} s, which has already passed")
            seen.add(plan.user_id)
        if len(plans) == 1:
            wires = [self.group.add_speaker(user_id=plans[0].user_id)]
        else:
            wires = self.group.add_speakers([p.user_id for p in plans])
        for plan, wire in zip(plans, wires):
            self._clients[plan.user_id] = _Client(plan, wire, self.opus_cache)
            self._members[plan.user_id] = FakeMember(plan.user_id, plan.name or str(plan.user_id),
                                                     self.guild, plan.bot)
        return list(plans)

    @property
    def plans(self) -> list[SpeakerPlan]:
        return [c.plan for c in self._clients.values()]

    def members_present(self) -> list[FakeMember]:
        return [self._members[uid] for uid, c in self._clients.items() if c.plan.present(self._frame)]

    def member(self, user_id: int) -> FakeMember:
        return self._members[user_id]

    def fail_next_connect(self, error: BaseException) -> None:
        """Make the next ``connector`` call raise ``error`` (a timeout, missing permissions)."""
        self._connect_errors.append(error)

    # ------------------------------------------------------------------ the connector
    @property
    def connector(self) -> Callable[[Any], Awaitable[FakeVoiceLink]]:
        """The ``VoiceConnector`` to hand the cog or the harness."""
        return self.connect

    async def connect(self, channel: Any) -> FakeVoiceLink:
        if self._connect_errors:
            raise self._connect_errors.pop(0)
        if self.link is not None and self.link.is_connected():
            raise RuntimeError("Already connected to a voice channel.")
        from chunkrecorder.voice.ws_events import VoiceWsEvents

        channel_id = int(getattr(channel, "id", channel))
        # Frames heard before anyone records are dropped, as on a real link; the
        # recorder attaches its session with ``link.receiver.set_sink(session.feed)``.
        receiver = self.group.make_receiver(sink=_discard, clock=self.clock)
        link = FakeVoiceLink(self, channel_id, receiver, VoiceWsEvents(receiver))
        with self._lock:
            self.link = link
            self.links.append(link)
            if channel_id == self.channel.id:
                # What the voice server tells a client that just joined: who is here
                # and (for those talking) which SSRC is whose.
                for client in self._clients.values():
                    if client.plan.present(self._frame):
                        link._ws_message(_clients_connect(client.plan.user_id))
                        link._ws_message(client.wire.speaking_event())
        return link

    def _link_closed(self, link: FakeVoiceLink) -> None:
        with self._lock:
            if self.link is link:
                self.link = None

    async def disconnect_bot(self, reason: Any = None) -> None:
        """The link dies without a kick (discord.py gave up): ``on_disconnect(reason)``,
        by default ``DisconnectReason.GAVE_UP``; the cog's own reconnect policy applies."""
        from chunkrecorder.voice.link import DisconnectReason

        link = self.link
        if link is None:
            raise RuntimeError("the bot is not connected")
        with self._lock:
            self.link = None
        await link._dropped(DisconnectReason.GAVE_UP if reason is None else reason)

    def go_quiet(self) -> None:
        """The voice server stops reaching the bot without a word (a connection that died
        silently): nothing is delivered from now on, and the link says nothing until
        :meth:`disconnect_bot` (discord.py noticing late, or leaving voice before it
        reports) while ``quiet_for()`` counts the silence, as discord.py's link does."""
        link = self.link
        if link is None or not link.is_connected():
            raise RuntimeError("the bot is not connected")
        link._quiet_since = self.now

    def slow_leave(self, seconds: float, *, on_tick: Optional[TickCallback] = None) -> None:
        """The bot's next leave takes ``seconds`` of meeting: as when discord.py is in the
        middle of its own reconnect and ``VoiceClient.disconnect`` waits for it. The
        channel streams meanwhile (``on_tick`` as for :meth:`run`), and the bot hears it."""
        if seconds <= 0:
            raise ValueError("a slow leave takes some time")
        self._slow_leave = (seconds, on_tick)

    async def kick_bot(self) -> None:
        """A moderator disconnects the bot: ``on_disconnect(DisconnectReason.KICKED)``."""
        from chunkrecorder.voice.link import DisconnectReason

        link = self.link
        if link is None:
            raise RuntimeError("the bot is not connected")
        with self._lock:
            self.link = None
        await link._dropped(DisconnectReason.KICKED, kicked=True)

    async def reconnect_bot(self, outage_s: float, *, cause: str = "the voice websocket closed (4006)",
                            gateway: Optional[Callable[[Optional[int]], Any]] = None) -> None:
        """discord.py reconnects by itself: the link reports ``on_reconnecting(cause)``
        now, receives nothing for ``outage_s`` of network time (what members send then is
        lost to the bot), then reports ``on_resume(outage_s)``, the new session's SPEAKING
        included. ``gateway(channel_id)``, if given, is called as the main gateway would
        report the bot: ``None`` now (it left), its channel when it is back (a cog test
        passes its own VOICE_STATE_UPDATE helper)."""
        link = self.link
        if link is None or not link.is_connected():
            raise RuntimeError("the bot is not connected")
        if outage_s <= 0:
            raise ValueError("an outage lasts some time")
        link._back_at = self.now + outage_s
        link._outage_s = outage_s
        link._gateway = gateway
        await _notify(link._listener, "on_reconnecting", cause)
        if gateway is not None:
            result = gateway(None)
            if inspect.isawaitable(result):
                await result

    async def move_bot(self, channel_id: int, *,
                       gateway: Optional[Callable[[Optional[int]], Any]] = None) -> None:
        """Someone drags the bot to ``channel_id``: as discord.py's link does, this one
        follows (``channel_id`` changes, ``on_move(channel_id)``, and the update is
        ``MOVED`` to ``classify_voice_state``); ``gateway(channel_id)``, if given, reports
        it as the main gateway would. The fake channel's members stay where they were, so
        a link moved elsewhere hears nobody."""
        link = self.link
        if link is None or not link.is_connected():
            raise RuntimeError("the bot is not connected")
        link.channel_id = int(channel_id)
        link._moved_to = int(channel_id)
        await _notify(link._listener, "on_move", int(channel_id))
        if gateway is not None:
            result = gateway(int(channel_id))
            if inspect.isawaitable(result):
                await result

    async def _maybe_resume(self) -> None:
        link = self.link
        if link is None or link._back_at is None or self.now < link._back_at:
            return
        link._back_at = None
        link.reconnects += 1
        if link._gateway is not None:
            result = link._gateway(link.channel_id)
            if inspect.isawaitable(result):
                await result
        with self._lock:
            if link.channel_id == self.channel.id:  # what a new voice session is told
                for client in self._clients.values():
                    if client.plan.present(self._frame):
                        link._ws_message(_clients_connect(client.plan.user_id))
                        link._ws_message(client.wire.speaking_event())
        await _notify(link._listener, "on_resume", link._outage_s)

    async def resume_bot(self) -> None:
        """The voice connection dropped and resumed (op 9 RESUMED); nothing is lost."""
        link = self.link
        if link is None:
            raise RuntimeError("the bot is not connected")
        link._ws_message({"op": 9, "d": {}})
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ wire glue
    def _corrupt(self, data: bytes, kind: CorruptKind, rng: Any) -> bytes:
        return self.group.corrupt(data, kind.value, rng)

    # ------------------------------------------------------------------ running
    def rebase(self) -> None:
        """Make this instant the network's t=0 (the meeting's start), before anything is sent."""
        if self._frame:
            raise RuntimeError("the network has already started streaming")
        self._t0 = self.clock()

    @property
    def now(self) -> float:
        """Seconds on the network's timeline (t=0 when it was built)."""
        return self.clock() - self._t0

    @property
    def frame(self) -> int:
        return self._frame

    def _emit(self, k: int) -> None:
        """Every client's frame ``k``: websocket messages, then datagrams through the path.

        Frame ``k`` holds timeline samples ``[k, k+1) * 960``; a client can send it only
        once those 20 ms are captured, so it leaves at ``(k+1) * 20 ms``. This is the
        instant the receive side assumes (arrival minus one frame is where it was heard).
        """
        t = self._t0 + (k + 1) * FRAME_S
        link = self.link
        connected = link is not None and link._hears() and link.channel_id == self.channel.id
        for client in self._clients.values():
            ws, datagrams = client.step(k)
            for msg in ws:
                heapq.heappush(self._heap, (t, 0, next(self._order), ("ws", msg)))
            if not datagrams:
                if client.joined:
                    client.log(k, Fate.NOT_SENT)
                continue
            fate = Fate.NOT_SENT
            for data in datagrams:
                if not connected:
                    self.stats.undelivered += 1
                    continue
                fate, arrivals = self.path.send(t, data)
                for a in arrivals:
                    heapq.heappush(self._heap, (a.at, 1, next(self._order), ("dgram", a.data)))
            client.log(k, fate)
        self.stats.frames = k + 1

    def _pop_due(self, before: float) -> list[tuple[float, str, Any]]:
        out = []
        while self._heap and self._heap[0][0] < before:
            at, _, _, (kind, payload) = heapq.heappop(self._heap)
            out.append((at, kind, payload))
        return out

    def _deliver(self, kind: str, payload: Any) -> None:
        link = self.link
        if link is None:
            return
        if kind == "dgram":
            link._datagram(payload)
        else:
            link._ws_message(payload)

    def poll_receiver(self) -> None:
        link = self.link
        if link is not None and link.is_connected():
            link.receiver.poll()

    async def run(
        self,
        seconds: float,
        *,
        on_tick: Optional[TickCallback] = None,
        tick_s: float = 0.1,
        progress: Optional[ProgressFn] = None,
    ) -> None:
        """Stream ``seconds`` more of the meeting.

        Every ``tick_s`` (of the network's time) the receiver is polled and
        ``on_tick(clock())`` awaited: that is where the caller advances its meetings
        (``recorder.tick``), as the cog's ticker does.
        """
        if seconds < 0:
            raise ValueError("cannot run for a negative duration")
        frames = round(seconds / FRAME_S)
        if self.realtime:
            await self._run_realtime(frames, on_tick, tick_s, progress)
        else:
            await self._run_simulated(frames, on_tick, tick_s, progress)
        self._sync_stats()

    def _send_time(self, k: int) -> float:
        return self._t0 + (k + 1) * FRAME_S

    async def _run_simulated(self, frames: int, on_tick: Optional[TickCallback], tick_s: float,
                             progress: Optional[ProgressFn]) -> None:
        clock = self.clock
        assert isinstance(clock, SimulatedClock)
        end = self._frame + frames
        tick_frames = max(1, round(tick_s / FRAME_S))
        while self._frame < end:
            k = self._frame
            t = self._send_time(k)
            self._deliver_due(t, inclusive=False)
            clock.set(max(t, clock()))
            self._emit(k)
            self._deliver_due(t, inclusive=True)
            self._frame = k + 1
            if self._frame % tick_frames == 0 or self._frame == end:
                await self._tick(on_tick)
                if progress is not None:
                    progress(frames - (end - self._frame), frames)

    def _deliver_due(self, until: float, *, inclusive: bool) -> None:
        """Simulated time: hand over every arrival before ``until``, each at its instant."""
        clock = self.clock
        assert isinstance(clock, SimulatedClock)
        heap = self._heap
        while heap and (heap[0][0] <= until if inclusive else heap[0][0] < until):
            at, _, _, (kind, payload) = heapq.heappop(heap)
            clock.set(max(at, clock()))
            self._deliver(kind, payload)

    async def _tick(self, on_tick: Optional[TickCallback]) -> None:
        await self._maybe_resume()
        self.poll_receiver()
        if on_tick is not None:
            result = on_tick(self.clock())
            if inspect.isawaitable(result):
                await result
        else:
            await asyncio.sleep(0)

    async def _run_realtime(self, frames: int, on_tick: Optional[TickCallback], tick_s: float,
                            progress: Optional[ProgressFn]) -> None:
        loop = asyncio.get_running_loop()
        end = self._frame + frames
        start_frame = self._frame
        failure: list[BaseException] = []
        stop = threading.Event()

        stats = self.stats

        def deliver(kind: str, payload: Any) -> None:
            if kind == "dgram":
                c0 = time.thread_time()
                self._deliver(kind, payload)
                stats.receive_cpu_s += time.thread_time() - c0
            else:
                # Websocket events belong to the event loop, as in discord.py.
                loop.call_soon_threadsafe(self._deliver, kind, payload)

        def deliver_due(until: float) -> None:
            while True:
                with self._lock:
                    if not self._heap or self._heap[0][0] > until:
                        return
                    _, _, _, (kind, payload) = heapq.heappop(self._heap)
                deliver(kind, payload)

        def sender() -> None:
            clock = self.clock
            try:
                while self._frame < end and not stop.is_set():
                    k = self._frame
                    t = self._send_time(k)
                    # Arrivals due before this frame leaves, each at its own instant.
                    while True:
                        with self._lock:
                            head = self._heap[0][0] if self._heap else None
                        if head is None or head >= t:
                            break
                        _sleep_until(clock, head)
                        deliver_due(head)
                    _sleep_until(clock, t)
                    lag = clock() - t
                    stats.record_lag(lag)
                    c0 = time.thread_time()
                    with self._lock:
                        self._emit(k)
                    stats.send_cpu_s += time.thread_time() - c0
                    deliver_due(clock())
                    self._frame = k + 1
            except BaseException as exc:  # surfaced on the event loop below
                failure.append(exc)

        thread = threading.Thread(target=sender, name="harness-voice-sender", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                await asyncio.sleep(tick_s)
                await self._tick(on_tick)
                if progress is not None:
                    progress(self._frame - start_frame, frames)
        finally:
            stop.set()
            await asyncio.to_thread(thread.join)
        if failure:
            raise failure[0]

    # ------------------------------------------------------------------ pre-rendered runs
    def prerender(self, seconds: float) -> list[tuple[float, str, Any]]:
        """Play the clients' next ``seconds`` ahead of time; returns (offset, kind, payload).

        For benchmarks: the fake clients' work (Opus, DAVE encryption, sealing) is done
        now, so that :meth:`replay` spends the timed window on the bot's side only, as
        on Discord where that work happens on the users' computers. Offsets are from
        the start of the rendered stretch; fates and SSRCs are logged as in :meth:`run`.
        """
        if self.link is None or not self.link.is_connected():
            raise RuntimeError("connect the bot before pre-rendering what it will receive")
        base = self._send_time(self._frame) - FRAME_S
        end = self._frame + round(seconds / FRAME_S)
        while self._frame < end:
            self._emit(self._frame)
            self._frame += 1
        items = sorted(self._heap)
        self._heap = []
        self._sync_stats()
        return [(at - base, kind, payload) for at, _, _, (kind, payload) in items]

    async def replay(
        self,
        schedule: list[tuple[float, str, Any]],
        *,
        on_tick: Optional[TickCallback] = None,
        tick_s: float = 0.1,
        progress: Optional[ProgressFn] = None,
    ) -> None:
        """Deliver a schedule from :meth:`prerender` at wall-clock pace from a reader thread."""
        if not self.realtime:
            raise RuntimeError("replay needs a WallClock network")
        loop = asyncio.get_running_loop()
        clock = self.clock
        stats = self.stats
        start = clock()
        total = len(schedule)
        done = [0]
        failure: list[BaseException] = []

        def reader() -> None:
            try:
                for at, kind, payload in schedule:
                    due = start + at
                    _sleep_until(clock, due)
                    lag = clock() - due
                    if kind == "dgram":
                        stats.record_lag(lag)
                        c0 = time.thread_time()
                        self._deliver(kind, payload)
                        stats.receive_cpu_s += time.thread_time() - c0
                    else:
                        loop.call_soon_threadsafe(self._deliver, kind, payload)
                    done[0] += 1
            except BaseException as exc:  # surfaced on the event loop below
                failure.append(exc)

        thread = threading.Thread(target=reader, name="harness-voice-reader", daemon=True)
        thread.start()
        last = schedule[-1][0] if schedule else 0.0
        try:
            while thread.is_alive():
                await asyncio.sleep(tick_s)
                await self._tick(on_tick)
                if progress is not None:
                    progress(min(round((clock() - start) / FRAME_S), round(last / FRAME_S)),
                             round(last / FRAME_S))
        finally:
            await asyncio.to_thread(thread.join)
        if failure:
            raise failure[0]
        assert done[0] == total

    async def drain(self, *, on_tick: Optional[TickCallback] = None) -> None:
        """Let datagrams still in flight arrive (no new frames are sent), then tick once."""
        if self.realtime:
            while self._heap:
                head = self._heap[0][0]
                await self.clock.sleep_until(head)
                with self._lock:
                    due = self._pop_due(self.clock() + 1e-9)
                for _, kind, payload in due:
                    self._deliver(kind, payload)
        else:
            self._deliver_due(float("inf"), inclusive=True)
        await self._tick(on_tick)

    def _sync_stats(self) -> None:
        s = self.path.stats
        self.stats.sent = s.sent
        self.stats.lost = s.lost
        self.stats.duplicates = s.duplicates
        self.stats.reordered = s.reordered
        self.stats.corrupted = s.corrupt_total

    # ------------------------------------------------------------------ what happened
    def fates(self, user_id: int) -> np.ndarray:
        """Per frame of the network timeline: the :class:`Fate` of that user's frame."""
        c = self._clients[user_id]
        out = np.zeros(self._frame, dtype=np.uint8)
        n = min(len(c.fates), self._frame)
        out[:n] = np.frombuffer(bytes(c.fates[:n]), dtype=np.uint8)
        return out

    def delivered(self, user_id: int) -> np.ndarray:
        """Frames of this user that reached the bot intact."""
        delivered: np.ndarray = self.fates(user_id) == Fate.DELIVERED
        return delivered

    def ssrcs(self, user_id: int) -> list[tuple[int, int]]:
        """(first frame, ssrc) for each connection of this user's client."""
        return list(self._clients[user_id].ssrcs)

    def expected(self, user_id: int, samples: int) -> np.ndarray:
        """What a faithful recording of this user holds: their audio where it arrived intact."""
        c = self._clients[user_id]
        return c.source.expected(samples, sent=self.delivered(user_id))


def _discard(frame: Any) -> None:
    return None


def _sleep_until(clock: Clock, t: float) -> None:
    delay = t - clock()
    if delay > 0:
        time.sleep(delay)
