"""A :class:`~.link.VoiceLink` on discord.py 2.7.1's real ``VoiceClient``.

discord.py receives nothing itself, but its voice connection already has the three
things a receiver needs, and this module only plugs into them:

* **Datagrams**: ``VoiceConnectionState.add_socket_listener(cb)`` registers ``cb``
  with the connection's ``SocketReader`` thread, which calls it with every datagram
  read from the UDP socket (and keeps it registered across discord.py's own
  reconnects; a full disconnect clears it). ``cb`` is ``VoiceReceiver.on_datagram``.
* **Websocket events**: every JSON message of the voice websocket is passed, after
  discord.py handled it, to ``await ws._hook(ws, msg)``. New websockets (reconnects)
  get their hook from ``VoiceConnectionState.hook``, so both are set, chaining any
  hook already there. The hook feeds :class:`~.ws_events.VoiceWsEvents` (SPEAKING and
  client connect/disconnect for SSRC mapping, SESSION_DESCRIPTION for a new key).
* **Keys**: the transport key is ``VoiceConnectionState.secret_key`` (a list of 32
  ints); DAVE state is ``dave_session`` and ``dave_protocol_version`` on the same
  object, read on every frame by :class:`~.dave.DaveyDecryptor` because discord.py
  replaces/re-initialises the session on transitions.

These are underscore attributes of discord.py (``_connection``, ``_hook``); the
version is pinned to 2.7.1, and :func:`check_voice_client` fails with one sentence
if a future discord.py moved them, instead of recording silence.

Connection changes are watched by polling the connection state twice a second on
the event loop (discord.py has no callback for them): a channel change is a move, a
drop that comes back is a resume, and it is a disconnect when discord.py has let go of
the client (removed it from ``client.voice_clients``, as after a kick) or the state stays
``disconnected`` past a grace period (its own reconnect attempts included).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Optional

from ..objects.frames import VoiceFrame
from .dave import DaveyDecryptor
from .receiver import VoiceReceiver
from .ws_events import VoiceWsEvents, notify

log = logging.getLogger("red.chunkrecorder.voice.bridge")

WATCH_INTERVAL_S = 0.5
#: How long the connection may stay down (discord.py reconnecting) before we give up.
DISCONNECT_GRACE_S = 45.0


class BridgeError(RuntimeError):
    """discord.py's voice client does not look like 2.7.1's; one sentence for the owner."""


def check_voice_client(voice_client: Any) -> Any:
    """The client's ``VoiceConnectionState``, after checking it has what we hook into."""
    state = getattr(voice_client, "_connection", None)
    needed = ("add_socket_listener", "remove_socket_listener", "secret_key", "dave_session", "hook")
    if state is None or not all(hasattr(state, name) for name in needed):
        raise BridgeError(
            "This discord.py version does not expose the voice connection hooks chunkrecorder "
            "needs (it is built for discord.py 2.7.1)."
        )
    return state


def _drop(frame: VoiceFrame) -> None:
    return None


class DiscordVoiceLink:
    """Records from a connected ``discord.VoiceClient``."""

    def __init__(
        self,
        voice_client: Any,
        *,
        sink: Callable[[VoiceFrame], None] = _drop,
        clock: Callable[[], float] = time.monotonic,
        watch: bool = True,
        disconnect_grace_s: float = DISCONNECT_GRACE_S,
    ) -> None:
        self.voice_client = voice_client
        self._state = check_voice_client(voice_client)
        self.channel_id: int = int(voice_client.channel.id)
        state = self._state
        self.receiver = VoiceReceiver(
            secret_key=bytes(state.secret_key),
            sink=sink,
            dave=DaveyDecryptor(lambda: state.dave_session, lambda: state.dave_protocol_version),
            clock=clock,
        )
        self.events = VoiceWsEvents(self.receiver)
        self._listener: Any = None
        self._closed = False
        self._grace = disconnect_grace_s
        self._previous_hook: Optional[Callable[..., Awaitable[Any]]] = state.hook
        state.hook = self._hook
        ws = getattr(state, "ws", None)
        if ws is not None and hasattr(ws, "_hook"):
            ws._hook = self._hook  # the live websocket was made before our hook existed
        state.add_socket_listener(self.receiver.on_datagram)
        self._watcher: Optional[asyncio.Task[None]] = None
        if watch:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="chunkrecorder-voice-watch")

    # ---- VoiceLink -------------------------------------------------------------
    def is_connected(self) -> bool:
        return not self._closed and bool(self.voice_client.is_connected())

    def set_listener(self, listener: Any) -> None:
        self._listener = listener
        self.events.listener = listener

    async def disconnect(self) -> None:
        """Leave the channel; what the receiver holds is released to the sink first."""
        if self._closed:
            return
        self._close()
        try:
            await self.voice_client.disconnect(force=True)
        except Exception:  # already gone: nothing more to do
            log.debug("Ignoring error while disconnecting from voice", exc_info=True)

    # ---- hooks -----------------------------------------------------------------
    async def _hook(self, ws: Any, msg: dict[str, Any]) -> None:
        """discord.py awaits this after handling each voice-websocket JSON message."""
        if not self._closed:
            self.events.handle(msg)
        previous = self._previous_hook
        if previous is not None and previous is not self._hook:
            try:
                await previous(ws, msg)
            except Exception:
                log.exception("A previously installed voice websocket hook failed")

    def _close(self) -> None:
        self._closed = True
        if self._watcher is not None and self._watcher is not _current_task():
            self._watcher.cancel()
        try:
            self._state.remove_socket_listener(self.receiver.on_datagram)
        except Exception:
            log.debug("Socket listener already gone", exc_info=True)
        if self._state.hook == self._hook:
            self._state.hook = self._previous_hook
        self.receiver.flush()

    # ---- watching the connection ---------------------------------------------------
    def check(self, now: float) -> Optional[str]:
        """One look at the connection; returns the event it implies, if any.

        Split out of the watcher loop so tests can drive it with a fake client and a
        fake time. Events: "move", "resume", "disconnect".
        """
        vc = self.voice_client
        channel = getattr(vc, "channel", None)
        connected = bool(vc.is_connected())
        if connected:
            event = None
            if channel is not None and int(channel.id) != self.channel_id:
                self.channel_id = int(channel.id)
                event = "move"
            elif self._down_since is not None:
                event = "resume"
            self._down_since = None
            if event == "resume":
                key = getattr(self._state, "secret_key", None)
                if key and len(key) == 32:
                    self.receiver.set_secret_key(bytes(key))
            return event
        if self._abandoned() or channel is None:
            return "disconnect"  # discord.py cleaned up: kicked, channel deleted, gave up
        if self._down_since is None:
            self._down_since = now
            return None
        if now - self._down_since >= self._grace:
            return "disconnect"
        return None

    def _abandoned(self) -> bool:
        """discord.py drops a voice client from ``client.voice_clients`` only when it is
        finished with it; while it reconnects the client stays listed."""
        clients = getattr(getattr(self.voice_client, "client", None), "voice_clients", None)
        return clients is not None and self.voice_client not in clients

    _down_since: Optional[float] = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                await asyncio.sleep(WATCH_INTERVAL_S)
                event = self.check(loop.time())
                if event == "move":
                    notify(self._listener, "on_move", self.channel_id)
                elif event == "resume":
                    notify(self._listener, "on_resume")
                elif event == "disconnect":
                    self._close()
                    notify(self._listener, "on_disconnect", "the voice connection was lost")
                    return
        except asyncio.CancelledError:
            pass


def _current_task() -> Optional[asyncio.Task[Any]]:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def connect(channel: Any, *, timeout: float = 30.0) -> DiscordVoiceLink:
    """The default :data:`~.link.VoiceConnector`: join ``channel`` and start receiving.

    The bot joins undeafened (a deafened client is sent no audio) and muted (it never
    talks). discord.py's own reconnect logic stays on.
    """
    import discord

    voice_client = await channel.connect(timeout=timeout, reconnect=True, self_deaf=False, self_mute=True)
    if not isinstance(voice_client, discord.VoiceClient):
        await voice_client.disconnect(force=True)
        raise BridgeError("The voice client is not discord.py's VoiceClient, so it cannot be recorded.")
    try:
        return DiscordVoiceLink(voice_client)
    except Exception:
        await voice_client.disconnect(force=True)
        raise
