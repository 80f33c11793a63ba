"""discord.py's ``VoiceClient`` with the recorder's observer in it from the first message.

Passing ``cls=RecordingVoiceClient`` to ``channel.connect()`` builds this client before
any voice traffic: its :meth:`RecordingVoiceClient.create_connection_state` (the hook
discord.py provides for exactly this) makes a :class:`RecordingConnectionState`
carrying the observer (the link, :mod:`.discord_bridge`) as its websocket hook. So the
SPEAKING and CLIENTS_CONNECT messages Discord sends between READY and
SESSION_DESCRIPTION, before ``connect()`` returns, are seen; installing a hook after
``connect()`` (as this cog once did) lost them, and with them every packet of a member
who was already talking.

The connection state reports, beside every websocket message, what discord.py does
with the connection, each at the moment it happens and before or after discord.py's
own code (which is always called unchanged):

* a new transport key (the ``secret_key`` attribute is set in ``load_secret_key``,
  before discord.py tells the server its SSRC, so no datagram under the new key can
  reach the receiver before the receiver has the key);
* every flow-state change, and a voice websocket lost (each websocket's ``poll_event``
  is wrapped to see the close code or read timeout discord.py is about to act on);
* each VOICE_STATE_UPDATE of the bot together with whether discord.py expected it;
* ``disconnect(cleanup=False)`` (a reconnect step) and the final ``cleanup()``.

Two behaviours are changed, both races of discord.py 2.7.1 that the fake voice server
(:mod:`harness.discord_voice`) made visible: closing the UDP socket wakes the reader
thread (see :class:`_WakingSocket`; without it a reconnect could stall for 30 s), and
waiting for a flow state cannot miss its wake-up (:meth:`RecordingConnectionState._wait_for_state`;
without it a connect could hang until its timeout).

Only attributes and methods of discord.py 2.7.1's ``VoiceConnectionState`` are used;
:func:`~.discord_bridge.check_voice_client` refuses a version that lacks them.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, Optional, Protocol

import discord
from discord.errors import ConnectionClosed
from discord.voice_state import ConnectionFlowState, VoiceConnectionState

if TYPE_CHECKING:
    from discord.gateway import DiscordVoiceWebSocket

__all__ = ["ConnectionObserver", "RecordingConnectionState", "RecordingVoiceClient"]


class ConnectionObserver(Protocol):
    """What :class:`RecordingConnectionState` reports to (the link)."""

    async def ws_message(self, ws: Any, msg: dict[str, Any]) -> None: ...

    def transport_key(self, key: list[int]) -> None: ...

    def flow_state(self, old: ConnectionFlowState, new: ConnectionFlowState) -> None: ...

    def ws_lost(self, cause: str) -> None: ...

    def voice_state(self, channel_id: Optional[int], *, expecting_disconnect: bool) -> None: ...

    def reconnect_step(self) -> None: ...

    def server_changed(self) -> None: ...

    def released(self) -> None: ...


class _WakingSocket(socket.socket):
    """A UDP socket whose ``close()`` first wakes the thread blocked reading it.

    discord.py's ``SocketReader`` thread waits in ``select()`` on the socket for up to
    30 s. When discord.py reconnects it closes the socket and makes a new one, but
    closing a descriptor does not wake a ``select()`` on it: if the old socket was quiet
    (the voice server stops sending when it ends the session), the reader sleeps on
    the dead socket, the new socket's IP discovery reply is never read, and the
    reconnect stalls for up to 30 s. ``shutdown()`` does wake it (Linux wakes pollers
    even on an unconnected UDP socket), so the reader moves on to the new socket at once.
    """

    def close(self) -> None:
        try:
            self.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        super().close()


class RecordingConnectionState(VoiceConnectionState):
    """discord.py's connection state, reporting to an observer (see the module doc)."""

    def __init__(self, voice_client: "RecordingVoiceClient", observer: ConnectionObserver) -> None:
        self._observer = observer
        super().__init__(voice_client, hook=observer.ws_message)

    # discord.py assigns ``self.secret_key`` / ``self.state``; properties see each assignment.
    @property
    def secret_key(self) -> list[int]:
        return self.__dict__.get("_secret_key", discord.utils.MISSING)  # type: ignore[no-any-return]

    @secret_key.setter
    def secret_key(self, value: list[int]) -> None:
        self.__dict__["_secret_key"] = value
        if isinstance(value, (list, bytes, bytearray)) and len(value) == 32:
            self._observer.transport_key(list(value))

    @property
    def state(self) -> ConnectionFlowState:
        return VoiceConnectionState.state.fget(self)  # type: ignore[attr-defined,no-any-return]

    @state.setter
    def state(self, state: ConnectionFlowState) -> None:
        old = self.__dict__.get("_state", ConnectionFlowState.disconnected)
        VoiceConnectionState.state.fset(self, state)  # type: ignore[attr-defined]
        observer = self.__dict__.get("_observer")
        if observer is not None and old is not state:
            observer.flow_state(old, state)

    async def voice_state_update(self, data: Any) -> None:
        raw = data.get("channel_id")
        self._observer.voice_state(int(raw) if raw is not None else None,
                                   expecting_disconnect=self._expecting_disconnect)
        await super().voice_state_update(data)

    async def voice_server_update(self, data: Any) -> None:
        if self.state is ConnectionFlowState.connected and data.get("endpoint"):
            self._observer.server_changed()
        await super().voice_server_update(data)

    async def disconnect(self, *, force: bool = True, cleanup: bool = True, wait: bool = False) -> None:
        if not cleanup:
            self._observer.reconnect_step()
        await super().disconnect(force=force, cleanup=cleanup, wait=wait)

    async def _wait_for_state(self, state: ConnectionFlowState, *other_states: ConnectionFlowState,
                              timeout: Optional[float] = None) -> None:
        """discord.py's wait for a flow state, without its lost wake-up.

        discord.py signals a state change with ``event.set(); event.clear()``, so a waiter
        that is scheduled but has not started waiting when the change happens misses it.
        That happens when VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE are handled in the same
        loop iteration the connector wakes up in (a busy loop), and the connection then
        hangs until its timeout. Here each wait is at most 100 ms before the state is
        looked at again; the timeout still raises ``asyncio.TimeoutError``.
        """
        states = (state, *other_states)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.state not in states:
            step = 0.1 if deadline is None else min(0.1, deadline - loop.time())
            if step <= 0:
                raise asyncio.TimeoutError
            try:
                await asyncio.wait_for(self._state_event.wait(), step)
            except asyncio.TimeoutError:
                pass

    def _create_socket(self) -> None:
        # discord.py's own three steps, with a socket that wakes the reader when closed.
        waking = _WakingSocket(socket.AF_INET, socket.SOCK_DGRAM)
        waking.setblocking(False)
        self.socket = waking
        self._socket_reader.resume()

    async def _connect_websocket(self, resume: bool) -> "DiscordVoiceWebSocket":
        ws = await super()._connect_websocket(resume)
        poll = ws.poll_event
        observer = self._observer

        async def poll_event() -> None:
            try:
                await poll()
            except ConnectionClosed as exc:
                if not self._expecting_disconnect:
                    observer.ws_lost(f"the voice websocket closed ({exc.code})")
                raise
            except asyncio.TimeoutError:
                observer.ws_lost("the voice websocket stopped answering")
                raise

        ws.poll_event = poll_event  # type: ignore[method-assign]
        return ws


class RecordingVoiceClient(discord.VoiceClient):
    """``channel.connect(cls=RecordingVoiceClient)``: a VoiceClient the link observes."""

    def __init__(self, client: discord.Client, channel: Any) -> None:
        self.link: Any = None
        super().__init__(client, channel)

    def create_connection_state(self) -> VoiceConnectionState:
        from .discord_bridge import DiscordVoiceLink  # the link is built with the state

        self.link = DiscordVoiceLink(self)
        return RecordingConnectionState(self, self.link)

    def cleanup(self) -> None:
        """discord.py is done with this client (kick, give-up, or our own disconnect)."""
        try:
            super().cleanup()
        finally:
            if self.link is not None:
                self.link.released()
