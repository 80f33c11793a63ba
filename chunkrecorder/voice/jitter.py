"""Per-SSRC reorder buffer: UDP delivers late, twice, out of order, or not at all.

Packets are released strictly in sequence order. A stream's first packet waits the
same way (it may have overtaken an earlier one). A packet that arrives after its
successors is held until the gap before it fills, or until waiting longer would
cost more than the packet is worth: ``depth`` packets are queued behind the gap, or
the oldest has waited ``max_delay_s``. Then the gap is given up (the receiver
conceals short gaps and counts the rest as lost) and anything arriving for it later
is "late" and dropped, because the frames after it have already gone downstream.

Sequence numbers here are *extended* (unwrapped past 65535) by the caller. A jump of
more than ``RESYNC_GAP`` either way means the sender restarted its counter, not
loss: the buffer releases what it holds and starts over from the new number.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

#: A jump this large is a restarted sender, not lost packets (~20 s of audio).
RESYNC_GAP = 1000
#: How many released sequence numbers are remembered to tell duplicates from late packets.
_RECENT = 256


class Arrival(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(slots=True)
class Slot:
    """One packet waiting for its turn; ``payload`` is the frame after transport decryption."""

    seq: int
    timestamp: int
    arrival: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class Release:
    """``slot`` goes downstream now; ``missing`` packets before it never arrived."""

    slot: Slot
    missing: int


class ReorderBuffer:
    """Holds one SSRC's packets until they can be released in order. Not thread-safe."""

    __slots__ = ("depth", "max_delay_s", "next_seq", "_held", "_recent", "_recent_order")

    def __init__(self, *, depth: int = 5, max_delay_s: float = 0.2) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self.max_delay_s = max_delay_s
        self.next_seq: int | None = None
        self._held: dict[int, Slot] = {}
        self._recent: set[int] = set()
        self._recent_order: deque[int] = deque()

    @property
    def held(self) -> int:
        return len(self._held)

    def classify(self, seq: int) -> Arrival:
        """Whether ``seq`` is worth decrypting further (call before the DAVE layer)."""
        if seq in self._held or seq in self._recent:
            return Arrival.DUPLICATE
        if self.next_seq is not None and self.next_seq - RESYNC_GAP <= seq < self.next_seq:
            return Arrival.LATE
        return Arrival.NEW

    def push(self, slot: Slot) -> list[Release]:
        """Add a NEW packet; returns what a sender restart forced out (usually nothing)."""
        out: list[Release] = []
        if self.next_seq is not None and abs(slot.seq - self.next_seq) > RESYNC_GAP:
            out = self.drain()
            self.next_seq = None
        self._held[slot.seq] = slot
        return out

    def pop_ready(self, now: float) -> list[Release]:
        """Everything that can go downstream at time ``now``."""
        return self._release(now, force=False)

    def drain(self) -> list[Release]:
        """Everything held, gaps and all (stop, SSRC change, sender restart)."""
        return self._release(0.0, force=True)

    def _release(self, now: float, *, force: bool) -> list[Release]:
        out: list[Release] = []
        held = self._held
        if held and self.next_seq is None:
            # A stream's first packet may itself have overtaken an earlier one: start
            # from the lowest sequence seen once the same wait as for a gap is over.
            if not force and not self._waited(now):
                return out
            self.next_seq = min(held)
        while held:
            assert self.next_seq is not None
            slot = held.pop(self.next_seq, None)
            missing = 0
            if slot is None:
                if not force and not self._waited(now):
                    break
                first = min(held)
                slot = held.pop(first)
                missing = first - self.next_seq
            out.append(Release(slot, missing))
            self._remember(slot.seq)
            self.next_seq = slot.seq + 1
        return out

    def _waited(self, now: float) -> bool:
        """Whether the held packets have waited long enough for whatever is missing."""
        held = self._held
        if len(held) >= self.depth:
            return True
        return now - min(s.arrival for s in held.values()) >= self.max_delay_s

    def _remember(self, seq: int) -> None:
        self._recent.add(seq)
        self._recent_order.append(seq)
        if len(self._recent_order) > _RECENT:
            self._recent.discard(self._recent_order.popleft())
