"""``[p]record``: start, stop and watch the guild's recording; members opt out or in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from redbot.core import commands
from redbot.core.utils.chat_formatting import humanize_timedelta

from ..core.abc import MixinMeta
from ..core.errors import ControlDenied, UserError
from ..core.formatting import chunk_summary, human_size, names
from ..core.permissions import may_control

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.commands import Context

__all__ = ["RecordCommands", "ControlDenied", "can_control"]


def can_control():
    """Start and stop: the guild's recorder role, Manage Server, or Red's admin/owner."""

    async def predicate(ctx: "Context") -> bool:
        if ctx.guild is None:
            raise commands.NoPrivateMessage()
        settings = await ctx.cog.service.settings.guild(ctx.guild.id)
        if await may_control(ctx.bot, ctx.author, settings):
            return True
        role = ctx.guild.get_role(settings.recorder_role) if settings.recorder_role else None
        who = f"the **{role.name}** role or " if role is not None else ""
        raise ControlDenied(f"Only members with {who}Manage Server (or the bot's admin role) can start or stop recordings here.")

    return commands.check(predicate)


class RecordCommands(MixinMeta):
    @commands.group(name="record")
    @commands.guild_only()
    async def record(self, ctx: "Context") -> None:
        """Record a voice channel, per speaker and mixed."""

    @record.command(name="start")
    @can_control()
    async def record_start(self, ctx: "Context", *, channel: discord.VoiceChannel = None) -> None:
        """Join your voice channel (or the one named) and start recording.

        Examples: `[p]record start` while you are in voice, or `[p]record start Standup`.
        """
        assert ctx.guild is not None
        if channel is None:
            voice = getattr(ctx.author, "voice", None)
            if voice is None or voice.channel is None:
                raise UserError(
                    f"Join a voice channel first, or name one: `{ctx.clean_prefix}record start <channel>`."
                )
            channel = voice.channel
        await self.service.flows.start(ctx.guild, channel, author=ctx.author, reply_to=ctx,
                                       text_channel_id=ctx.channel.id, prefix=ctx.clean_prefix)

    @record.command(name="stop")
    @can_control()
    async def record_stop(self, ctx: "Context") -> None:
        """Stop recording and post the files."""
        assert ctx.guild is not None
        if self.service.live(ctx.guild.id) is None:
            raise UserError("Nothing is being recorded in this server.")
        await self.service.flows.finish(ctx.guild, ctx.channel, reason=f"stopped by {ctx.author.display_name}")

    @record.command(name="status")
    async def record_status(self, ctx: "Context") -> None:
        """What is being recorded: channel, time, speakers, chunks and disk used."""
        assert ctx.guild is not None
        live = self.service.live(ctx.guild.id)
        if live is None:
            await ctx.send("Nothing is being recorded in this server.")
            return
        snap = live.session.snapshot()
        elapsed = snap.elapsed_s or (self.service.meetings.now() - live.started_at)
        counts = await self.service.chunk_counts(live.meeting_id)
        disk = await self.service.disk_usage(live.meeting_id)
        lines = [
            f"🔴 Recording **{live.channel_name}** for "
            f"{humanize_timedelta(seconds=int(elapsed)) or '0 seconds'} (meeting `{live.meeting_id}`).",
            f"Speakers heard: {names(ctx.guild, [s for s in sorted(snap.speakers) if s])}.",
            f"Chunks: {chunk_summary(counts)}.",
            f"Disk used: {human_size(disk)} on disk, {human_size(snap.buffered_bytes)} in memory.",
        ]
        if live.ending:
            lines.append("It is stopping now.")
        if live.events:
            lines.append("Events: " + "; ".join(live.events[-3:]) + ".")
        await ctx.send("\n".join(lines))

    @record.command(name="optout")
    async def record_optout(self, ctx: "Context") -> None:
        """Never record my voice in this server."""
        assert ctx.guild is not None
        await self.service.settings.set_opt_out(ctx.guild.id, ctx.author.id, True)
        live = self.service.live(ctx.guild.id)
        now = " From now on your audio is dropped from the current recording too." if live else ""
        await ctx.send(f"Done: I won't record your voice in this server.{now} `{ctx.clean_prefix}record optin` undoes it.")

    @record.command(name="optin")
    async def record_optin(self, ctx: "Context") -> None:
        """Allow recording my voice in this server again."""
        assert ctx.guild is not None
        await self.service.settings.set_opt_out(ctx.guild.id, ctx.author.id, False)
        await ctx.send("Done: your voice will be recorded again when a recording runs in this server.")
