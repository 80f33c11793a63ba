"""The impaired UDP path between the speakers' clients and the bot.

Every impairment draws from its own random stream derived from the seed, so turning
one on does not change what another does: a run with ``--loss 0.05`` loses the same
packets with or without ``--jitter-ms 30``, which is what makes a failing seed
something one can bisect.

The path only decides fates and arrival times; it never parses a datagram. Corruption
is delegated to the wire (``WireGroup.corrupt``), which knows how to make a packet
whose MAC fails, that is cut short, or that decrypts to Opus bytes libopus rejects.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Arrival", "Fate", "Impairments", "NetworkPath", "PathStats", "CorruptKind"]


class CorruptKind(str, enum.Enum):
    BAD_MAC = "bad_mac"
    TRUNCATED = "truncated"
    GARBAGE_OPUS = "garbage_opus"


class Fate(enum.IntEnum):
    """What happened to one frame of a speaker, as the harness's log records it."""

    NOT_SENT = 0  # quiet, not joined, gone, reconnecting: the client sent nothing
    DELIVERED = 1  # arrived intact (maybe late, reordered or twice)
    LOST = 2  # the network dropped it
    CORRUPT = 3  # arrived, but damaged: the receiver must drop it


@dataclass(frozen=True)
class Impairments:
    """Probabilities per packet, jitter in milliseconds, and the seed of all of them."""

    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    jitter_ms: float = 0.0
    bad_mac: float = 0.0
    truncated: float = 0.0
    garbage_opus: float = 0.0
    latency_ms: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate", "bad_mac", "truncated", "garbage_opus"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be a probability between 0 and 1, not {p}")
        if self.corrupt_total > 1.0:
            raise ValueError("the corruption probabilities add up to more than 1")
        if not 0.0 <= self.jitter_ms <= 1000.0:
            raise ValueError(f"--jitter-ms must be between 0 and 1000, not {self.jitter_ms}")
        if not 0.0 <= self.latency_ms <= 5000.0:
            raise ValueError(f"latency must be between 0 and 5000 ms, not {self.latency_ms}")

    @property
    def corrupt_total(self) -> float:
        return self.bad_mac + self.truncated + self.garbage_opus

    @property
    def any(self) -> bool:
        return bool(self.loss or self.reorder or self.duplicate or self.jitter_ms or self.corrupt_total)


@dataclass
class PathStats:
    sent: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    corrupted: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in CorruptKind})

    @property
    def corrupt_total(self) -> int:
        return sum(self.corrupted.values())


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    data: bytes


#: ``corrupt(datagram, kind, rng) -> datagram``: the wire's damage function.
Corrupter = Callable[[bytes, CorruptKind, random.Random], bytes]

#: How far a "reordered" packet is held back: past this many following packets.
_REORDER_FRAMES = (1, 2, 3)
FRAME_S = 0.020


class NetworkPath:
    """Decides, per datagram, whether it arrives, when, how many times and how damaged."""

    def __init__(self, impairments: Impairments, *, corrupt: Optional[Corrupter] = None) -> None:
        self.impairments = imp = impairments
        if imp.corrupt_total and corrupt is None:
            raise ValueError("corruption needs the wire's corrupt function")
        self._corrupt = corrupt
        seed = imp.seed
        self._rng_loss = random.Random(f"{seed}:loss")
        self._rng_reorder = random.Random(f"{seed}:reorder")
        self._rng_dup = random.Random(f"{seed}:duplicate")
        self._rng_jitter = random.Random(f"{seed}:jitter")
        self._rng_corrupt = random.Random(f"{seed}:corrupt")
        self._rng_damage = random.Random(f"{seed}:damage")
        self.stats = PathStats()

    def send(self, t: float, data: bytes) -> tuple[Fate, list[Arrival]]:
        """One datagram leaves a client at ``t``: its fate and its arrivals (0, 1 or 2)."""
        imp = self.impairments
        self.stats.sent += 1
        # Draw every stream once per packet whether or not it is used, so each
        # impairment's choices depend only on the packet's index.
        u_loss = self._rng_loss.random()
        u_reorder = self._rng_reorder.random()
        hold = self._rng_reorder.choice(_REORDER_FRAMES)
        u_dup = self._rng_dup.random()
        dup_gap = self._rng_dup.uniform(0.0, 0.010)
        jitter = self._rng_jitter.uniform(0.0, imp.jitter_ms / 1000.0)
        jitter_dup = self._rng_jitter.uniform(0.0, imp.jitter_ms / 1000.0)
        u_corrupt = self._rng_corrupt.random()

        if u_loss < imp.loss:
            self.stats.lost += 1
            return Fate.LOST, []
        fate = Fate.DELIVERED
        kind = self._corrupt_kind(u_corrupt)
        if kind is not None:
            assert self._corrupt is not None
            data = self._corrupt(data, kind, self._rng_damage)
            self.stats.corrupted[kind.value] += 1
            fate = Fate.CORRUPT
        at = t + imp.latency_ms / 1000.0 + jitter
        if u_reorder < imp.reorder:
            # Held back past the next `hold` packets of the same sender (plus a hair,
            # so it really lands after them even if they jitter by the same amount).
            at += hold * FRAME_S + 0.001
            self.stats.reordered += 1
        arrivals = [Arrival(at, data)]
        if u_dup < imp.duplicate:
            self.stats.duplicates += 1
            arrivals.append(Arrival(t + imp.latency_ms / 1000.0 + jitter_dup + dup_gap, data))
        return fate, arrivals

    def _corrupt_kind(self, u: float) -> Optional[CorruptKind]:
        imp = self.impairments
        edge = 0.0
        for kind, p in ((CorruptKind.BAD_MAC, imp.bad_mac), (CorruptKind.TRUNCATED, imp.truncated),
                        (CorruptKind.GARBAGE_OPUS, imp.garbage_opus)):
            edge += p
            if u < edge:
                return kind
        return None
