"""The hourly sweep: each guild's retention, then leftover temp files (bot-wide TTL).

What may be removed and what never is, is the pipeline's ``Cleaner``'s rule; this only
decides when, and reads each guild's retention from Config.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from ..core.service import RecordingService

__all__ = ["CleanupJob"]

log = logging.getLogger("red.chunkrecorder.tasks.cleanup")

#: How often retention and leftover temp files are swept.
CLEANUP_EVERY_S = 3600.0


class CleanupJob:
    def __init__(self, bot: "Red", service: "RecordingService", *, every_s: float = CLEANUP_EVERY_S) -> None:
        self.bot = bot
        self.service = service
        self.every_s = every_s

    async def run(self) -> None:
        await self.bot.wait_until_red_ready()
        while True:
            try:
                report = await self.service.cleanup()
                if report.recordings_deleted or report.files_deleted:
                    log.info("cleanup: %s", report)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Cleanup failed; trying again later")
            await asyncio.sleep(self.every_s)
