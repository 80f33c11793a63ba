"""``[p]recordings``: what this guild has recorded; promote, inspect, delete, fetch.

Every lookup goes through the service with the guild's id, so an id from another guild
reads as "not found" and nobody can reach another guild's files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redbot.core import commands
from redbot.core.utils.chat_formatting import humanize_number, pagify
from redbot.core.utils.views import SimpleMenu

from ..core.abc import MixinMeta
from ..core.confirm import confirm
from ..core.errors import UserError
from ..core.formatting import (
    MIXED_NOTE,
    chunk_summary,
    clock_duration,
    human_size,
    meeting_line,
    member_name,
    recording_line,
    status_word,
    timestamp,
)
from ..core.permissions import is_guild_admin
from ..objects.errors import NotFound
from ..objects.records import Meeting, MeetingStatus, Recording, RecordingKind

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.commands import Context

__all__ = ["RecordingsCommands", "PAGE_SIZE"]

#: Meetings per page of ``[p]recordings list``.
PAGE_SIZE = 5
#: Characters of one page: under Discord's 2,000 with room for the footer.
PAGE_CHARS = 1800
CONFIRM_TIMEOUT_S = 30.0


class RecordingsCommands(MixinMeta):
    @commands.group(name="recordings")
    @commands.guild_only()
    async def recordings(self, ctx: "Context") -> None:
        """This server's recordings."""

    @recordings.command(name="list")
    @commands.admin_or_permissions(manage_guild=True)
    async def recordings_list(self, ctx: "Context", page: int = 1) -> None:
        """Meetings and their files, newest first. Example: `[p]recordings list 2`."""
        assert ctx.guild is not None
        _, total = await self.service.meetings_page(ctx.guild.id, limit=1)
        if total == 0:
            await ctx.send("No recordings in this server yet.")
            return
        groups = -(-total // PAGE_SIZE)
        if not 1 <= page <= groups:
            raise UserError(f"Page {page} does not exist: there {'is' if groups == 1 else 'are'} "
                            f"{groups} page{'s' if groups != 1 else ''}.")
        # Each group of PAGE_SIZE meetings is one page, or several when its text is long:
        # pagify cuts between lines, so no speaker or id is ever dropped.
        bodies: list[str] = []
        first_of_group: list[int] = []
        for index in range(groups):
            meetings, _ = await self.service.meetings_page(ctx.guild.id, limit=PAGE_SIZE, offset=index * PAGE_SIZE)
            blocks = []
            for meeting in meetings:
                channel = ctx.guild.get_channel(meeting.channel_id)
                lines = [meeting_line(ctx.guild, meeting, channel.name if channel else None)]
                for rec in await self.service.recordings_of(meeting):
                    lines.append(f"  • {recording_line(ctx.guild, rec)}")
                blocks.append("\n".join(lines))
            first_of_group.append(len(bodies))
            bodies.extend(pagify("\n".join(blocks), delims=["\n"], page_length=PAGE_CHARS))
        pages = [
            f"{body}\nPage {i + 1}/{len(bodies)} · {humanize_number(total)} meetings · "
            f"`{ctx.clean_prefix}recordings info <id>` for details"
            for i, body in enumerate(bodies)
        ]
        if len(pages) == 1:
            await ctx.send(pages[0])
            return
        await SimpleMenu(pages, timeout=120, page_start=first_of_group[page - 1]).start(ctx)

    @recordings.command(name="promote")
    @commands.admin_or_permissions(manage_guild=True)
    async def recordings_promote(self, ctx: "Context", meeting_id: str) -> None:
        """Finish a meeting a crash or failure left behind. Example: `[p]recordings promote 3f2a9c0d1e4b5a67`."""
        assert ctx.guild is not None
        meeting = await self._meeting(ctx, meeting_id)
        live = self.service.live(ctx.guild.id)
        if live is not None and live.meeting_id == meeting.id:
            raise UserError(f"Meeting `{meeting.id}` is being recorded right now; `{ctx.clean_prefix}record stop` finishes it.")
        if meeting.status is MeetingStatus.PROMOTED:
            raise UserError(f"Meeting `{meeting.id}` is already done; `{ctx.clean_prefix}recordings info {meeting.id}` shows its files.")
        await self.service.flows.promote_and_post(ctx.guild, ctx.channel, meeting)

    @recordings.command(name="info")
    @commands.admin_or_permissions(manage_guild=True)
    async def recordings_info(self, ctx: "Context", recording_or_meeting_id: str) -> None:
        """Details of a recording or a meeting. Example: `[p]recordings info 3f2a9c0d1e4b5a67`."""
        assert ctx.guild is not None
        ident = self._clean_id(recording_or_meeting_id)
        try:
            rec = await self.service.recording(ctx.guild.id, ident)
        except NotFound:
            meeting = await self._meeting(ctx, ident)
            await ctx.send(await self._meeting_info(ctx, meeting))
            return
        meeting = await self.service.meeting(ctx.guild.id, rec.meeting_id)
        channel = ctx.guild.get_channel(meeting.channel_id)
        lines = [
            f"**Recording `{rec.id}`**",
            f"Speaker: {'Mixed (everyone)' if rec.kind is RecordingKind.MIXED else member_name(ctx.guild, rec.user_id)}",
            f"Meeting: `{meeting.id}` in **{channel.name if channel else meeting.channel_id}**, "
            f"started {timestamp(meeting.started_at)}",
            f"Length: {clock_duration(rec.duration_in_ms)} · Size: {human_size(rec.size_bytes)} · "
            f"Made: {timestamp(rec.created_at)}",
            f"File: `{rec.filename}` · SHA-256: `{rec.sha256[:16]}…`",
        ]
        if rec.kind is RecordingKind.MIXED:
            lines.append(MIXED_NOTE)
        if await ctx.bot.is_owner(ctx.author):
            lines.append(f"Path (owner only): `{rec.path}`")
        await ctx.send("\n".join(lines))

    async def _meeting_info(self, ctx: "Context", meeting: Meeting) -> str:
        assert ctx.guild is not None
        channel = ctx.guild.get_channel(meeting.channel_id)
        recs = await self.service.recordings_of(meeting)
        counts = await self.service.chunk_counts(meeting.id)
        lines = [
            f"**Meeting `{meeting.id}`** in **{channel.name if channel else meeting.channel_id}** "
            f"({status_word(meeting.status)})",
            f"Started {timestamp(meeting.started_at)} by {member_name(ctx.guild, meeting.started_by)}"
            + (f", ended {timestamp(meeting.ended_at)}" if meeting.ended_at else ""),
            f"Settings: {meeting.strategy.value}, {meeting.flush_interval_s:g} s chunks, "
            f"{meeting.bitrate // 1000} kb/s, {'stereo' if meeting.channels == 2 else 'mono'}",
        ]
        if counts.total:
            lines.append(f"Chunks: {chunk_summary(counts)}")
        lines += [f"• {recording_line(ctx.guild, r)}" for r in recs] or ["No files yet."]
        if any(r.kind is RecordingKind.MIXED for r in recs):
            lines.append(MIXED_NOTE)
        if meeting.status in (MeetingStatus.INTERRUPTED, MeetingStatus.FAILED):
            lines.append(f"`{ctx.clean_prefix}recordings promote {meeting.id}` finishes it.")
        return "\n".join(lines)

    @recordings.command(name="delete")
    @commands.admin_or_permissions(manage_guild=True)
    async def recordings_delete(self, ctx: "Context", recording_or_meeting_id: str) -> None:
        """Delete a recording, or a whole meeting, after you confirm. Example: `[p]recordings delete 3f2a9c0d1e4b5a67`."""
        assert ctx.guild is not None
        ident = self._clean_id(recording_or_meeting_id)
        rec: Recording | None
        try:
            rec = await self.service.recording(ctx.guild.id, ident)
        except NotFound:
            rec = None
        if rec is not None:
            what = f"the recording `{rec.id}` ({member_name(ctx.guild, rec.user_id) if rec.user_id else 'Mixed'}, " \
                   f"{clock_duration(rec.duration_in_ms)}, {human_size(rec.size_bytes)})"
        else:
            meeting = await self._meeting(ctx, ident)
            live = self.service.live(ctx.guild.id)
            if live is not None and live.meeting_id == meeting.id:
                raise UserError("That meeting is being recorded right now; stop it first.")
            if meeting.status is MeetingStatus.STOPPING:
                raise UserError("That meeting is being finished right now; try again when it is done.")
            files = await self.service.recordings_of(meeting)
            what = f"the meeting `{meeting.id}` and its {len(files)} file{'s' if len(files) != 1 else ''}"
        answer = await confirm(ctx, f"Delete {what}? This cannot be undone. Press a button, or type `yes` to "
                                    f"confirm or `no` to keep it.", timeout=CONFIRM_TIMEOUT_S)
        if answer is None:
            await ctx.send("No answer, so nothing was deleted.")
            return
        if not answer:
            await ctx.send("Kept: nothing was deleted.")
            return
        if rec is not None:
            await self.service.delete_recording(ctx.guild.id, rec.id)
            await ctx.send(f"Deleted the recording `{rec.id}`.")
        else:
            removed = await self.service.delete_meeting(ctx.guild.id, ident)
            n = removed.files
            await ctx.send(f"Deleted the meeting `{ident}` ({n} file{'s' if n != 1 else ''}).")

    @recordings.command(name="get")
    async def recordings_get(self, ctx: "Context", recording_id: str) -> None:
        """Upload a recording here when it fits. Example: `[p]recordings get 3f2a9c0d1e4b5a67`.

        Admins can fetch any of this server's recordings; members their own.
        """
        assert ctx.guild is not None
        ident = self._clean_id(recording_id)
        try:
            rec = await self.service.recording(ctx.guild.id, ident)
        except NotFound:
            raise UserError(f"No recording `{ident}` in this server.") from None
        own = rec.kind is RecordingKind.PER_USER and rec.user_id == ctx.author.id
        if not own and not await is_guild_admin(ctx.bot, ctx.author):
            raise UserError("You can fetch your own recordings; others need Manage Server or the bot's admin role.")
        await self.service.flows.upload(ctx.guild, ctx.channel, [rec])

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _clean_id(text: str) -> str:
        return text.strip().strip("`").lower()

    async def _meeting(self, ctx: "Context", ident: str) -> Meeting:
        assert ctx.guild is not None
        ident = self._clean_id(ident)
        try:
            return await self.service.meeting(ctx.guild.id, ident)
        except NotFound:
            raise UserError(f"No recording or meeting `{ident}` in this server; "
                            f"`{ctx.clean_prefix}recordings list` shows them.") from None
