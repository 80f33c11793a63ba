"""discord.py's events and cog hooks: the bot's voice state, deleted channels, command errors."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import discord
from discord.ext import commands as dpy_commands
from redbot.core import commands

from ..core.abc import MixinMeta
from ..core.errors import explain

__all__ = ["DiscordEvents"]


class DiscordEvents(MixinMeta):
    @commands.Cog.listener()
    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        me = self.bot.user
        if me is None or member.id != me.id:
            # Members coming and going: the ticker watches the channel's head count; a
            # member who joins the recorded channel is told it records.
            if after.channel is not None and (before.channel is None or before.channel.id != after.channel.id):
                await self.service.flows.member_joined(member, after.channel.id)
            return
        # A kick, a move, or only half of discord.py's own reconnect (it leaves and
        # rejoins): the meeting's voice link tells them apart (MeetingManager.bot_voice_state).
        self.service.meetings.bot_voice_state(member.guild.id, after.channel)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        self.service.meetings.channel_deleted(channel.guild.id, channel.id)

    async def cog_command_error(self, ctx: dpy_commands.Context[Any], error: Exception) -> None:
        """Every error a user can cause becomes one line; the rest goes to the log."""
        ctx = cast(commands.Context, ctx)  # every context of a Red bot is Red's
        line = await explain(ctx, error)
        if line is None:
            # Red's own handler takes ``unhandled_by_cog``; discord.py's declaration does not.
            await self.bot.on_command_error(  # type: ignore[call-arg]
                ctx, cast(commands.CommandError, error), unhandled_by_cog=True)
            return
        if line:
            with contextlib.suppress(discord.HTTPException):
                text = line.replace("[p]", ctx.clean_prefix)
                if len(text) > 2000:  # a guard: Discord drops a longer message, and the member sees nothing
                    text = text[:1999] + "…"
                await ctx.send(text)
