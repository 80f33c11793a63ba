"""One voice websocket connection of the bot, served as Discord's voice gateway v8 does.

The handshake discord.py 2.7.1 drives (``voice_state.py``, ``gateway.py``)::

    server: HELLO (op 8, heartbeat interval)
    client: IDENTIFY (op 0: server_id, user_id, session_id, token, max_dave_protocol_version)
    server: READY (op 2: ssrc, ip, port, modes)          then, as Discord does before the
            CLIENTS_CONNECT (op 11), SPEAKING (op 5)      key: who is here, whose SSRC is whose
    client: UDP IP discovery (74 bytes each way), then SELECT_PROTOCOL (op 1: address, port, mode)
    server: SESSION_DESCRIPTION (op 4: mode, secret_key, dave_protocol_version), op 25 if DAVE
    client: SPEAKING (op 5, "not speaking": tells the server its SSRC; media starts flowing)
    client: op 26 key package → the DAVE join (:mod:`.mls_group`)

Heartbeats (op 3 ``{t, seq_ack}``) are answered with op 6 and their ``seq_ack`` recorded:
every server message but HELLO and HEARTBEAT_ACK carries ``seq`` (binary ones as their
first two bytes), and a RESUME (op 7) replays what came after the client's ``seq_ack``.
Tests make the session misbehave on purpose: close with a code, drop the TCP connection
without a close frame (the client sees 1006), stall (say nothing, acknowledge nothing),
or fail the handshake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import WSMsgType, web

from .protocol import MODE, MODES, Op, binary_frame, parse_binary

if TYPE_CHECKING:
    from .call import FakeCall
    from .server import Endpoint, FakeDiscordVoiceServer

__all__ = ["BotSession"]

log = logging.getLogger("harness.discord_voice.session")

#: Close code for a bad token or an IDENTIFY that does not match (Discord: authentication failed).
CLOSE_AUTH_FAILED = 4004
CLOSE_UNKNOWN_MODE = 4016


class BotSession:
    """The server's end of one voice websocket."""

    def __init__(self, server: "FakeDiscordVoiceServer", endpoint: "Endpoint", ws: web.WebSocketResponse,
                 request: web.Request) -> None:
        self.server = server
        self.endpoint = endpoint
        self.ws = ws
        self._request = request
        self.call: Optional["FakeCall"] = None
        self.user_id: Optional[int] = None
        self.ssrc = 0
        self.secret_key: Optional[bytes] = None
        self.addr: Optional[tuple[str, int]] = None
        #: The client told us its SSRC (op 5): media may flow to ``addr``.
        self.media_ready = False
        self.stalled = False
        self.closed = False
        self.close_code: Optional[int] = None
        self.opened_at = time.monotonic()
        self.ready_at: Optional[float] = None
        self.seq = 0
        self.seq_acks: list[int] = []
        self.ops_received: list[int] = []
        self.ops_sent: list[int] = []  # every message sent, in order (HELLO and ACKs too)
        self.resumed = False
        self._sent: deque[tuple[int, str, Any]] = deque(maxlen=1024)
        self._send_lock = asyncio.Lock()
        self._ready_waiters: dict[int, asyncio.Future[None]] = {}
        self._closing = asyncio.Event()
        self._closing.set()

    # ------------------------------------------------------------------ sending
    async def send_json(self, op: int, data: dict[str, Any], *, numbered: bool = True) -> None:
        async with self._send_lock:
            if self.stalled or self.closed or self.ws.closed:
                return
            msg: dict[str, Any] = {"op": op, "d": data}
            self.ops_sent.append(op)
            if numbered:
                self.seq += 1
                msg["seq"] = self.seq
                self._sent.append((self.seq, "json", msg))
            try:
                await self.ws.send_str(json.dumps(msg))
            except (ConnectionError, RuntimeError):
                log.debug("send to a closing voice websocket failed", exc_info=True)

    async def send_binary(self, op: int, payload: bytes) -> None:
        async with self._send_lock:
            if self.stalled or self.closed or self.ws.closed:
                return
            self.seq += 1
            self.ops_sent.append(op)
            frame = binary_frame(self.seq, op, payload)
            self._sent.append((self.seq, "binary", frame))
            try:
                await self.ws.send_bytes(frame)
            except (ConnectionError, RuntimeError):
                log.debug("send to a closing voice websocket failed", exc_info=True)

    def send_soon(self, op: int, data: dict[str, Any]) -> None:
        """From another thread (the media thread): queue a JSON message, in order."""
        asyncio.run_coroutine_threadsafe(self.send_json(op, data), self.server.loop)

    def expect_ready(self, transition_id: int) -> "asyncio.Future[None]":
        fut: asyncio.Future[None] = self.server.loop.create_future()
        self._ready_waiters[transition_id] = fut
        return fut

    # ------------------------------------------------------------------ misbehaving on purpose
    async def close(self, code: int) -> None:
        """Close with ``code``. aiohttp breaks the reading loop first; :meth:`run` then waits
        for this to finish, or aiohttp would close the socket itself with 1000."""
        self.close_code = code
        self._closing.clear()
        try:
            await self.ws.close(code=code)
        finally:
            self._closing.set()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame: the client sees 1006."""
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    def stall(self) -> None:
        """Go silent: no messages, no heartbeat ACKs, no media (a dead network path)."""
        self.stalled = True

    # ------------------------------------------------------------------ receiving
    async def run(self) -> None:
        try:
            await self.send_json(Op.HELLO, {"heartbeat_interval": self.server.heartbeat_interval_ms, "v": 8},
                                 numbered=False)
            while True:
                msg = await self.ws.receive()
                if msg.type is WSMsgType.TEXT:
                    await self._on_json(json.loads(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    await self._on_binary(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    await self._closing.wait()  # our own close() in progress: let it send its code
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            if self.close_code is None:
                self.close_code = self.ws.close_code
            for fut in self._ready_waiters.values():
                if not fut.done():
                    fut.cancel()
            await self.server._session_ended(self)

    async def _on_json(self, msg: dict[str, Any]) -> None:
        op = int(msg["op"])
        data = msg.get("d") or {}
        self.ops_received.append(op)
        if op == Op.HEARTBEAT:
            self.seq_acks.append(int(data.get("seq_ack", -1)))
            await self.send_json(Op.HEARTBEAT_ACK, {"t": data.get("t")}, numbered=False)
        elif op == Op.IDENTIFY:
            await self._identify(data)
        elif op == Op.SELECT_PROTOCOL:
            await self._select_protocol(data)
        elif op == Op.SPEAKING:
            if self.secret_key is not None:
                self.media_ready = True
        elif op == Op.RESUME:
            await self._resume(data)
        elif op == Op.DAVE_TRANSITION_READY:
            fut = self._ready_waiters.pop(int(data["transition_id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif op == Op.MLS_INVALID_COMMIT_WELCOME:
            log.warning("The bot reported an invalid commit/welcome for transition %s", data.get("transition_id"))

    async def _on_binary(self, data: bytes) -> None:
        op, payload = parse_binary(data)
        self.ops_received.append(op)
        if op == Op.MLS_KEY_PACKAGE and self.call is not None and self.user_id is not None:
            call, user_id = self.call, self.user_id
            self.server.spawn(call.dave.bot_joins(user_id, payload, self))
        # op 28 (the bot's own commit for proposals we sent): a real server picks one
        # member's commit; ours is always a local member's, so the bot's is dropped.

    async def _identify(self, data: dict[str, Any]) -> None:
        found = self.server._claim_token(str(data.get("token")), self.endpoint)
        if found is None or str(data.get("user_id")) != str(found[1]) or str(data.get("server_id")) != str(found[0].guild_id):
            await self.close(CLOSE_AUTH_FAILED)
            return
        call, user_id = found
        if await self.server._handshake_failure(self, "identify"):
            return
        self.call, self.user_id = call, user_id
        self.ssrc = self.server._new_ssrc()
        await call.attach(self)
        await self.send_json(Op.READY, {
            "ssrc": self.ssrc, "ip": self.endpoint.udp.host, "port": self.endpoint.udp.port,
            "modes": list(MODES), "experiments": [],
        })
        await call.greet(self)

    async def _select_protocol(self, data: dict[str, Any]) -> None:
        udp = data.get("data") or {}
        if udp.get("mode") != MODE:
            await self.close(CLOSE_UNKNOWN_MODE)
            return
        if await self.server._handshake_failure(self, "select_protocol"):
            return
        call = self.call
        if call is None:
            return
        self.addr = (str(udp["address"]), int(udp["port"]))
        self.secret_key = secrets.token_bytes(32)
        call.use_key(self.secret_key)
        await self.send_json(Op.SESSION_DESCRIPTION, {
            "audio_codec": "opus", "video_codec": "H264", "media_session_id": secrets.token_hex(16),
            "mode": MODE, "secret_key": list(self.secret_key),
            "dave_protocol_version": call.dave.protocol_version,
        })
        if call.dave.enabled:
            await self.send_binary(Op.MLS_EXTERNAL_SENDER, call.dave.package)
        self.ready_at = time.monotonic()

    async def _resume(self, data: dict[str, Any]) -> None:
        previous = self.server._resumable(str(data.get("token")), str(data.get("session_id")))
        if previous is None:
            await self.close(4006)  # session no longer valid
            return
        self.call, self.user_id, self.ssrc = previous.call, previous.user_id, previous.ssrc
        self.addr, self.secret_key = previous.addr, previous.secret_key
        self.seq = previous.seq
        self.resumed = True
        if self.call is not None:
            await self.call.attach(self, resumed=True)
        await self.send_json(Op.RESUMED, {})
        ack = int(data.get("seq_ack", -1))
        for seq, kind, payload in list(previous._sent):
            if seq > ack:
                if kind == "json":
                    await self.ws.send_str(json.dumps(payload))
                else:
                    await self.ws.send_bytes(payload)
        self.media_ready = True
