"""``[p]record``: start, stop and watch the guild's recording; members opt out or in.

``start``, ``stop`` and ``status`` are hybrid: also ``/record start|stop|status`` once the
bot owner enables and syncs them (``[p]slash enable record``, ``[p]slash sync``). A slash
invocation gets the same replies through its interaction; ``optout``/``optin`` stay
prefix-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import discord
from discord import app_commands
from redbot.core import commands
from redbot.core.utils.chat_formatting import escape, humanize_timedelta, pagify

from ..core.abc import MixinMeta
from ..core.errors import ControlDenied, UserError
from ..core.flows import text_prefix
from ..core.formatting import chunk_summary, clock_duration, human_size, names
from ..core.permissions import may_control
from ..i18n import _

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.commands import Context

__all__ = ["RecordCommands", "ControlDenied", "NOTE_MAX_CHARS", "can_control"]

#: A note's length: a chapter title and a label line, not an essay.
NOTE_MAX_CHARS = 300


def can_control() -> Callable[[Any], Any]:
    """Start and stop: the guild's recorder role, Manage Server, or Red's admin/owner."""

    async def predicate(ctx: "Context") -> bool:
        if ctx.guild is None:
            raise commands.NoPrivateMessage()
        assert isinstance(ctx.author, discord.Member)
        service = getattr(ctx.cog, "service")
        settings = await service.settings.guild(ctx.guild.id)
        if await may_control(ctx.bot, ctx.author, settings):
            return True
        role = ctx.guild.get_role(settings.recorder_role) if settings.recorder_role else None
        if role is not None:
            raise ControlDenied(_(
                "Only members with the **{role}** role or Manage Server (or the bot's admin role) "
                "can start or stop recordings here."
            ).format(role=role.name))
        raise ControlDenied(_("Only members with Manage Server (or the bot's admin role) can start or stop "
                              "recordings here."))

    return commands.check(predicate)


class RecordCommands(MixinMeta):
    # `commands.group(cls=HybridGroup)` is `commands.hybrid_group`, spelled so that Red's
    # redgettext (which knows the `group`/`command` decorators only) extracts its help.
    @commands.group(name="record", cls=commands.HybridGroup)
    @commands.guild_only()
    async def record(self, ctx: "Context") -> None:
        """Record a voice channel, per speaker and mixed."""

    @record.command(name="start")
    @can_control()
    @app_commands.describe(channel="The voice channel to record; leave it empty to record the one you are in.")
    async def record_start(self, ctx: "Context", *,
                           channel: discord.VoiceChannel = None) -> None:  # type: ignore[assignment]
        """Join your voice channel (or the one named) and start recording.

        Examples: `[p]record start` while you are in voice, or `[p]record start Standup`.
        """
        # Not `Optional[...]`: to discord.py that means "skip a name that is no channel",
        # and `[p]record start Atrium` must say it found no Atrium instead.
        assert ctx.guild is not None and isinstance(ctx.author, discord.Member)
        target = cast(Optional[discord.VoiceChannel], channel)
        if target is None:
            voice = ctx.author.voice
            if voice is None or not isinstance(voice.channel, discord.VoiceChannel):
                raise UserError(_("Join a voice channel first, or name one: `{command}`.").format(
                    command=f"{ctx.clean_prefix}record start <channel>"))
            target = voice.channel
        await self.service.flows.start(ctx.guild, target, author=ctx.author, reply_to=ctx,
                                       text_channel_id=ctx.channel.id, prefix=await text_prefix(ctx))

    @record.command(name="stop")
    @can_control()
    async def record_stop(self, ctx: "Context") -> None:
        """Stop recording and post the files."""
        assert ctx.guild is not None
        live = self.service.live(ctx.guild.id)
        if live is None:
            raise UserError(_("Nothing is being recorded in this server."))
        if ctx.interaction is not None:
            # Answer the slash command at once (Discord waits 3 s for that); the progress
            # and the files follow in the channel, as for the prefix form.
            await ctx.send(_("⏹️ Stopping the recording of **{channel}**; the files follow here.").format(
                channel=live.channel_name))
        # An admin's stop wins over an auto-record rule until the channel empties.
        await self.service.pause_autorecord(ctx.guild.id, live.channel_id)
        await self.service.flows.finish(ctx.guild, ctx.channel, reason=_("stopped by {member}").format(
            member=ctx.author.display_name))

    @record.command(name="status")
    async def record_status(self, ctx: "Context") -> None:
        """What is being recorded: channel, time, speakers, chunks and disk used."""
        assert ctx.guild is not None
        live = self.service.live(ctx.guild.id)
        if live is None:
            await ctx.send(_("Nothing is being recorded in this server."))
            return
        snap = live.session.snapshot()
        elapsed = snap.elapsed_s or (self.service.meetings.now() - live.started_at)
        counts = await self.service.chunk_counts(live.meeting_id)
        disk = await self.service.disk_usage(live.meeting_id)
        lines = [
            _("🔴 Recording **{channel}** for {elapsed} (meeting `{meeting_id}`).").format(
                channel=live.channel_name, elapsed=humanize_timedelta(seconds=int(elapsed)) or _("0 seconds"),
                meeting_id=live.meeting_id),
            _("Speakers heard: {speakers}.").format(speakers=names(ctx.guild, [s for s in sorted(snap.speakers) if s])),
            _("Chunks: {chunks}.").format(chunks=chunk_summary(counts)),
            _("Disk used: {disk} on disk, {memory} in memory.").format(
                disk=human_size(disk), memory=human_size(snap.buffered_bytes)),
        ]
        shown = self.service.flows.notices.indicator_words(live)
        if shown:
            lines.append(shown)
        if live.consent.optin:
            lines.append(_("Consent: only members who agreed are recorded ({agreed} agreed for this meeting; "
                           "`{command}`).").format(agreed=len(live.consent.agreed),
                                                   command=f"{await text_prefix(ctx)}record optin"))
        if snap.speakers_over_budget:
            lines.append(_("⚠️ Not recorded, the bot's memory for live audio being full: {speakers}.").format(
                speakers=names(ctx.guild, snap.speakers_over_budget)))
        if live.ending:
            lines.append(_("It is stopping now."))
        lines += live.connection.status_lines(self.service.meetings.meeting_time(live))
        # Many speakers make a long list: cut between lines (or names), never drop one.
        for page in pagify("\n".join(lines), delims=["\n", ", "], page_length=1900):
            await ctx.send(page)

    @record.command(name="optout", with_app_command=False)
    async def record_optout(self, ctx: "Context") -> None:
        """Never record my voice in this server."""
        assert ctx.guild is not None
        await self.service.settings.set_opt_out(ctx.guild.id, ctx.author.id, True)
        optin = f"{ctx.clean_prefix}record optin"
        live = self.service.live(ctx.guild.id)
        if live:
            live.consent.withdraw(ctx.author.id)
            await ctx.send(_("Done: I won't record your voice in this server. From now on your audio is dropped "
                             "from the current recording too. `{command}` undoes it.").format(command=optin))
        else:
            await ctx.send(_("Done: I won't record your voice in this server. `{command}` undoes it.").format(
                command=optin))

    @record.command(name="optin", with_app_command=False)
    async def record_optin(self, ctx: "Context", scope: str = "") -> None:
        """Allow recording my voice here: undo an opt-out, and where members must agree, agree.

        `[p]record optin` agrees for the meeting running now; `[p]record optin always` for every recording here.
        """
        assert ctx.guild is not None
        if scope.strip().lower() not in ("", "always"):
            raise UserError(_("`{value}` is not a choice: `{command}` or `{always}`.").format(
                value=scope, command=f"{ctx.clean_prefix}record optin", always=f"{ctx.clean_prefix}record optin always"))
        await ctx.send(await self.service.flows.agree(ctx.guild, ctx.author.id, always=bool(scope.strip()),
                                                      prefix=ctx.clean_prefix))

    @record.command(name="note")
    @app_commands.describe(text="What to mark at this moment of the meeting (up to 300 characters).")
    async def record_note(self, ctx: "Context", *, text: str) -> None:
        """Mark this moment of the recording with a note (a chapter in the mixed file).

        Example: `[p]record note Budget discussion starts`.
        """
        assert ctx.guild is not None
        text = text.strip()
        if not text or len(text) > NOTE_MAX_CHARS:
            raise UserError(_("A note is 1 to {limit} characters, not {length}.").format(
                limit=NOTE_MAX_CHARS, length=len(text)))
        note = await self.service.add_note(ctx.guild.id, ctx.author.id, text)
        await ctx.send(_("📝 Noted at {time}: {text}").format(time=clock_duration(note.at_ms),
                                                              text=escape(text, mass_mentions=True)))
