"""A bot-wide budget for the audio live meetings hold in memory.

Each speaker of a live meeting holds about three windows of audio (the window being
recorded, the next one its late frames reach into, and the previous one's tail that
primes the encoder: ``timeline.TrackBuffer``), so memory grows with speakers times the
flush interval. One guild's admin choosing long chunks, or many meetings at once, must
not cost the whole bot its memory (issue 8 measured ~111 MB per mono speaker at a
300 s flush). So:

* a speaker is admitted with a reservation of those three windows
  (:func:`speaker_cost`), only if every reservation together stays within the limit;
  a speaker who does not fit is refused (their frames dropped and counted in the
  session's snapshot) until a reservation is released;
* ``Recorder.start_meeting`` refuses a meeting in one sentence when not even one more
  speaker would fit;
* what the buffers really hold is counted too (``held``): while a disk refuses writes, a
  session keeps windows it could not flush (up to its backlog limit), and once ``held``
  passes the limit it gives up its oldest held window instead (counted as lost).

Everything here runs on the event loop (the sessions place and flush there), so plain
integers suffice.
"""

from __future__ import annotations

from ..objects.frames import SAMPLE_RATE
from .timeline import Grid

__all__ = ["AudioBudget", "speaker_cost", "DEFAULT_BUDGET_BYTES"]

#: 512 MiB: about 180 mono speakers at the default 10 s flush, 29 at the 60 s cap.
DEFAULT_BUDGET_BYTES = 512 * 1024 * 1024

#: Windows a speaker's buffer holds in the steady state.
WINDOWS_PER_SPEAKER = 3


def speaker_cost(flush_interval_s: float, channels: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Bytes one speaker's buffer holds in the steady state (int16 samples, three windows)."""
    grid = Grid.for_interval(flush_interval_s, sample_rate)
    return WINDOWS_PER_SPEAKER * grid.chunk_samples * channels * 2


class AudioBudget:
    """Reservations (admission) and holdings (what the buffers really allocated), bot-wide."""

    def __init__(self, limit_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if limit_bytes <= 0:
            raise ValueError("The audio budget must be a positive number of bytes.")
        self.limit = int(limit_bytes)
        self.reserved = 0
        self.held = 0
        self.refused = 0  # speakers refused since start

    def fits(self, cost: int) -> bool:
        return self.reserved + cost <= self.limit

    def reserve(self, cost: int) -> bool:
        """Admit one speaker of ``cost`` bytes; False (and counted) if it does not fit."""
        if not self.fits(cost):
            self.refused += 1
            return False
        self.reserved += cost
        return True

    def release(self, cost: int) -> None:
        self.reserved = max(0, self.reserved - cost)

    def allocated(self, delta: int) -> None:
        """A buffer allocated (positive) or freed (negative) ``delta`` bytes."""
        self.held = max(0, self.held + delta)

    def reset(self) -> None:
        """Nothing is live any more (the recorder closed)."""
        self.reserved = self.held = 0

    @property
    def over(self) -> bool:
        """Whether the buffers hold more than the limit (a backlog of unwritten windows)."""
        return self.held > self.limit
