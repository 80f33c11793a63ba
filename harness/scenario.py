"""Who is in the meeting and when: the plan a fake voice channel plays out.

Plans are plain data so a test can state a scenario ("Bob joins at 1.5 s, Carol's
client reconnects at 3 s") and later compute what each recording must contain from
the same plan, without reading the harness's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from .sources import FRAME_S, Source

__all__ = ["SpeakerPlan", "frame_at"]


def frame_at(t: float) -> int:
    """The 20 ms frame index a time falls on (times are rounded to the frame grid)."""
    return round(t / FRAME_S)


@dataclass
class SpeakerPlan:
    """One member of the fake voice channel.

    ``join_at``/``leave_at`` are seconds on the network's timeline (its t=0 is the
    meeting's t=0 in ``simulate``). ``reconnects`` are instants at which the
    member's client drops off and comes back ``reconnect_gap_s`` later with a new
    SSRC and fresh RTP sequence/timestamp, as Discord clients do after a network
    change; nothing is sent during the gap.
    """

    user_id: int
    source: Source
    name: Optional[str] = None
    join_at: float = 0.0
    leave_at: Optional[float] = None
    reconnects: Sequence[float] = field(default_factory=tuple)
    reconnect_gap_s: float = 0.2
    bot: bool = False

    def __post_init__(self) -> None:
        if self.user_id <= 0:
            raise ValueError(f"user id must be positive, not {self.user_id}")
        if self.name is None:
            self.name = self.source.name
        if self.join_at < 0:
            raise ValueError(f"{self.name}: join time must not be negative")
        if self.leave_at is not None and self.leave_at <= self.join_at:
            raise ValueError(f"{self.name}: leaves at {self.leave_at} s, not after joining at {self.join_at} s")
        if self.reconnect_gap_s < 0:
            raise ValueError(f"{self.name}: reconnect gap must not be negative")
        self.reconnects = tuple(sorted(self.reconnects))
        for r in self.reconnects:
            if r <= self.join_at or (self.leave_at is not None and r >= self.leave_at):
                raise ValueError(f"{self.name}: reconnect at {r} s is outside their time in the channel")

    @property
    def join_frame(self) -> int:
        return frame_at(self.join_at)

    @property
    def leave_frame(self) -> Optional[int]:
        return None if self.leave_at is None else frame_at(self.leave_at)

    def present(self, frame: int) -> bool:
        """In the channel and connected (not inside a reconnect gap) at this frame."""
        if frame < self.join_frame:
            return False
        if self.leave_frame is not None and frame >= self.leave_frame:
            return False
        for r in self.reconnects:
            a = frame_at(r)
            if a <= frame < a + frame_at(self.reconnect_gap_s):
                return False
        return True
