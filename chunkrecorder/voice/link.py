"""The seam between the cog and a voice connection, real or fake.

The cog never touches sockets: it asks a :data:`VoiceConnector` for a
:class:`VoiceLink`, points the link's :class:`~.receiver.VoiceReceiver` at a
recording session (``link.receiver.set_sink(session.feed)``) and listens for what
happens to the connection. :mod:`.discord_bridge` implements it on discord.py's
``VoiceClient``; the harness implements it on a fake channel. Both hand datagrams
to the same ``VoiceReceiver``, so the harness exercises the bot's real decode path.

**Reconnects are not endings.** discord.py 2.7.1 reconnects on its own when the voice
websocket closes (4006 session no longer valid, 1006, 4015, a voice server change with
4014) or stops answering (30 s read timeout), and while it does, the main gateway shows
the bot in no channel for a moment: it leaves and rejoins. A link hides that from the
cog's decisions and reports it as what it is:

* ``on_reconnecting(cause)`` when the connection drops and a reconnect begins, then
  ``on_resume(outage_s)`` once audio can flow again (transport key and, in an end-to-end
  encrypted call, the DAVE group re-established), with the seconds without audio. The
  receiver is the same object throughout: the recording session keeps its sink, and
  the timeline is silent for the outage only.
* :meth:`VoiceLink.classify_voice_state` answers, for a ``VOICE_STATE_UPDATE`` of the
  bot that the cog sees in ``on_voice_state_update``, whether it is part of a reconnect
  (``RECONNECT``; also the rejoin, ``SAME``), a kick (``KICKED``), a move (``MOVED``) or
  the link's own leaving (``LEFT``). It is cheap (no I/O) and consistent with what the
  link reports through its listener, because it records discord.py's own decision
  for that very event (the connection state expecting a disconnect or not).
* ``on_disconnect(reason)`` means the link is dead, with a :class:`DisconnectReason`:
  ``KICKED`` (the gateway said the bot is in no channel and no reconnect was in
  progress: a moderator, or the channel was deleted) or ``GAVE_UP`` (nobody kicked the
  bot, but the connection is gone: discord.py stopped trying, the server closed the
  connection normally or refused it, or a reconnect took longer than the link's
  limit). After ``GAVE_UP`` the cog's own reconnect policy applies: connect again for a
  new link. A link disconnected by the cog (``await link.disconnect()``) reports nothing.
* ``on_move(channel_id)``: the bot was moved to another voice channel. The link stays up
  and discord.py follows into the new channel (a reconnect with ``on_reconnecting`` /
  ``on_resume`` follows); whether to stop or keep recording there is the cog's call.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    from .receiver import VoiceReceiver

MaybeAwaitable = Union[Awaitable[None], None]


class DisconnectReason(enum.StrEnum):
    """Why a link is dead (``on_disconnect``)."""

    KICKED = "kicked"
    """Discord put the bot in no channel while no reconnect was in progress."""
    GAVE_UP = "gave_up"
    """The connection is gone without a kick: reconnecting is the cog's job now."""


class VoiceStateVerdict(enum.StrEnum):
    """What one ``VOICE_STATE_UPDATE`` of the bot means for the link (see the module doc)."""

    SAME = "same"
    RECONNECT = "reconnect"
    KICKED = "kicked"
    MOVED = "moved"
    LEFT = "left"


@runtime_checkable
class VoiceLink(Protocol):
    """One live voice connection the cog records from."""

    channel_id: int

    @property
    def receiver(self) -> "VoiceReceiver":
        """The real receive path; the same object for the link's whole life."""
        ...

    @property
    def reconnects(self) -> int:
        """Reconnects completed so far (discord.py's own, each reported by ``on_resume``)."""
        ...

    def is_connected(self) -> bool: ...

    async def until_hearing(self, timeout: float) -> bool:
        """Wait until audio can flow: connected, and in an end-to-end encrypted call the
        DAVE group joined (a new connection can decrypt nothing before its welcome).
        False if ``timeout`` passed first; :class:`ConnectionError` if the link ended
        meanwhile (its ``on_disconnect`` says why)."""
        ...

    def quiet_for(self) -> float:
        """While the connection is down (or after it ended), seconds since its last sign
        of life (a datagram, a websocket message); 0 while it is up. A dead connection is
        noticed late, and its outage began when the signs of life stopped."""
        ...

    def is_reconnecting(self) -> bool:
        """A reconnect is in progress, or one finished moments ago (its gateway events may
        still be arriving)."""
        ...

    def classify_voice_state(self, channel_id: Optional[int]) -> VoiceStateVerdict:
        """What the bot's VOICE_STATE_UPDATE to ``channel_id`` (None: no channel) means."""
        ...

    def set_listener(self, listener: "VoiceEventListener") -> None: ...

    async def disconnect(self) -> None: ...


class VoiceEventListener(Protocol):
    """What a link reports, on the event loop. Every method is optional; each may be
    a plain function or a coroutine function (coroutines are scheduled as tasks when
    the caller cannot await them).

    * ``on_disconnect(reason: DisconnectReason)`` - the link is dead (see the module doc).
    * ``on_reconnecting(cause: str)`` - the connection dropped; a reconnect is under way.
    * ``on_resume(outage_s: float)`` - audio flows again after ``outage_s`` seconds;
      SSRCs may have changed, the receiver has already been told.
    * ``on_move(channel_id: int)`` - the bot was moved to another voice channel; the
      link follows it.
    * ``on_member_join(user_id: int)`` / ``on_member_leave(user_id: int)`` - someone's
      voice client connected to / disconnected from the call.
    * ``on_speaking(user_id: int, ssrc: int, speaking: bool)`` - SPEAKING (op 5).
    """


class BaseVoiceEventListener:
    """A listener that ignores everything; subclass and override what you need."""

    def on_disconnect(self, reason: DisconnectReason) -> MaybeAwaitable:
        return None

    def on_reconnecting(self, cause: str) -> MaybeAwaitable:
        return None

    def on_resume(self, outage_s: float) -> MaybeAwaitable:
        return None

    def on_move(self, channel_id: int) -> MaybeAwaitable:
        return None

    def on_member_join(self, user_id: int) -> MaybeAwaitable:
        return None

    def on_member_leave(self, user_id: int) -> MaybeAwaitable:
        return None

    def on_speaking(self, user_id: int, ssrc: int, speaking: bool) -> MaybeAwaitable:
        return None


#: ``await connector(channel)`` joins ``channel`` (a ``discord.abc.Connectable`` or the
#: harness's fake) and returns the live link.
VoiceConnector = Callable[[Any], Awaitable[VoiceLink]]

__all__ = [
    "BaseVoiceEventListener",
    "DisconnectReason",
    "MaybeAwaitable",
    "VoiceConnector",
    "VoiceEventListener",
    "VoiceLink",
    "VoiceStateVerdict",
]
