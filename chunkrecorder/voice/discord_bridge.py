"""A :class:`~.link.VoiceLink` on discord.py 2.7.1's real ``VoiceClient``.

discord.py receives nothing itself, but its voice connection already has what a
receiver needs, and this module only plugs into it, from the first message on (the
link is built together with the client's connection state, see :mod:`.discord_client`):

* **Datagrams**: ``VoiceConnectionState.add_socket_listener(cb)`` registers ``cb``
  with the connection's ``SocketReader`` thread, which calls it with every datagram
  read from the UDP socket and keeps it across discord.py's own reconnects (a new
  socket is read by the same thread). ``cb`` is ``VoiceReceiver.on_datagram``,
  registered when the first transport key arrives.
* **Websocket events**: every JSON message of the voice websocket reaches
  :meth:`DiscordVoiceLink.ws_message` (the connection state's hook, which discord.py
  hands to every websocket it makes). SPEAKING and client connect/disconnect map SSRCs
  (:class:`~.ws_events.VoiceWsEvents`); those that arrive before the receiver exists
  (between READY and SESSION_DESCRIPTION) are kept and replayed into it.
* **Keys**: the transport key reaches the receiver the moment discord.py stores it;
  DAVE state is ``dave_session`` and ``dave_protocol_version`` on the connection state,
  read on every frame by :class:`~.dave.DaveyDecryptor` because discord.py replaces or
  re-initialises the session on reconnects and transitions.
* **The connection's fate**: :class:`~.reconnects.ConnectionTracker` turns what the
  connection state reports into the link's events (``on_reconnecting``, ``on_resume``
  with the outage, ``on_move``, ``on_disconnect`` with a reason) and answers
  :meth:`DiscordVoiceLink.classify_voice_state`. A reconnect that takes longer than
  ``give_up_after_s`` is ended by the link (discord.py would retry forever) and
  reported as ``GAVE_UP``, so the cog's own reconnect policy can take over.

These are underscore internals of discord.py; the version is pinned to 2.7.1, and
:func:`check_discord_voice` refuses, in one sentence, a discord.py that moved them,
instead of recording silence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from discord.voice_state import ConnectionFlowState, VoiceConnectionState

from ..objects.frames import VoiceFrame
from ..utils.background import BackgroundTasks
from .dave import DaveyDecryptor
from .link import DisconnectReason, VoiceStateVerdict
from .receiver import VoiceReceiver
from .reconnects import ConnectionTracker, LinkState, Outage
from .ws_events import VoiceWsEvents, notify

if TYPE_CHECKING:
    from .discord_client import RecordingVoiceClient

log = logging.getLogger("red.chunkrecorder.voice.bridge")

#: How often the link looks at the connection (DAVE readiness after a reconnect, the
#: give-up deadline); everything else is reported the moment it happens.
WATCH_INTERVAL_S = 0.25
#: How often ``until_hearing`` looks whether audio can flow.
HEARING_POLL_S = 0.01
#: A reconnect taking longer than this is given up (discord.py itself never stops).
GIVE_UP_AFTER_S = 45.0
#: How long an ending waits for the gateway to show the bot out of voice before it is
#: reported anyway (see :meth:`DiscordVoiceLink._report_end`).
LEAVE_CONFIRM_S = 5.0

#: What this module and :mod:`.discord_client` use of discord.py's connection state.
_NEEDED = ("add_socket_listener", "remove_socket_listener", "voice_state_update", "voice_server_update",
           "disconnect", "_connect_websocket", "is_connected", "_wait_for_state", "_create_socket")
_NEEDED_IN_INSTANCE = ("_expecting_disconnect", "hook", "_socket_reader", "_runner", "_connector",
                       "dave_session", "dave_protocol_version", "dave_downgraded", "_state_event")


class BridgeError(RuntimeError):
    """discord.py's voice client does not look like 2.7.1's; one sentence for the owner."""


def check_discord_voice(state: Any = None) -> None:
    """Refuse a discord.py whose voice connection state lacks what the link hooks into."""
    ok = all(hasattr(VoiceConnectionState, name) for name in _NEEDED) and isinstance(
        getattr(VoiceConnectionState, "state", None), property)
    if state is not None:
        ok = ok and all(hasattr(state, name) for name in _NEEDED_IN_INSTANCE)
    if not ok:
        raise BridgeError(
            "This discord.py version does not expose the voice connection hooks chunkrecorder "
            "needs (it is built for discord.py 2.7.1)."
        )


def _drop(frame: VoiceFrame) -> None:
    return None


class DiscordVoiceLink:
    """Records from a ``RecordingVoiceClient``; built by the client itself (see the module doc)."""

    def __init__(self, voice_client: "RecordingVoiceClient", *, clock: Callable[[], float] = time.monotonic,
                 give_up_after_s: float = GIVE_UP_AFTER_S) -> None:
        self.voice_client = voice_client
        self.channel_id: int = int(voice_client.channel.id)
        self.give_up_after_s = give_up_after_s
        self._clock = clock
        self.tracker = ConnectionTracker(self.channel_id, emit=self._emit)
        self.events = VoiceWsEvents(None, report_resumed=False)
        self._receiver: Optional[VoiceReceiver] = None
        self._listener: Any = None
        self._watcher: Optional[asyncio.Task[None]] = None
        self._tasks = BackgroundTasks("voice link")
        self._cause: Optional[str] = None
        self._closed = False
        self._down_ws: Any = None  # the websocket a reconnect began on: "up" needs a new one
        self._last_ws_message: Optional[float] = None
        #: When VOICE_SERVER_UPDATE moved the call to another voice server: audio from the
        #: old one ends there, whatever its websocket still says while discord.py closes it.
        self._server_changed_at: Optional[float] = None
        self._released = asyncio.Event()

    # ---- VoiceLink -------------------------------------------------------------
    @property
    def receiver(self) -> VoiceReceiver:
        if self._receiver is None:
            raise BridgeError("The voice connection has no transport key yet, so nothing can be received.")
        return self._receiver

    @property
    def reconnects(self) -> int:
        return self.tracker.reconnects

    @property
    def outages(self) -> list[Outage]:
        """Every reconnect so far: start, end (on the link's clock) and cause."""
        return list(self.tracker.outages)

    def is_connected(self) -> bool:
        return not self._closed and self.tracker.state is LinkState.CONNECTED and self.voice_client.is_connected()

    async def until_hearing(self, timeout: float) -> bool:
        # Polled finely here: the watcher's quarter second would put the end of a gap
        # that far after the audio is back.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._closed:
            self._check_up()
            if self.is_connected():
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(HEARING_POLL_S)
        raise ConnectionError("the voice connection ended before it could hear")

    def quiet_for(self) -> float:
        since = self.tracker.down_since
        return 0.0 if since is None or self.tracker.state is LinkState.CONNECTED else max(0.0, self._clock() - since)

    def is_reconnecting(self) -> bool:
        return self.tracker.is_reconnecting(self._clock())

    def classify_voice_state(self, channel_id: Optional[int]) -> VoiceStateVerdict:
        return self.tracker.classify(channel_id, self._clock())

    def set_listener(self, listener: Any) -> None:
        self._listener = listener
        self.events.listener = listener

    async def disconnect(self) -> None:
        """Leave the channel; what the receiver holds is released to the sink first.

        After a kick discord.py is already leaving on its own (it disconnects when the
        gateway puts the bot in no channel unexpectedly), so this waits for that instead
        of starting a second leave: the second would wait for a confirmation that only
        the first one gets (discord.py forgets the client when the first ends), for
        discord.py's whole connect timeout.
        """
        if self._closed:
            return
        kicked = self.tracker.kicked
        self.tracker.leaving = True
        if kicked:
            try:
                await asyncio.wait_for(self._released.wait(), LEAVE_CONFIRM_S)
            except asyncio.TimeoutError:
                log.debug("discord.py did not finish leaving after a kick; closing the link anyway")
            self._close()
            return
        try:
            await self.voice_client.disconnect(force=True)
        except Exception:  # already gone: nothing more to do
            log.debug("Ignoring error while disconnecting from voice", exc_info=True)
        self._close()

    # ---- what the connection state reports (RecordingConnectionState) -----------
    async def ws_message(self, ws: Any, msg: dict[str, Any]) -> None:
        """discord.py awaits this after handling each voice-websocket JSON message."""
        if not self._closed:
            self._last_ws_message = self._clock()
            self.events.handle(msg)
            self._check_up()

    def transport_key(self, key: list[int]) -> None:
        if self._closed:
            return
        if self._receiver is None:
            state = self.voice_client._connection
            receiver = VoiceReceiver(
                secret_key=bytes(key),
                sink=_drop,
                dave=DaveyDecryptor(lambda: state.dave_session, lambda: state.dave_protocol_version,
                                    lambda: bool(state.dave_downgraded)),
                clock=self._clock,
            )
            self._receiver = receiver
            self.events.attach(receiver)
            state.add_socket_listener(receiver.on_datagram)
            self._start_watching()
        else:
            self._receiver.set_secret_key(bytes(key))

    def flow_state(self, old: ConnectionFlowState, new: ConnectionFlowState) -> None:
        if new is ConnectionFlowState.connected:
            self._check_up()
        elif old is ConnectionFlowState.connected:
            self._down(self._cause or "the voice connection was reset")

    def ws_lost(self, cause: str) -> None:
        self._down(self._cause or cause)

    def voice_state(self, channel_id: Optional[int], *, expecting_disconnect: bool) -> None:
        verdict = self.tracker.voice_state(channel_id, expecting_disconnect=expecting_disconnect, now=self._clock())
        if verdict is VoiceStateVerdict.MOVED:
            self._cause = f"moved to channel {channel_id}"
            self.channel_id = self.tracker.channel_id

    def reconnect_step(self) -> None:
        self._down(self._cause or "discord.py is reconnecting")

    def server_changed(self) -> None:
        self._cause = self._cause or "the voice server changed"
        if self._server_changed_at is None:
            self._server_changed_at = self._clock()

    def released(self) -> None:
        """discord.py is done with the voice client (its ``cleanup()``)."""
        self._released.set()
        reason = self.tracker.ended(self._clock())
        self._close()
        if reason is not None:
            report = self._report_end(reason)
            try:
                self._tasks.spawn(report, name="chunkrecorder-voice-ended")
            except RuntimeError:  # no running loop (interpreter shutdown): nobody to tell
                report.close()

    async def _report_end(self, reason: DisconnectReason) -> None:
        """Report the end once the gateway shows the bot out of voice.

        discord.py's last act was to ask the gateway to leave. If the cog connected again
        before that leave's VOICE_STATE_UPDATE arrived, discord.py would hand it to the
        *new* voice client, which takes a "no channel" it did not expect for a kick and
        disconnects (discord.py waits for it in ``VoiceClient.disconnect()``, but not when
        it disconnects on its own). So the cog hears ``on_disconnect`` only when a new
        connection is safe.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEAVE_CONFIRM_S
        while loop.time() < deadline and self._in_voice():
            await asyncio.sleep(0.02)
        notify(self._listener, "on_disconnect", reason)

    def _in_voice(self) -> bool:
        try:
            voice = self.voice_client.guild.me.voice
        except AttributeError:
            return False
        return voice is not None and voice.channel is not None



    # ---- internals ---------------------------------------------------------------
    def _emit(self, name: str, *args: Any) -> None:
        if name == "on_resume":
            self._cause = None
            self._server_changed_at = None
        notify(self._listener, name, *args)

    def _down(self, cause: str) -> None:
        if self.tracker.state is LinkState.CONNECTED:
            self._down_ws = self.voice_client._connection.ws
        signs = [t for t in (self._last_ws_message, self._receiver.last_datagram_at if self._receiver else None)
                 if t is not None]
        alive_at = max(signs) if signs else None
        if self._server_changed_at is not None:  # the old server's last words are not audio
            alive_at = self._server_changed_at if alive_at is None else min(alive_at, self._server_changed_at)
        self.tracker.down(cause, self._clock(), alive_at=alive_at)

    def _dave_ready(self) -> bool:
        state = self.voice_client._connection
        if not state.dave_protocol_version:
            return True
        session = state.dave_session
        return session is not None and bool(session.ready)

    def _check_up(self) -> None:
        """Up again: connected on a new websocket (discord.py stays "connected" while it
        waits to reconnect after losing one) with the DAVE session ready if needed."""
        state = self.voice_client._connection
        if self.tracker.state is LinkState.RECONNECTING and state.ws is self._down_ws:
            return
        if self.tracker.state in (LinkState.CONNECTING, LinkState.RECONNECTING) and \
                state.is_connected() and self._dave_ready():
            self._down_ws = None
            self.tracker.up(self._clock())

    def _start_watching(self) -> None:
        if self._watcher is None:
            self._watcher = self._tasks.spawn(self._watch(), name="chunkrecorder-voice-watch")

    async def _watch(self) -> None:
        try:
            while not self._closed:
                await asyncio.sleep(WATCH_INTERVAL_S)
                self._check_up()
                if self.tracker.overdue(self._clock(), self.give_up_after_s):
                    log.warning("Voice reconnect to channel %s took over %.0f s; giving up",
                                self.channel_id, self.give_up_after_s)
                    await self._give_up()
                    return
        except asyncio.CancelledError:
            pass

    async def _give_up(self) -> None:
        """Stop discord.py's reconnect loop and let go of the client: GAVE_UP."""
        state = self.voice_client._connection
        for name in ("_runner", "_connector"):  # else it might rejoin with nobody listening
            task = getattr(state, name, None)
            if task is not None and task is not _current_task():
                task.cancel()
        try:
            await self.voice_client.disconnect(force=True)
        except Exception:
            log.debug("Ignoring error while giving up on voice", exc_info=True)
        finally:
            self.released()  # reports GAVE_UP unless cleanup() already did

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None and self._watcher is not _current_task():
            self._watcher.cancel()
        receiver = self._receiver
        if receiver is not None:
            try:
                self.voice_client._connection.remove_socket_listener(receiver.on_datagram)
            except Exception:
                log.debug("Socket listener already gone", exc_info=True)
            receiver.flush()


def _current_task() -> Optional["asyncio.Task[Any]"]:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def connect(channel: Any, *, timeout: float = 30.0) -> DiscordVoiceLink:
    """The default :data:`~.link.VoiceConnector`: join ``channel`` and start receiving.

    The bot joins undeafened (a deafened client is sent no audio) and muted (it never
    talks). discord.py's own reconnect logic stays on; the link reports it.
    """
    from .discord_client import RecordingVoiceClient

    check_discord_voice()
    voice_client = await channel.connect(timeout=timeout, reconnect=True, self_deaf=False, self_mute=True,
                                         cls=RecordingVoiceClient)
    link = getattr(voice_client, "link", None)
    try:
        if not isinstance(voice_client, RecordingVoiceClient) or not isinstance(link, DiscordVoiceLink):
            raise BridgeError("The voice client is not the recorder's discord.py VoiceClient, so it cannot be recorded.")
        check_discord_voice(voice_client._connection)
        if link._receiver is None or not voice_client.is_connected():
            raise BridgeError("The voice connection did not finish its handshake, so nothing can be received.")
    except Exception:
        await voice_client.disconnect(force=True)
        raise
    return link


__all__ = ["BridgeError", "DisconnectReason", "DiscordVoiceLink", "check_discord_voice", "connect"]
