"""Clocks the harness runs a meeting on.

The pipeline and the receive layer take ``clock: Callable[[], float]``; everything
that times a meeting reads it, nothing reads ``time`` directly. Handing them a
:class:`SimulatedClock` therefore lets an hour of meeting run as fast as the CPU
encodes it, and lets a test put a datagram's arrival at an exact instant (jitter
is then a property of the scenario, not of the machine's load). :class:`WallClock`
is the same interface on ``time.monotonic`` for ``--realtime``.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SimulatedClock", "WallClock"]


class SimulatedClock:
    """Seconds since an arbitrary origin, moved only by :meth:`set` and :meth:`advance`.

    Time never goes backwards: a scheduler that asks for an earlier instant is a
    bug in the scheduler, and silently rewinding would let two datagrams arrive
    "before" each other in two different orders depending on who read the clock.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> float:
        if t < self._now:
            raise ValueError(f"simulated time cannot go back from {self._now:.6f} to {t:.6f}")
        self._now = float(t)
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("cannot advance by a negative duration")
        self._now += seconds
        return self._now

    async def sleep_until(self, t: float) -> None:
        """Jump to ``t`` and let other tasks run once, as a real sleep would."""
        if t > self._now:
            self._now = t
        await asyncio.sleep(0)


class WallClock:
    """``time.monotonic`` shifted so the meeting starts at 0; same interface as SimulatedClock."""

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._origin

    def now(self) -> float:
        return self()

    async def sleep_until(self, t: float) -> None:
        delay = t - self()
        await asyncio.sleep(delay if delay > 0 else 0)
