"""Auto-record: start recording a voice channel when enough members are in it.

``[p]recordingset autorecord <voice channel> [min members]`` keeps a list of rules per
guild in Config. Every couple of seconds this job looks at each rule's channel: when at
least ``min members`` non-bot members who have not opted out are in it, and have been
for :data:`DEBOUNCE_S` without a break, it starts recording as if an admin had typed
``[p]record start`` in the voice channel's own chat (the same consent rules; the start
notice names the rule). Members flickering in and out restart the wait instead of
starting and stopping meetings. The existing auto-stop ends the meeting once the
channel is empty.

An admin's ``[p]record stop`` pauses the channel's rule until the channel empties (the
pause is in Config, so a reload does not start the meeting the admin just stopped).
The rules and pauses survive a reload; the debounce wait starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Callable, Optional

import discord
from redbot.core.i18n import set_contextual_locales_from_guild

from ..core.errors import UserError
from ..core.flows import prefix_for

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from ..core.config import AutoRecordRule
    from ..core.service import RecordingService

__all__ = ["AutoRecordJob", "DEBOUNCE_S", "EVERY_S"]

log = logging.getLogger("red.chunkrecorder.tasks.autorecord")

#: How long a rule's condition must hold before a meeting starts.
DEBOUNCE_S = 15.0
#: How often the rules are looked at.
EVERY_S = 2.0


class AutoRecordJob:
    def __init__(self, bot: "Red", service: "RecordingService", *, every_s: float = EVERY_S,
                 debounce_s: float = DEBOUNCE_S, clock: Optional[Callable[[], float]] = None) -> None:
        self.bot = bot
        self.service = service
        self.every_s = every_s
        self.debounce_s = debounce_s
        self._clock = clock
        #: (guild, channel) → when its rule's condition started to hold.
        self._since: dict[tuple[int, int], float] = {}

    def now(self) -> float:
        return self._clock() if self._clock is not None else self.service.meetings.now()

    async def run(self) -> None:
        await self.bot.wait_until_red_ready()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("An auto-record round failed; trying again")
            await asyncio.sleep(self.every_s)

    async def tick(self) -> None:
        """One look at every rule; starts the meetings that are due."""
        seen: set[tuple[int, int]] = set()
        for guild_id, rules in (await self.service.settings.all_autorecord_rules()).items():
            guild = self.bot.get_guild(guild_id)
            if guild is None:
                continue
            paused = await self.service.settings.autorecord_paused(guild_id)
            for rule in rules:
                seen.add((guild_id, rule.channel_id))
                await self._check(guild, rule, paused)
        for key in [k for k in self._since if k not in seen]:
            del self._since[key]

    async def _check(self, guild: discord.Guild, rule: "AutoRecordRule", paused: set[int]) -> None:
        key = (guild.id, rule.channel_id)
        channel = guild.get_channel(rule.channel_id)
        if not isinstance(channel, discord.VoiceChannel):
            self._since.pop(key, None)
            return
        humans = [m for m in channel.members if not m.bot]
        if rule.channel_id in paused:
            self._since.pop(key, None)
            if not humans:  # the channel emptied: the admin's stop has done its work
                await self.service.settings.set_autorecord_paused(guild.id, rule.channel_id, False)
            return
        eligible = sum(1 for m in humans if self.service.settings.accepts(guild.id, m.id))
        if eligible < rule.min_members or self.service.live(guild.id) is not None:
            self._since.pop(key, None)
            return
        now = self.now()
        since = self._since.setdefault(key, now)
        if now < since:  # the clock was replaced (tests) or stepped back: wait afresh
            since = self._since[key] = now
        if now - since < self.debounce_s:
            return
        del self._since[key]
        await set_contextual_locales_from_guild(self.bot, guild)
        try:
            await self.service.flows.start(guild, channel, author=guild.me, reply_to=channel,
                                           text_channel_id=channel.id, prefix=await prefix_for(self.bot, guild),
                                           rule=rule)
        except UserError as exc:
            log.info("Auto-record of %s in %s did not start: %s", channel.id, guild.id, exc)
