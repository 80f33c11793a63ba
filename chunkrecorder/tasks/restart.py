"""Once after a load: what a crash (or an unload mid-meeting) left behind.

The nickname goes back to what it was, and each interrupted meeting is finished if its
guild asks for that (``autopromote``), posted in the channel it was started from; if
not, that channel is told how an admin finishes it. The recorder has already made every
row movable again (``Recorder.start``); the promotion itself is the pipeline's.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import discord
from redbot.core.i18n import set_contextual_locales_from_guild

from ..core.flows import prefix_for
from ..i18n import _
from ..objects.results import RecoveryReport

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from ..core.service import RecordingService

__all__ = ["RestartJob"]

log = logging.getLogger("red.chunkrecorder.tasks.restart")


class RestartJob:
    def __init__(self, bot: "Red", service: "RecordingService", report: RecoveryReport) -> None:
        self.bot = bot
        self.service = service
        self.report = report

    async def run(self) -> None:
        await self.bot.wait_until_red_ready()
        service = self.service
        channels: dict[str, int] = {}
        for guild_id, active in (await service.settings.all_active()).items():
            if guild_id in service.meetings.live:
                continue
            if active.meeting_id and active.text_channel_id:
                channels[active.meeting_id] = active.text_channel_id
            guild = self.bot.get_guild(guild_id)
            if guild is not None:
                await service.flows.restore_nick(guild)
            await service.settings.clear_active(guild_id)
        for meeting_id in self.report.awaiting_promotion:
            await self._finish(meeting_id, channels.get(meeting_id))

    async def _finish(self, meeting_id: str, channel_id: int | None) -> None:
        service = self.service
        try:
            meeting = await service.recorder.library.get_meeting(meeting_id)
        except Exception:
            return
        guild = self.bot.get_guild(meeting.guild_id)
        await set_contextual_locales_from_guild(self.bot, guild)  # this task serves every guild in turn
        channel = guild.get_channel(channel_id) if guild is not None and channel_id else None
        target = channel if isinstance(channel, discord.abc.Messageable) else None
        settings = await service.settings.guild(meeting.guild_id)
        if not settings.auto_promote:
            if target is not None:
                with contextlib.suppress(discord.HTTPException):
                    command = f"{await prefix_for(self.bot, guild)}recordings promote {meeting.id}"
                    await target.send(_(
                        "The recording `{meeting_id}` was interrupted by a restart. Its audio is kept: "
                        "`{command}` finishes it."
                    ).format(meeting_id=meeting.id, command=command))
            return
        try:
            if target is not None and guild is not None:
                await service.flows.promote_and_post(guild, target, meeting, after_restart=True)
            else:
                service.flows.events.meeting_promoted(await service.recorder.promote(meeting.id))
        except Exception:
            log.exception("Promoting interrupted meeting %s failed", meeting.id)
