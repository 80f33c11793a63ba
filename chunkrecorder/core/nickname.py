"""The "[REC]" nickname prefix that shows everyone in the server a recording is on.

Members may not watch the text channel where recording was announced; the bot's name
in the voice channel is the one place they all see. The nickname before recording is
kept in Config (not only in memory), so a crash mid-meeting is followed by a restore
on the next load instead of a bot stuck as "[REC] ...".
"""

from __future__ import annotations

import logging
from typing import Optional

import discord

from ..i18n import _

__all__ = ["PREFIX", "RecNickname"]

log = logging.getLogger("red.chunkrecorder.nickname")

PREFIX = "[REC] "
_MAX_NICK = 32


class RecNickname:
    """Adds and removes the prefix; never raises (a nickname is a courtesy, not a must)."""

    @staticmethod
    def can_change(guild: discord.Guild) -> bool:
        me = guild.me
        return me is not None and me.guild_permissions.change_nickname

    @staticmethod
    def recording_nick(current: Optional[str], username: str) -> str:
        base = current if current is not None else username
        if base.startswith(PREFIX):
            return base[:_MAX_NICK]
        return (PREFIX + base)[:_MAX_NICK]

    async def apply(self, guild: discord.Guild) -> tuple[bool, Optional[str]]:
        """Prefix the bot's nickname; returns (changed, nickname before)."""
        me = guild.me
        if me is None or not self.can_change(guild):
            return False, None
        before = me.nick
        if before is not None and before.startswith(PREFIX):
            return False, None  # left over from a crash: the restore will fix it
        try:
            await me.edit(nick=self.recording_nick(before, me.name), reason=_("Recording started"))
        except discord.HTTPException as exc:
            log.info("Could not set the [REC] nickname in %s: %s", guild.id, exc)
            return False, None
        return True, before

    async def restore(self, guild: discord.Guild, before: Optional[str]) -> bool:
        """Put back ``before`` if the nickname still carries our prefix."""
        me = guild.me
        if me is None or me.nick is None or not me.nick.startswith(PREFIX):
            return False
        try:
            await me.edit(nick=before, reason=_("Recording stopped"))
        except discord.HTTPException as exc:
            log.info("Could not restore the nickname in %s: %s", guild.id, exc)
            return False
        return True
