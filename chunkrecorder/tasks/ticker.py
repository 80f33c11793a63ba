"""The tick: what keeps every live meeting flushing and watched.

One loop for all guilds. Each tick first releases frames the receivers hold behind gaps
that will not fill (so they reach this tick's flush), then lets the recorder flush every
window that is due, then ends meetings that reached their maximum length or sat empty.
The work inside a tick is off the event loop (threads, encoder processes); the loop
itself only sequences it.
"""

from __future__ import annotations

import asyncio
import logging

from ..core.meetings import MeetingManager

__all__ = ["Ticker"]

log = logging.getLogger("red.chunkrecorder.tasks.ticker")

#: How often live meetings are advanced: often enough that a window is flushed well
#: within its jitter margin (0.5 s), rarely enough to cost nothing when idle.
TICK_S = 0.2


class Ticker:
    def __init__(self, meetings: MeetingManager, *, interval_s: float = TICK_S) -> None:
        self.meetings = meetings
        self.interval_s = interval_s

    async def tick(self) -> None:
        """One round; never raises (a failing round is logged and the next one tries again)."""
        try:
            await self.meetings.poll()
            if self.meetings.live:
                await self.meetings.recorder.tick()
            self.meetings.watch()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("A tick of the live meetings failed")

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval_s)
