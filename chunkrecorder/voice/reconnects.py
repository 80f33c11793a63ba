"""Telling discord.py's own reconnects from kicks, moves and the end of a connection.

discord.py 2.7.1 has no callback for "the voice connection dropped" or "it is back",
and while it reconnects the main gateway shows the bot leaving and rejoining its
channel. :class:`ConnectionTracker` is the state machine the link keeps for that,
fed by the discord.py subclasses in :mod:`.discord_client` at the moments discord.py
itself decides things:

* ``down(cause)``: the voice websocket was lost (closed, timed out) or the flow state
  left ``connected`` although nobody asked: a reconnect is under way;
* ``up()``: the flow state is ``connected`` again and, in an end-to-end encrypted call,
  the DAVE session is ready: audio can be decrypted again. The outage is the time
  between the two;
* ``voice_state(channel_id, expecting_disconnect)``: a VOICE_STATE_UPDATE of the bot,
  seen *before* discord.py handles it. discord.py expects the "no channel" update of a
  leave it started itself (the first half of a reconnect, or our own disconnect); one
  it does not expect is a kick, and discord.py disconnects for good. A different
  channel is a move;
* ``ended()``: discord.py let go of the voice client. Unless the link asked for it,
  that is a kick (if one was seen) or discord.py giving up; the link reports it once the
  gateway confirmed the bot left (see :mod:`.discord_bridge`).

It holds no discord.py object and does no I/O, so every transition is unit-tested
with plain calls and a fake clock. Methods are called on the event loop only.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from .link import DisconnectReason, VoiceStateVerdict

__all__ = ["ConnectionTracker", "LinkState", "Outage"]

#: A VOICE_STATE_UPDATE is matched to the link's verdict on it for this long.
VERDICT_MEMORY_S = 30.0
#: ``is_reconnecting()`` stays true this long after a reconnect finished: the gateway's
#: events of the leave and rejoin may still be on their way to the cog.
RECENT_S = 10.0


class LinkState(enum.Enum):
    CONNECTING = "connecting"  # the first handshake (retries included) is not done yet
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Outage:
    """One reconnect: from ``start`` to ``end`` on the link's clock, and why it began."""

    start: float
    end: float
    cause: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


Emit = Callable[..., None]


class ConnectionTracker:
    """The link's view of its connection; ``emit(name, *args)`` reaches the listener."""

    def __init__(self, channel_id: int, *, emit: Emit, recent_s: float = RECENT_S) -> None:
        self.channel_id = channel_id
        self.state = LinkState.CONNECTING
        self.reconnects = 0
        self.outages: list[Outage] = []
        self.kicked = False
        self.leaving = False  # the link itself is disconnecting
        self.reason: Optional[DisconnectReason] = None
        self._emit = emit
        self._recent_s = recent_s
        self._down_since: Optional[float] = None
        self._noticed_at: Optional[float] = None
        self._cause = ""
        self._resumed_at: Optional[float] = None
        self._verdicts: deque[tuple[Optional[int], VoiceStateVerdict, float]] = deque(maxlen=32)

    # ------------------------------------------------------------------ queries
    @property
    def down_since(self) -> Optional[float]:
        return self._down_since

    @property
    def cause(self) -> str:
        return self._cause

    def is_reconnecting(self, now: float) -> bool:
        if self.state is LinkState.RECONNECTING:
            return True
        return self._resumed_at is not None and now - self._resumed_at < self._recent_s

    def classify(self, channel_id: Optional[int], now: float) -> VoiceStateVerdict:
        """The verdict on the latest VOICE_STATE_UPDATE to ``channel_id``; if the link has
        not seen it yet, what it would decide now."""
        for cid, verdict, at in reversed(self._verdicts):
            if cid == channel_id and now - at <= VERDICT_MEMORY_S:
                return verdict
        return self._judge(channel_id, expecting_disconnect=False)

    def _judge(self, channel_id: Optional[int], *, expecting_disconnect: bool) -> VoiceStateVerdict:
        if channel_id is None:
            if self.leaving:
                return VoiceStateVerdict.LEFT
            if expecting_disconnect:
                return VoiceStateVerdict.RECONNECT
            if self.state is LinkState.ENDED and not self.kicked:
                return VoiceStateVerdict.LEFT
            return VoiceStateVerdict.KICKED
        if channel_id != self.channel_id:
            return VoiceStateVerdict.MOVED
        return VoiceStateVerdict.SAME

    # ------------------------------------------------------------------ what discord.py did
    def voice_state(self, channel_id: Optional[int], *, expecting_disconnect: bool, now: float) -> VoiceStateVerdict:
        """A VOICE_STATE_UPDATE of the bot, before discord.py handles it."""
        verdict = self._judge(channel_id, expecting_disconnect=expecting_disconnect)
        if self.state is not LinkState.ENDED:
            if verdict is VoiceStateVerdict.KICKED:
                self.kicked = True
            elif verdict is VoiceStateVerdict.MOVED:
                assert channel_id is not None
                self.channel_id = channel_id
                self._emit("on_move", channel_id)
        self._verdicts.append((channel_id, verdict, now))
        return verdict

    def down(self, cause: str, now: float, *, alive_at: Optional[float] = None) -> None:
        """The connection was lost without the link asking (maybe reported twice).

        ``alive_at`` is the last sign of life (a datagram, a websocket message): a dead
        connection is noticed late (a read times out after seconds of silence), and the
        outage began when the signs of life stopped, not when discord.py noticed.
        """
        if self.state is not LinkState.CONNECTED or self.kicked or self.leaving:
            return
        self.state = LinkState.RECONNECTING
        self._down_since = alive_at if alive_at is not None and alive_at <= now else now
        self._noticed_at = now
        self._cause = cause
        self._emit("on_reconnecting", cause)

    def up(self, now: float) -> None:
        """Audio can flow again (flow state connected, DAVE ready where the call uses it)."""
        if self.state is LinkState.CONNECTING:
            self.state = LinkState.CONNECTED
        elif self.state is LinkState.RECONNECTING:
            assert self._down_since is not None
            outage = Outage(self._down_since, now, self._cause)
            self.outages.append(outage)
            self.reconnects += 1
            self.state = LinkState.CONNECTED
            self._down_since = None
            self._resumed_at = now
            self._emit("on_resume", outage.seconds)

    def ended(self, now: float) -> Optional[DisconnectReason]:
        """discord.py let go of the voice client: the reason to report (None if the link
        asked, or the end was already seen). The caller reports it (see the bridge)."""
        if self.state is LinkState.ENDED:
            return None
        self.state = LinkState.ENDED
        if self.leaving:
            return None
        self.reason = DisconnectReason.KICKED if self.kicked else DisconnectReason.GAVE_UP
        return self.reason

    def overdue(self, now: float, limit_s: float) -> bool:
        """discord.py has been reconnecting for ``limit_s`` or longer (counted from when
        the drop was noticed: a read timeout notices it 30 s after the outage began)."""
        return self.state is LinkState.RECONNECTING and self._noticed_at is not None and now - self._noticed_at >= limit_s
