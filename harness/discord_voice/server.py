"""A fake Discord voice server on localhost that discord.py's real ``VoiceClient`` connects to.

Everything on the bot's side is real: ``channel.connect()`` builds discord.py 2.7.1's
``VoiceClient`` and ``VoiceConnectionState``, which asks the main gateway for voice
(answered by :mod:`.gateway`, the one stand-in on that side), opens the voice websocket
(:mod:`.session`, gateway v8 with DAVE), discovers its address over UDP (:mod:`.udp`) and
receives the members' media: RTP with the one-byte extension header, sealed with
``aead_xchacha20_poly1305_rtpsize`` and the 4-byte nonce counter, DAVE-encrypted by real
``davey`` sessions, RTCP mixed in (:mod:`.members`, :mod:`.mls_group`).

A test writes the meeting and the trouble::

    server = FakeDiscordVoiceServer()
    await server.start()
    call = server.add_call(GUILD, CHANNEL, dave=True)
    call.add_speaker(111, sources.synthetic_speaker(0, 20))
    server.attach(client)                 # client: a discord.Client with that guild cached
    await server.start_media()            # members start talking, at wall-clock pace
    vc = await client.get_channel(CHANNEL).connect(cls=...)
    await server.close_ws(4006)           # or abort_ws() (1006), stall_ws(), kick_bot(),
                                          # move_bot(other), change_voice_server(), downgrade(),
                                          # upgrade(), fail_next_handshake(code)
    await server.stop()

Several *endpoints* (voice servers: a websocket port and a UDP port each) let a voice
server change (VOICE_SERVER_UPDATE, then close 4014) send the bot somewhere else.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Coroutine, Optional

from aiohttp import web

from harness.network import OpusCache
from harness.sources import FRAME_S

from .call import FakeCall
from .protocol import HEARTBEAT_INTERVAL_MS
from .session import BotSession
from .udp import MediaSocket

__all__ = ["Endpoint", "FakeDiscordVoiceServer"]

log = logging.getLogger("harness.discord_voice.server")


@dataclass
class Endpoint:
    """One voice server: its websocket and its UDP port."""

    index: int
    udp: MediaSocket
    runner: Optional[web.AppRunner] = None
    port: int = 0
    sessions: list[BotSession] = field(default_factory=list)

    @property
    def address(self) -> str:
        """What VOICE_SERVER_UPDATE's ``endpoint`` says (host:port, no scheme)."""
        return f"{self.udp.host}:{self.port}"


@dataclass
class _Ticket:
    call: FakeCall
    user_id: int
    endpoint: Endpoint


class FakeDiscordVoiceServer:
    """Discord's voice servers for a few calls, and the voice half of the main gateway."""

    def __init__(self, *, host: str = "127.0.0.1", endpoints: int = 2, seed: int = 0,
                 opus: Optional[OpusCache] = None, gateway_latency_s: float = 0.01,
                 heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS) -> None:
        self.host = host
        #: HELLO's interval; discord.py heartbeats every min(this, 5 s) and each ACK is a
        #: message, so a shortened read timeout (tests) must be longer than this.
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.seed = seed
        self.opus = opus or OpusCache()
        self.gateway_latency_s = gateway_latency_s
        self.endpoints = [Endpoint(i, MediaSocket(host)) for i in range(endpoints)]
        self.calls: dict[int, FakeCall] = {}  # channel id -> call
        self.gateways: list[Any] = []
        self._tickets: dict[str, _Ticket] = {}
        self._voice: dict[int, tuple[int, int]] = {}  # guild -> (channel, endpoint index)
        self._ended: dict[str, BotSession] = {}  # token -> last ended session (for RESUME)
        self._handshake_failures: list[tuple[str, int]] = []
        self._ssrcs = itertools.count(10_000)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._media: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self.t0: Optional[float] = None
        self.media_lag_max_s = 0.0
        #: Per frame: how late the media thread sent it (a loaded machine stalls the
        #: whole process; tests leave such stretches out of their comparisons).
        self.media_lags: list[float] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() the server first"
        return self._loop

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for ep in self.endpoints:
            app = web.Application()
            app.router.add_get("/", self._handler(ep))
            ep.runner = web.AppRunner(app, handle_signals=False)
            await ep.runner.setup()
            site = web.TCPSite(ep.runner, self.host, 0)
            await site.start()
            sockets = getattr(site._server, "sockets", None)  # port 0: ask which one it got
            assert sockets
            ep.port = int(sockets[0].getsockname()[1])
            ep.udp.start()

    async def start_media(self) -> None:
        """Members start talking: frame k of every call leaves at ``t0 + (k+1) * 20 ms``."""
        for call in self.calls.values():
            if call.dave.enabled:
                present = [m.user_id for m in call.members.values() if m.plan.join_frame == 0]
                await call.dave.add_members(present, None)
        self.t0 = time.monotonic()
        self._media = threading.Thread(target=self._run_media, name="fake-voice-media", daemon=True)
        self._media.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._media is not None:
            await asyncio.to_thread(self._media.join, 5.0)
        for ep in self.endpoints:
            for s in list(ep.sessions):
                if not s.ws.closed:
                    await s.ws.close(code=1001)
            if ep.runner is not None:
                await ep.runner.cleanup()
            ep.udp.close()
        for task in list(self._tasks):
            task.cancel()
        for gw in self.gateways:
            await gw.detach()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the server's loop; failures are logged, not lost."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def spawn_threadsafe(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.loop.call_soon_threadsafe(self.spawn, coro)

    def _done(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fake voice server task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ calls
    def add_call(self, guild_id: int, channel_id: int, *, dave: bool = True,
                 greeting_delay_frames: int = 0) -> FakeCall:
        call = FakeCall(self, guild_id, channel_id, dave=dave, seed=self.seed + len(self.calls),
                        opus=self.opus, greeting_delay_frames=greeting_delay_frames)
        self.calls[channel_id] = call
        return call

    def call_of(self, guild_id: Optional[int] = None) -> FakeCall:
        """The call the bot is in (in ``guild_id``, or the only guild)."""
        if guild_id is None:
            guilds = {c.guild_id for c in self.calls.values()}
            if len(guilds) != 1:
                raise ValueError("say which guild")
            guild_id = guilds.pop()
        where = self._voice.get(guild_id)
        if where is None:
            raise RuntimeError("the bot is not in voice in that guild")
        return self.calls[where[0]]

    def session_of(self, guild_id: Optional[int] = None) -> BotSession:
        session = self.call_of(guild_id).session
        if session is None:
            raise RuntimeError("the bot has no voice websocket open")
        return session

    def attach(self, client: Any) -> Any:
        """Point ``client``'s voice at this server (see :mod:`.gateway`)."""
        from .gateway import FakeMainGateway

        gateway = FakeMainGateway(self, client)
        self.gateways.append(gateway)
        return gateway

    # ------------------------------------------------------------------ the main gateway's voice half
    def voice_state(self, guild_id: int, channel_id: Optional[int], user_id: int) -> Optional[tuple[str, str]]:
        """The bot asked the main gateway to join ``channel_id`` (None: leave). Returns
        (token, endpoint) for VOICE_SERVER_UPDATE, as Discord allocates a voice server."""
        if channel_id is None:
            self._voice.pop(guild_id, None)
            return None
        call = self.calls.get(channel_id)
        if call is None:
            raise ValueError(f"no call for channel {channel_id} on the fake voice server")
        previous = self._voice.get(guild_id)
        ep_index = previous[1] if previous is not None else 0
        self._voice[guild_id] = (channel_id, ep_index)
        return self._ticket(call, user_id, self.endpoints[ep_index])

    def _ticket(self, call: FakeCall, user_id: int, endpoint: Endpoint) -> tuple[str, str]:
        token = secrets.token_hex(8)
        self._tickets[token] = _Ticket(call, user_id, endpoint)
        return token, endpoint.address

    def _claim_token(self, token: str, endpoint: Endpoint) -> Optional[tuple[FakeCall, int]]:
        ticket = self._tickets.get(token)
        if ticket is None or ticket.endpoint is not endpoint:
            return None
        return ticket.call, ticket.user_id

    def _resumable(self, token: str, session_id: str) -> Optional[BotSession]:
        return self._ended.get(token)

    def _new_ssrc(self) -> int:
        return next(self._ssrcs)

    # ------------------------------------------------------------------ websocket plumbing
    def _handler(self, endpoint: Endpoint) -> Any:
        async def handle(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
            await ws.prepare(request)
            session = BotSession(self, endpoint, ws, request)
            endpoint.sessions.append(session)
            await session.run()
            return ws

        return handle

    async def _session_ended(self, session: BotSession) -> None:
        if session.call is not None:
            await session.call.detach(session)

    async def _handshake_failure(self, session: BotSession, stage: str) -> bool:
        for i, (at, code) in enumerate(self._handshake_failures):
            if at == stage:
                del self._handshake_failures[i]
                await session.close(code)
                return True
        return False

    # ------------------------------------------------------------------ trouble, on demand
    def fail_next_handshake(self, code: int = 4006, *, at: str = "select_protocol") -> None:
        """The next voice websocket is closed with ``code`` during its handshake, right
        after the client's IDENTIFY (``at="identify"``) or SELECT_PROTOCOL."""
        if at not in ("identify", "select_protocol"):
            raise ValueError("at is 'identify' or 'select_protocol'")
        self._handshake_failures.append((at, code))

    def delay_next_welcome(self, seconds: float, guild_id: Optional[int] = None) -> None:
        """The bot's next DAVE welcome in this guild's call comes ``seconds`` late: a new
        connection is up but can decrypt nothing until then (a slow voice server)."""
        self.call_of(guild_id).dave.welcome_delay_s = seconds

    async def close_ws(self, code: int = 4006, guild_id: Optional[int] = None) -> None:
        """Close the bot's voice websocket with ``code`` (4006: session no longer valid)."""
        await self.session_of(guild_id).close(code)

    async def abort_ws(self, guild_id: Optional[int] = None) -> None:
        """The TCP connection drops without a close frame (the client sees 1006)."""
        self.session_of(guild_id).abort()

    async def stall_ws(self, guild_id: Optional[int] = None) -> None:
        """The voice server goes silent (no messages, no heartbeat ACKs, no media): the
        client's read times out and it reconnects."""
        self.session_of(guild_id).stall()

    async def kick_bot(self, guild_id: Optional[int] = None, *, ws_close_first: bool = False) -> None:
        """A moderator disconnects the bot: VOICE_STATE_UPDATE with no channel, and the
        voice websocket closed with 4014."""
        call = self.call_of(guild_id)
        session = call.session
        self._voice.pop(call.guild_id, None)
        if ws_close_first and session is not None:
            await session.close(4014)
        for gw in self.gateways:
            gw.dispatch_voice_state(call.guild_id, None)
        if not ws_close_first and session is not None:
            await asyncio.sleep(self.gateway_latency_s * 2)
            await session.close(4014)

    async def move_bot(self, channel_id: int, guild_id: Optional[int] = None) -> None:
        """Someone drags the bot to ``channel_id``: VOICE_STATE_UPDATE with the new channel,
        then VOICE_SERVER_UPDATE for the new call; the old websocket is closed with 4014."""
        call = self.call_of(guild_id)
        target = self.calls[channel_id]
        session = call.session
        user_id = session.user_id if session is not None else None
        ep = self._voice[call.guild_id][1]
        self._voice[call.guild_id] = (channel_id, ep)
        token, address = self._ticket(target, int(user_id or 0), self.endpoints[ep])
        for gw in self.gateways:
            gw.dispatch_voice_state(call.guild_id, channel_id)
            gw.dispatch_voice_server(call.guild_id, token, address)
        if session is not None:
            await asyncio.sleep(self.gateway_latency_s * 3)
            if not session.closed:
                await session.close(4014)

    async def change_voice_server(self, guild_id: Optional[int] = None, *, new_ssrcs: bool = True) -> None:
        """Discord moves the call to another voice server: VOICE_SERVER_UPDATE with the other
        endpoint (a new token, a new key on connect), and the old websocket closed with 4014.
        With ``new_ssrcs`` every member's client reconnects there under a new SSRC."""
        call = self.call_of(guild_id)
        session = call.session
        channel_id, ep = self._voice[call.guild_id]
        ep = (ep + 1) % len(self.endpoints)
        self._voice[call.guild_id] = (channel_id, ep)
        token, address = self._ticket(call, int(session.user_id or 0) if session else 0, self.endpoints[ep])
        if new_ssrcs:
            with call.dave.sessions_lock:
                for m in call.present():
                    m.wire.reconnect()
                    m.ssrcs.append((call.frame, m.wire.ssrc))
                    m.in_spurt = False
        for gw in self.gateways:
            gw.dispatch_voice_server(call.guild_id, token, address)
        if session is not None:
            await asyncio.sleep(self.gateway_latency_s * 3)
            if not session.closed:
                await session.close(4014)

    async def downgrade(self, guild_id: Optional[int] = None) -> None:
        """The call leaves end-to-end encryption (DAVE protocol 0)."""
        call = self.call_of(guild_id)
        await call.dave.downgrade(call.session)

    async def upgrade(self, guild_id: Optional[int] = None) -> None:
        """The call goes back to DAVE (protocol 1); returns once the bot's welcome executed."""
        call = self.call_of(guild_id)
        await call.dave.upgrade([m.user_id for m in call.present()], call.session)
        deadline = time.monotonic() + 5.0
        while call.session is not None and not call.dave.bot_has_epoch and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ media
    def _run_media(self) -> None:
        assert self.t0 is not None
        k = 0
        while not self._stop.is_set():
            due = self.t0 + (k + 1) * FRAME_S
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            lag = time.monotonic() - due
            self.media_lags.append(lag)
            self.media_lag_max_s = max(self.media_lag_max_s, lag)
            for call in list(self.calls.values()):
                try:
                    call.step(k)
                except Exception:
                    log.exception("fake voice server: frame %d of channel %d failed", k, call.channel_id)
            k += 1

    def frame_time(self, k: int) -> float:
        """When frame ``k`` leaves the members' clients (monotonic clock)."""
        assert self.t0 is not None
        return self.t0 + (k + 1) * FRAME_S
