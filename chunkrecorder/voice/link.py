"""The seam between the cog and a voice connection, real or fake.

The cog never touches sockets: it asks a :data:`VoiceConnector` for a
:class:`VoiceLink`, points the link's :class:`~.receiver.VoiceReceiver` at a
recording session (``link.receiver.set_sink(session.feed)``) and listens for what
happens to the connection. :mod:`.discord_bridge` implements it on discord.py's
``VoiceClient``; the harness implements it on a fake channel. Both hand datagrams
to the same ``VoiceReceiver``, so the harness exercises the bot's real decode path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    from .receiver import VoiceReceiver

MaybeAwaitable = Union[Awaitable[None], None]


@runtime_checkable
class VoiceLink(Protocol):
    """One live voice connection the cog records from."""

    channel_id: int
    receiver: "VoiceReceiver"

    def is_connected(self) -> bool: ...

    def set_listener(self, listener: "VoiceEventListener") -> None: ...

    async def disconnect(self) -> None: ...


class VoiceEventListener(Protocol):
    """What a link reports, on the event loop. Every method is optional; each may be
    a plain function or a coroutine function (coroutines are scheduled as tasks when
    the caller cannot await them).

    * ``on_disconnect(reason: str)`` - the connection is gone for good (kicked, channel
      deleted, discord.py gave up reconnecting). The link is dead; connect again for a
      new one.
    * ``on_move(channel_id: int)`` - the bot was moved to another voice channel; the
      link keeps receiving (from the new channel).
    * ``on_resume()`` - the connection dropped and came back (resume or reconnect);
      SSRCs may have changed, the receiver has already been told.
    * ``on_member_join(user_id: int)`` / ``on_member_leave(user_id: int)`` - someone's
      voice client connected to / disconnected from the call.
    * ``on_speaking(user_id: int, ssrc: int, speaking: bool)`` - SPEAKING (op 5).
    """


class BaseVoiceEventListener:
    """A listener that ignores everything; subclass and override what you need."""

    def on_disconnect(self, reason: str) -> MaybeAwaitable:
        return None

    def on_move(self, channel_id: int) -> MaybeAwaitable:
        return None

    def on_resume(self) -> MaybeAwaitable:
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

__all__ = ["BaseVoiceEventListener", "MaybeAwaitable", "VoiceConnector", "VoiceEventListener", "VoiceLink"]
