"""What happened to one meeting's voice connection: reconnects, the gaps they left, moves.

A meeting outlives its voice connection's trouble: discord.py reconnects by itself
(a websocket closed with 4006 or 1006, a read timeout, a new voice server), and when
it gives up the cog connects again (``recordingset reconnect N``). Either way the
recording goes on, silent for as long as no audio could arrive. Members should know
where those silences are, so the manager notes each one here, on the meeting's
timeline (seconds from its start), and ``[p]record status`` and the final result
message word them. Moves the meeting followed are noted too.

Plain data and arithmetic: no Discord, no clock of its own (the manager passes the
meeting time), so every wording is testable without a bot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..i18n import _
from .formatting import clock_duration

__all__ = ["ConnectionLog", "Gap", "LinkEvent"]


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of the meeting with no audio, from ``start_s`` to ``end_s`` (meeting time).

    ``by`` says who brought the connection back: discord.py's own reconnect, the
    cog's reconnect policy after discord.py gave up, or nobody (``"stop"``: the
    meeting stopped while the connection was still down; the gap runs to its end).
    """

    start_s: float
    end_s: float
    cause: str
    by: Literal["discord", "cog", "stop"] = "discord"

    @property
    def seconds(self) -> float:
        return max(0.0, self.end_s - self.start_s)


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """Something that happened to the voice link, shown in ``[p]record status``; worded
    when shown, so a member reads it in their guild's language."""

    kind: Literal["lost", "resumed", "reconnected", "moved"]
    detail: str = ""
    attempt: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.kind == "resumed":
            return _("reconnected after {seconds} s").format(seconds=_seconds(self.seconds))
        if self.kind == "reconnected":
            return _("reconnected (attempt {attempt})").format(attempt=self.attempt)
        if self.kind == "moved":
            return _("moved to **{channel}**").format(channel=self.detail)
        if self.detail:
            return _("voice connection lost ({why})").format(why=self.detail)
        return _("voice connection lost (no reason given)")


def _seconds(value: float) -> str:
    return f"{value:.1f}"


@dataclass
class ConnectionLog:
    """One meeting's connection history; the manager writes, status and results read."""

    gaps: list[Gap] = field(default_factory=list)
    events: list[LinkEvent] = field(default_factory=list)
    #: Meeting time the connection went down and why, while it is down.
    down: Optional[tuple[float, str]] = None
    #: The outage the meeting stopped in (it never came back): silent to the end.
    unfinished: Optional[Gap] = None

    # ------------------------------------------------------------------ written by the manager
    def reconnecting(self, at_s: float, cause: str) -> None:
        """discord.py lost the connection and is reconnecting."""
        if self.down is None:
            self.down = (at_s, cause)
            self.events.append(LinkEvent("lost", detail=cause))

    def resumed(self, at_s: float, outage_s: float) -> Gap:
        """discord.py's reconnect is done: no audio for the last ``outage_s`` seconds."""
        cause = self.down[1] if self.down is not None else ""
        gap = Gap(max(0.0, at_s - outage_s), at_s, cause, "discord")
        self.down = None
        self.gaps.append(gap)
        self.events.append(LinkEvent("resumed", seconds=gap.seconds))
        return gap

    def lost(self, at_s: float, cause: str) -> None:
        """The connection is gone for good (discord.py gave up); the cog reconnects. The
        gap runs from when trouble was first reported (a reconnect that never ended)."""
        if self.down is None:
            self.down = (at_s, cause)
        elif cause:
            self.down = (self.down[0], cause)
        self.events.append(LinkEvent("lost", detail=self.down[1]))

    def reconnected(self, at_s: float, attempt: int) -> Gap:
        """The cog's own reconnect succeeded on attempt ``attempt``."""
        start, cause = self.down if self.down is not None else (at_s, "")
        gap = Gap(start, at_s, cause, "cog")
        self.down = None
        self.gaps.append(gap)
        self.events.append(LinkEvent("reconnected", attempt=attempt))
        return gap

    def ended(self, at_s: float) -> None:
        """The meeting stops at ``at_s``: an outage still under way is its last silence,
        from when it began to the end of the files."""
        if self.down is not None:
            start, cause = self.down
            self.unfinished = Gap(start, max(start, at_s), cause, "stop")
            self.down = None

    def moved(self, channel_name: str) -> None:
        self.events.append(LinkEvent("moved", detail=channel_name))

    # ------------------------------------------------------------------ read
    @property
    def reconnects(self) -> int:
        return len(self.gaps)

    @property
    def silent_s(self) -> float:
        return sum(g.seconds for g in self.gaps)

    def status_lines(self, now_s: float) -> list[str]:
        """``[p]record status``: a reconnect under way, how many there were and what they cost."""
        lines: list[str] = []
        if self.down is not None:
            lines.append(_("⚠️ Reconnecting to voice now ({why}), for {seconds} s so far.").format(
                why=self.down[1] or _("no reason given"), seconds=_seconds(max(0.0, now_s - self.down[0]))))
        if self.gaps:
            last = self.gaps[-1]
            if len(self.gaps) == 1:
                lines.append(_("Reconnects: 1, {seconds} s without audio (at {at}).").format(
                    seconds=_seconds(self.silent_s), at=clock_duration(last.start_s * 1000)))
            else:
                lines.append(_("Reconnects: {count}, {seconds} s without audio in all (the last at {at}).").format(
                    count=len(self.gaps), seconds=_seconds(self.silent_s), at=clock_duration(last.start_s * 1000)))
        if self.events:
            lines.append(_("Events: {events}.").format(events="; ".join(str(e) for e in self.events[-3:])))
        return lines

    def result_line(self) -> Optional[str]:
        """The final result message's note on the gaps (None: the connection never dropped)."""
        lines = [line for line in (self._gaps_line(), self._unfinished_line()) if line]
        return "\n".join(lines) if lines else None

    def _unfinished_line(self) -> Optional[str]:
        gap = self.unfinished
        if gap is None:
            return None
        return _("⚠️ The voice connection was still down when the recording stopped; the files are silent "
                 "for the last {seconds} s (from {at}).").format(seconds=_seconds(gap.seconds),
                                                                 at=clock_duration(gap.start_s * 1000))

    def _gaps_line(self) -> Optional[str]:
        if not self.gaps:
            return None
        spans = ", ".join(_("{seconds} s at {at}").format(seconds=_seconds(g.seconds),
                                                          at=clock_duration(g.start_s * 1000))
                          for g in self.gaps[:10])
        if len(self.gaps) > 10:
            spans += ", …"
        if len(self.gaps) == 1:
            return _("⚠️ The voice connection dropped once and came back; the files are silent there "
                     "({spans}).").format(spans=spans)
        return _("⚠️ The voice connection dropped {count} times and came back each time; the files are "
                 "silent there ({spans}).").format(count=len(self.gaps), spans=spans)
