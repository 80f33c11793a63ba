"""The voice half of Discord's main gateway, and the two patches the real client needs.

A bot joins voice by sending op 4 VOICE_STATE_UPDATE on its main gateway websocket and
waiting for two dispatches, VOICE_STATE_UPDATE (its session id) and VOICE_SERVER_UPDATE
(token and endpoint). There is no local main gateway, so :class:`FakeMainGateway` stands
where discord.py's ``DiscordWebSocket`` would be (``client.ws``) and answers
``voice_state()`` by feeding those dispatches to the client's real ``ConnectionState``
parsers (``parse_voice_state_update`` / ``parse_voice_server_update``), in order and a
few milliseconds later, as Discord does. The same path carries what the server decides
on its own: a kick, a move, a voice server change.

``Guild.change_voice_state`` reaches the main gateway through the connection state's
``_get_websocket(guild_id)``: ``client.ws`` on a plain ``Client``, the guild's shard's
websocket on an ``AutoShardedClient`` (Red's bot is one). A sharded client that never
logged in has no shards, so for it that getter answers with this gateway too.

The second patch: discord.py connects to ``wss://{endpoint}/?v=8``; the fake server
speaks plain ``ws://`` on localhost, so the client's ``HTTPClient.ws_connect`` rewrites
the scheme for this server's endpoints (and, on a client that never logged in, opens
the aiohttp session that login would have opened).

:func:`voice_read_timeout` is for tests only: discord.py gives a silent voice websocket
30 s before it reconnects; the wrapper makes that wait shorter without changing what
happens when it runs out (the same ``asyncio.TimeoutError`` reaches the same handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Iterator, Optional

import aiohttp
import discord
from discord.gateway import DiscordClientWebSocketResponse, DiscordVoiceWebSocket
from discord.utils import MISSING

if TYPE_CHECKING:
    from .server import FakeDiscordVoiceServer

__all__ = ["FakeMainGateway", "voice_read_timeout"]

log = logging.getLogger("harness.discord_voice.gateway")


class FakeMainGateway:
    """``client.ws`` for voice: answers ``voice_state()``; dispatches the server's decisions."""

    def __init__(self, server: "FakeDiscordVoiceServer", client: Any) -> None:
        self.server = server
        self.client = client
        self.requests: list[tuple[int, Optional[int]]] = []  # what the bot asked for
        self.dispatched: list[tuple[str, int, Optional[int]]] = []  # what it was told
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._deliver(), name="fake-main-gateway")
        self._previous_ws = getattr(client, "ws", None)
        self._http = client.http
        self._original_ws_connect = self._http.ws_connect
        self._session: Optional[aiohttp.ClientSession] = None
        client.ws = self
        self._http.ws_connect = self._ws_connect
        state = client._connection
        self._original_get_websocket = state._get_websocket
        if isinstance(client, discord.AutoShardedClient):
            state._get_websocket = self._get_websocket

    # ------------------------------------------------------------------ what discord.py calls
    async def voice_state(self, guild_id: int, channel_id: Optional[int], self_mute: bool = False,
                          self_deaf: bool = False) -> None:
        """Op 4 from the bot: join ``channel_id`` (None: leave)."""
        guild_id = int(guild_id)
        channel_id = int(channel_id) if channel_id is not None else None
        self.requests.append((guild_id, channel_id))
        user_id = int(self.client.user.id)
        answer = self.server.voice_state(guild_id, channel_id, user_id)
        self.dispatch_voice_state(guild_id, channel_id, self_mute=self_mute, self_deaf=self_deaf)
        if answer is not None:
            token, endpoint = answer
            self.dispatch_voice_server(guild_id, token, endpoint)

    def _get_websocket(self, guild_id: Optional[int] = None, *, shard_id: Optional[int] = None) -> "FakeMainGateway":
        return self

    @property
    def latency(self) -> float:
        return self.server.gateway_latency_s

    def is_ratelimited(self) -> bool:
        return False

    # ------------------------------------------------------------------ dispatches
    def dispatch_voice_state(self, guild_id: int, channel_id: Optional[int], *, self_mute: bool = True,
                             self_deaf: bool = False) -> None:
        user_id = int(self.client.user.id)
        self.dispatched.append(("VOICE_STATE_UPDATE", guild_id, channel_id))
        self._queue.put_nowait(("VOICE_STATE_UPDATE", {
            "guild_id": str(guild_id), "channel_id": str(channel_id) if channel_id is not None else None,
            "user_id": str(user_id), "session_id": self.session_id, "deaf": False, "mute": False,
            "self_deaf": self_deaf, "self_mute": self_mute, "self_video": False, "suppress": False,
            "request_to_speak_timestamp": None,
        }))

    def dispatch_voice_server(self, guild_id: int, token: str, endpoint: str) -> None:
        self.dispatched.append(("VOICE_SERVER_UPDATE", guild_id, None))
        self._queue.put_nowait(("VOICE_SERVER_UPDATE", {"token": token, "guild_id": str(guild_id),
                                                        "endpoint": endpoint}))

    @property
    def session_id(self) -> str:
        return f"fake-gateway-session-{id(self):x}"

    async def _deliver(self) -> None:
        state = self.client._connection
        while True:
            kind, data = await self._queue.get()
            await asyncio.sleep(self.server.gateway_latency_s)
            try:
                if kind == "VOICE_STATE_UPDATE":
                    state.parse_voice_state_update(data)
                else:
                    state.parse_voice_server_update(data)
            except Exception:
                log.exception("dispatching %s failed", kind)

    # ------------------------------------------------------------------ wss:// -> ws://
    async def _ws_connect(self, url: str, *, compress: int = 0) -> Any:
        for ep in self.server.endpoints:
            prefix = f"wss://{ep.address}/"
            if url.startswith(prefix):
                url = "ws://" + url[len("wss://"):]
                break
        http = self._http
        session = getattr(http, "_HTTPClient__session", None)
        if session is None or session is MISSING:  # never logged in: open what login would

            self._session = aiohttp.ClientSession(ws_response_class=DiscordClientWebSocketResponse)
            http._HTTPClient__session = self._session
        return await self._original_ws_connect(url, compress=compress)

    async def detach(self) -> None:
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self.client.ws = self._previous_ws
        self._http.ws_connect = self._original_ws_connect
        self.client._connection._get_websocket = self._original_get_websocket
        if self._session is not None:
            await self._session.close()


@contextlib.contextmanager
def voice_read_timeout(seconds: float) -> Iterator[None]:
    """Make discord.py give up on a silent voice websocket after ``seconds``, not 30 s."""
    original = DiscordVoiceWebSocket.poll_event

    async def poll_event(self: Any) -> None:
        await asyncio.wait_for(original(self), seconds)

    DiscordVoiceWebSocket.poll_event = poll_event  # type: ignore[method-assign]
    try:
        yield
    finally:
        DiscordVoiceWebSocket.poll_event = original  # type: ignore[method-assign]
