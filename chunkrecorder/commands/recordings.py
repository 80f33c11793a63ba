"""``[p]recordings``: what this guild has recorded; promote, inspect, delete, fetch.

Every lookup goes through the service with the guild's id, so an id from another guild
reads as "not found" and nobody can reach another guild's files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

import discord
from discord import app_commands
from redbot.core import commands
from redbot.core.utils.chat_formatting import escape, humanize_number, pagify
from redbot.core.utils.views import SimpleMenu

from ..core.abc import MixinMeta
from ..core.confirm import confirm
from ..core.errors import UserError
from ..core.flows import text_prefix
from ..core.formatting import (
    channel_label,
    chunk_summary,
    clock_duration,
    gap_lines,
    human_size,
    meeting_line,
    member_name,
    mixed_note,
    recording_line,
    status_word,
    timestamp,
)
from ..core.echo import echo
from ..core.permissions import is_guild_admin
from ..core.settings import parse_post_format
from ..i18n import _
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
    # Hybrid: `list` and `get` are slash commands too (once the owner runs `[p]slash enable
    # recordings` and `[p]slash sync`); the others stay prefix-only. The slash form's
    # description is the help's first line (so no `[p]` example there) and the options'
    # come from `app_commands.describe`: what Discord shows, at most 100 characters, in
    # English (Red sets no app-command translator); the replies are translated as always.
    @commands.group(name="recordings", cls=commands.HybridGroup)
    @commands.guild_only()
    async def recordings(self, ctx: "Context") -> None:
        """This server's recordings."""

    @recordings.command(name="list")
    @commands.admin_or_permissions(manage_guild=True)
    @app_commands.describe(page="Which page of meetings, newest first (1 is the newest).")
    async def recordings_list(self, ctx: "Context", page: int = 1) -> None:
        """Meetings and their files, newest first.

        Example: `[p]recordings list 2`.
        """
        assert ctx.guild is not None
        _meetings, total = await self.service.meetings_page(ctx.guild.id, limit=1)
        if total == 0:
            await ctx.send(_("No recordings in this server yet."))
            return
        groups = -(-total // PAGE_SIZE)
        if not 1 <= page <= groups:
            if groups == 1:
                raise UserError(_("Page {page} does not exist: there is 1 page.").format(page=page))
            raise UserError(_("Page {page} does not exist: there are {pages} pages.").format(page=page, pages=groups))
        # Each group of PAGE_SIZE meetings is one page, or several when its text is long:
        # pagify cuts between lines, so no speaker or id is ever dropped.
        bodies: list[str] = []
        first_of_group: list[int] = []
        for index in range(groups):
            meetings, _total = await self.service.meetings_page(ctx.guild.id, limit=PAGE_SIZE,
                                                                 offset=index * PAGE_SIZE)
            blocks = []
            for meeting in meetings:
                channel = ctx.guild.get_channel(meeting.channel_id)
                lines = [meeting_line(ctx.guild, meeting, channel.name if channel else None)]
                gaps = len(await self.service.gaps(meeting))
                if gaps:
                    lines[0] += " " + (_("⚠️ 1 gap") if gaps == 1 else _("⚠️ {gaps} gaps").format(gaps=gaps))
                for rec in await self.service.recordings_of(meeting):
                    lines.append(f"  • {recording_line(ctx.guild, rec)}")
                blocks.append("\n".join(lines))
            first_of_group.append(len(bodies))
            bodies.extend(pagify("\n".join(blocks), delims=["\n"], page_length=PAGE_CHARS))
        info = f"{await text_prefix(ctx)}recordings info <id>"  # a prefix command only
        footer = (_("{body}\nPage {page}/{pages} · 1 meeting · `{command}` for details") if total == 1
                  else _("{body}\nPage {page}/{pages} · {meetings} meetings · `{command}` for details"))
        pages: list[Any] = [
            footer.format(body=body, page=i + 1, pages=len(bodies), meetings=humanize_number(total), command=info)
            for i, body in enumerate(bodies)
        ]
        if len(pages) == 1:
            await ctx.send(pages[0])
            return
        await SimpleMenu(pages, timeout=120, page_start=first_of_group[page - 1]).start(ctx)

    @recordings.command(name="promote", with_app_command=False)
    @commands.admin_or_permissions(manage_guild=True)
    async def recordings_promote(self, ctx: "Context", meeting_id: str) -> None:
        """Finish a meeting a crash or failure left behind. Example: `[p]recordings promote 3f2a9c0d1e4b5a67`."""
        assert ctx.guild is not None
        meeting = await self._meeting(ctx, meeting_id)
        live = self.service.live(ctx.guild.id)
        if live is not None and live.meeting_id == meeting.id:
            raise UserError(_("Meeting `{meeting_id}` is being recorded right now; `{command}` finishes it.").format(
                meeting_id=meeting.id, command=f"{ctx.clean_prefix}record stop"))
        if meeting.status is MeetingStatus.PROMOTED:
            if not await self.service.gaps(meeting):
                raise UserError(_("Meeting `{meeting_id}` is already done; `{command}` shows its files.").format(
                    meeting_id=meeting.id, command=f"{ctx.clean_prefix}recordings info {meeting.id}"))
            await self._repair(ctx, meeting)
            return
        await self.service.flows.promote_and_post(ctx.guild, ctx.channel, meeting)

    async def _repair(self, ctx: "Context", meeting: Meeting) -> None:
        """A finished meeting with gaps: encode them again and put them into the files."""
        assert ctx.guild is not None
        if self.service.finishing(meeting.id):
            raise UserError(_("Meeting `{meeting_id}` is being finished right now; try again when it is done.")
                            .format(meeting_id=meeting.id))
        async with ctx.typing():
            result = await self.service.repair(ctx.guild.id, meeting.id)
        done, left = len(result.repaired), len(result.remaining)
        if not left:
            await ctx.send(_("Repaired meeting `{meeting_id}`: its {gaps} gap(s) hold their audio again, "
                             "in the same files.").format(meeting_id=meeting.id, gaps=done))
            return
        lines = [_("Repaired {done} of {total} gap(s) of meeting `{meeting_id}`; these are still silent:").format(
            done=done, total=done + left, meeting_id=meeting.id)]
        lines += gap_lines(ctx.guild, meeting, result.remaining)
        if any(g.repairable for g in result.remaining):
            lines.append(_("Their audio is kept and retried; `{command}` tries again now.").format(
                command=f"{ctx.clean_prefix}recordings promote {meeting.id}"))
        for page in pagify("\n".join(lines), delims=["\n"], page_length=PAGE_CHARS):
            await ctx.send(page)

    @recordings.command(name="info", with_app_command=False)
    @commands.admin_or_permissions(manage_guild=True)
    async def recordings_info(self, ctx: "Context", recording_or_meeting_id: Optional[str] = None) -> None:
        """Details of a recording or a meeting; without an id, the server's totals. Example: `[p]recordings info 3f2a9c0d1e4b5a67`."""
        assert ctx.guild is not None
        if recording_or_meeting_id is None:
            await ctx.send(await self._totals(ctx))
            return
        ident = self._clean_id(recording_or_meeting_id)
        try:
            rec = await self.service.recording(ctx.guild.id, ident)
        except NotFound:
            meeting = await self._meeting(ctx, ident)
            # A meeting of many speakers outgrows one message: cut between lines.
            for page in pagify(await self._meeting_info(ctx, meeting), delims=["\n"], page_length=PAGE_CHARS):
                await ctx.send(page)
            return
        meeting = await self.service.meeting(ctx.guild.id, rec.meeting_id)
        channel = ctx.guild.get_channel(meeting.channel_id)
        speaker = _("Mixed (everyone)") if rec.kind is RecordingKind.MIXED else member_name(ctx.guild, rec.user_id)
        lines = [
            _("**Recording `{recording_id}`**").format(recording_id=rec.id),
            _("Speaker: {speaker}").format(speaker=speaker),
            _("Meeting: `{meeting_id}` in **{channel}**, started {started}").format(
                meeting_id=meeting.id, channel=channel.name if channel else meeting.channel_id,
                started=timestamp(meeting.started_at)),
            _("Length: {length} · Size: {size} · Made: {made}").format(
                length=clock_duration(rec.duration_in_ms), size=human_size(rec.size_bytes),
                made=timestamp(rec.created_at)),
            _("File: `{filename}` · SHA-256: `{sha256}…`").format(filename=rec.filename, sha256=rec.sha256[:16]),
        ]
        if rec.kind is RecordingKind.MIXED:
            lines.append(mixed_note())
        if await ctx.bot.is_owner(ctx.author):
            lines.append(_("Path (owner only): `{path}`").format(path=rec.path))
        await ctx.send("\n".join(lines))

    async def _totals(self, ctx: "Context") -> str:
        """The guild's meetings and files; for the bot owner, files no meeting holds (a lost database)."""
        assert ctx.guild is not None
        _page, meetings = await self.service.meetings_page(ctx.guild.id, limit=1)
        lines = [_("This server has {meetings} recorded meeting(s); `{command}` lists them.").format(
            meetings=humanize_number(meetings), command=f"{ctx.clean_prefix}recordings list")]
        if await ctx.bot.is_owner(ctx.author):
            unknown = self.service.unknown_files()
            if unknown:
                lines.append(_(
                    "⚠️ (Bot owner) {files} file(s), {size}, in the data folder belong to no meeting the database "
                    "knows (it was lost or replaced, and they have no manifest to find it again): they are kept, "
                    "never deleted, in `{folder}`."
                ).format(files=humanize_number(unknown.files), size=human_size(unknown.bytes),
                         folder=self.service.data_dir))
            else:
                lines.append(_("(Bot owner) Every file in the data folder belongs to a meeting the database knows."))
        return "\n".join(lines)

    async def _meeting_info(self, ctx: "Context", meeting: Meeting) -> str:
        assert ctx.guild is not None
        channel = ctx.guild.get_channel(meeting.channel_id)
        recs = await self.service.recordings_of(meeting)
        counts = await self.service.chunk_counts(meeting.id)
        where = channel.name if channel else str(meeting.channel_id)
        if meeting.ended_at:
            started = _("Started {started} by {member}, ended {ended}").format(
                started=timestamp(meeting.started_at), member=member_name(ctx.guild, meeting.started_by),
                ended=timestamp(meeting.ended_at))
        else:
            started = _("Started {started} by {member}").format(
                started=timestamp(meeting.started_at), member=member_name(ctx.guild, meeting.started_by))
        lines = [
            _("**Meeting `{meeting_id}`** in **{channel}** ({status})").format(
                meeting_id=meeting.id, channel=where, status=status_word(meeting.status)),
            started,
            _("Settings: {strategy}, {seconds} s chunks, {kbps} kb/s, {layout}").format(
                strategy=meeting.strategy.value, seconds=f"{meeting.flush_interval_s:g}",
                kbps=meeting.bitrate // 1000, layout=_("stereo") if meeting.channels == 2 else _("mono")),
        ]
        if counts.total:
            lines.append(_("Chunks: {chunks}").format(chunks=chunk_summary(counts)))
        lines += [f"• {recording_line(ctx.guild, r)}" for r in recs] or [_("No files yet.")]
        notes = await self.service.notes(meeting.id)
        if notes:
            lines.append(_("Notes ({count}, chapters of the mixed file):").format(count=len(notes)))
            lines += [f"`{clock_duration(n.at_ms)}` {escape(n.text, mass_mentions=True)} · "
                      f"{member_name(ctx.guild, n.author_id)}" for n in notes]
        if any(r.kind is RecordingKind.MIXED for r in recs):
            lines.append(mixed_note())
        gaps = await self.service.gaps(meeting)
        if gaps:
            lines.append(_("⚠️ Gaps: silent in the files though audio was recorded there:"))
            lines += gap_lines(ctx.guild, meeting, gaps)
            if meeting.status is MeetingStatus.PROMOTED and any(g.repairable for g in gaps):
                lines.append(_("`{command}` puts their audio back into the same files.").format(
                    command=f"{ctx.clean_prefix}recordings promote {meeting.id}"))
        if meeting.status in (MeetingStatus.INTERRUPTED, MeetingStatus.FAILED):
            lines.append(_("`{command}` finishes it.").format(
                command=f"{ctx.clean_prefix}recordings promote {meeting.id}"))
        return "\n".join(lines)

    @recordings.command(name="delete", with_app_command=False)
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
            question = _(
                "Delete the recording `{recording_id}` ({speaker}, {length}, {size})? This cannot be undone. "
                "Press a button, or type `yes` to confirm or `no` to keep it."
            ).format(recording_id=rec.id, speaker=member_name(ctx.guild, rec.user_id),
                     length=clock_duration(rec.duration_in_ms), size=human_size(rec.size_bytes))
        else:
            meeting = await self._meeting(ctx, ident)
            live = self.service.live(ctx.guild.id)
            if live is not None and live.meeting_id == meeting.id:
                raise UserError(_("That meeting is being recorded right now; stop it first."))
            if meeting.status is MeetingStatus.STOPPING or self.service.finishing(meeting.id):
                raise UserError(_("That meeting is being finished right now; try again when it is done."))
            files = await self.service.recordings_of(meeting)
            unfinished = await self.service.disk_usage(meeting.id)
            if unfinished:
                question = _(
                    "Delete the meeting `{meeting_id}`, its {files} file(s) and {size} of unfinished audio? "
                    "This cannot be undone. Press a button, or type `yes` to confirm or `no` to keep it."
                ).format(meeting_id=meeting.id, files=len(files), size=human_size(unfinished))
            elif len(files) == 1:
                question = _(
                    "Delete the meeting `{meeting_id}` and its 1 file? This cannot be undone. "
                    "Press a button, or type `yes` to confirm or `no` to keep it."
                ).format(meeting_id=meeting.id)
            else:
                question = _(
                    "Delete the meeting `{meeting_id}` and its {files} files? This cannot be undone. "
                    "Press a button, or type `yes` to confirm or `no` to keep it."
                ).format(meeting_id=meeting.id, files=len(files))
        answer = await confirm(ctx, question, timeout=CONFIRM_TIMEOUT_S)
        if answer is None:
            await ctx.send(_("No answer, so nothing was deleted."))
            return
        if not answer:
            await ctx.send(_("Kept: nothing was deleted."))
            return
        if rec is not None:
            removed = await self.service.delete_recording(ctx.guild.id, rec.id)
            await ctx.send(_("Deleted the recording `{recording_id}` ({size} freed).").format(
                recording_id=rec.id, size=human_size(removed.bytes_freed)))
        else:
            removed = await self.service.delete_meeting(ctx.guild.id, ident)
            if removed.files == 1:
                await ctx.send(_("Deleted the meeting `{meeting_id}` (1 file, {size} freed).").format(
                    meeting_id=ident, size=human_size(removed.bytes_freed)))
            else:
                await ctx.send(_("Deleted the meeting `{meeting_id}` ({files} files, {size} freed).").format(
                    meeting_id=ident, files=removed.files, size=human_size(removed.bytes_freed)))

    @recordings.command(name="get")
    @app_commands.describe(recording_id="The id of the recording (from /recordings list).",
                           audio_format="mp3, or opus for a smaller file (the server's default if left empty).")
    async def recordings_get(self, ctx: "Context", recording_id: str, audio_format: str = "") -> None:
        """Fetch a recording: the file here when it fits, else a download link or parts.

        Example: `[p]recordings get 3f2a9c0d1e4b5a67` or `[p]recordings get 3f2a9c0d1e4b5a67 opus`.
        Admins can fetch any of this server's recordings; members their own.
        """
        assert ctx.guild is not None
        ident = self._clean_id(recording_id)
        chosen = parse_post_format(audio_format) if audio_format else None  # UserError if neither
        try:
            rec = await self.service.recording(ctx.guild.id, ident)
        except NotFound:
            raise UserError(_("No recording `{recording_id}` in this server.").format(
                recording_id=echo(ident))) from None
        assert isinstance(ctx.author, discord.Member)  # guild_only
        own = rec.kind is RecordingKind.PER_USER and rec.user_id == ctx.author.id
        if not own and not await is_guild_admin(ctx.bot, ctx.author):
            raise UserError(_("You can fetch your own recordings; others need Manage Server or the bot's admin role."))
        if chosen is None:
            chosen = (await self.service.settings.guild(ctx.guild.id)).post_format
        fmt: Literal["mp3", "opus"] = "opus" if chosen == "opus" else "mp3"
        # A slash command is answered through its interaction (the file is the answer).
        # `get <id> mp3` by name on a FLAC recording: its MP3 for quick listening (made once)
        listen = bool(audio_format) and fmt == "mp3"
        await self.service.delivery.send_recording(ctx.guild, ctx if ctx.interaction is not None else ctx.channel,
                                                   rec, fmt, prefix=await text_prefix(ctx), listen=listen)

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
            raise UserError(_("No recording or meeting `{ident}` in this server; `{command}` shows them.").format(
                ident=echo(ident), command=f"{ctx.clean_prefix}recordings list")) from None
