"""What a meeting looks like from Discord: starting, stopping, finishing, posting.

The commands, the voice events and the background tasks all end a meeting the same
way, so the one stop path lives here: leave voice, show progress, promote, restore
the nickname, post the files. ``MeetingManager`` decides *when* a meeting ends;
this decides what members see when it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Optional, Sequence

import discord

from redbot.core.i18n import (
    get_locale,
    get_regional_format,
    set_contextual_locale,
    set_contextual_locales_from_guild,
    set_contextual_regional_format,
)

from ..i18n import _
from ..objects.errors import PromotionTimeout
from ..objects.records import Meeting, Recording, Strategy
from ..objects.results import PromotionResult
from .config import ActiveRecord, AutoRecordRule, SettingsStore
from .consent import ConsentGate, ConsentMode
from .consent_view import ConsentViews
from .dispatch import EventDispatcher
from .connection_log import ConnectionLog
from .errors import UserError
from .meetings import LiveMeeting, MeetingManager, Reason
from .nickname import PREFIX as NICK_PREFIX, RecNickname
from .access import check_can_hear
from .notices import RecordingNotices, can_post_in_voice_chat
from .posting import short_error
from .progress import ProgressMessage
from .settings import GuildSettings

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core import commands
    from redbot.core.bot import Red

    from .delivery import Delivery

__all__ = ["MeetingFlows", "prefix_for", "text_prefix"]

log = logging.getLogger("red.chunkrecorder.flows")


def _kinds(strategy: str) -> str:
    """What a strategy makes, as the start announcement says it."""
    if strategy == Strategy.PER_USER.value:
        return _("one file per speaker")
    if strategy == Strategy.MIXED.value:
        return _("one mixed file")
    return _("per speaker and mixed")


async def prefix_for(bot: "Red", guild: Optional[discord.Guild]) -> str:
    """The prefix members of ``guild`` type, for messages sent outside a command."""
    prefixes = await bot.get_valid_prefixes(guild)
    return prefixes[0] if prefixes else "[p]"


async def text_prefix(ctx: "commands.Context") -> str:
    """The prefix to cite a command with: the one the member typed, or for a slash
    command (whose ``clean_prefix`` is "/") the guild's text prefix, since only some
    commands have a slash form."""
    if ctx.interaction is None:
        return ctx.clean_prefix
    return await prefix_for(ctx.bot, ctx.guild)


class MeetingFlows:
    """The start, stop, promote and post paths every trigger shares."""

    def __init__(self, *, bot: "Red", settings: SettingsStore, meetings: MeetingManager,
                 nickname: RecNickname, data_dir: Path,
                 erase_users: Callable[[set[int]], Awaitable[None]],
                 delivery: Optional["Delivery"] = None) -> None:
        self.bot = bot
        #: Where and how finished meetings are posted (``core/delivery.py``).
        self.delivery = delivery
        self.settings = settings
        self.meetings = meetings
        self.nickname = nickname
        self.data_dir = data_dir
        self._erase_users = erase_users
        #: The consent buttons of this load, the notices in voice channels' chats, and
        #: the events other cogs listen to.
        self.views = ConsentViews(self.consent_click)
        self.notices = RecordingNotices(self.views)
        self.events = EventDispatcher(bot)
        #: Meetings whose promotion went on in the background: (guild, text channel, what
        #: happened to their voice connection).
        self._pending_posts: dict[str, tuple[int, int, Optional[ConnectionLog]]] = {}

    # ------------------------------------------------------------------ start
    async def start(self, guild: discord.Guild, channel: discord.VoiceChannel, *, author: discord.Member,
                    reply_to: discord.abc.Messageable, text_channel_id: int, prefix: str,
                    rule: Optional[AutoRecordRule] = None) -> LiveMeeting:
        """Start recording ``channel``: by a member's command, or by an auto-record ``rule``
        (then ``author`` is the bot and ``reply_to`` the voice channel's own chat)."""
        live = self.meetings.get(guild.id)
        if live is not None:
            raise UserError(
                _("I'm already recording **{channel}** in this server; `{command}` ends it first.").format(
                    channel=live.channel_name, command=f"{prefix}record stop")
            )
        check_can_hear(author, channel)  # only people who could hear a meeting may record it
        perms = channel.permissions_for(guild.me)
        if not (perms.connect and perms.view_channel):
            raise UserError(_("I need the Connect permission in **{channel}** to record it.").format(
                channel=channel.name))
        if channel.user_limit and len(channel.members) >= channel.user_limit and not perms.move_members:
            raise UserError(_("**{channel}** is full, so I can't join it.").format(channel=channel.name))
        if not (self.nickname.can_change(guild) or can_post_in_voice_chat(channel)):
            raise UserError(_("I can't show that I'm recording **{channel}**: I need Change Nickname, or Send "
                              "Messages in the voice channel's chat.").format(channel=channel.name))
        settings = await self.settings.guild(guild.id)
        gate = ConsentGate(settings.consent_mode, always=functools.partial(self.settings.agreed_always, guild.id))
        async with reply_to.typing():
            live = await self.meetings.start(guild_id=guild.id, channel=channel, text_channel_id=text_channel_id,
                                             started_by=author.id, settings=settings, consent=gate)
        live.auto_rule = rule.min_members if rule is not None else None
        changed, nick_before = await self.nickname.apply(guild)
        await self.settings.set_active(guild.id, ActiveRecord(live.meeting_id, text_channel_id, nick_before, changed))
        posted = await self.notices.started(guild, live, prefix, channel.members)
        nick = guild.me.nick if guild.me is not None else None
        live.indicator = "nickname" if nick and nick.startswith(NICK_PREFIX) else "message" if posted else "none"
        if live.indicator == "none":
            # Nobody may be recorded without a sign of it: end at once.
            with contextlib.suppress(UserError):
                await self.finish(guild, None, reason=_("no recording indicator could be shown"))
            raise UserError(_("I stopped recording **{channel}** at once: I could neither show [REC] in my "
                              "nickname nor post in the voice channel's chat.").format(channel=channel.name))
        if rule is None:
            await self._announce(reply_to, live, settings, prefix)
        self.events.meeting_started(guild, live)
        return live

    async def _announce(self, reply_to: discord.abc.Messageable, live: LiveMeeting, settings: GuildSettings,
                        prefix: str) -> None:
        """The reply where the command was typed (with the consent buttons under optin)."""
        values = dict(channel=live.channel_name, kinds=_kinds(settings.strategy), stop=f"{prefix}record stop",
                      optout=f"{prefix}record optout", optin=f"{prefix}record optin", meeting_id=live.meeting_id)
        if settings.announce and live.consent.optin:
            text = _("🔴 Recording **{channel}** ({kinds}), only members who agree: press a button below or type "
                     "`{optin}`. Stop with `{stop}`.").format(**values)
        elif settings.announce:
            text = _("🔴 Recording **{channel}** ({kinds}). Stop with `{stop}`; anyone can opt out with "
                     "`{optout}`.").format(**values)
        else:
            text = _("Recording **{channel}** (meeting `{meeting_id}`).").format(**values)
        if live.consent.optin:
            await reply_to.send(text, view=self.views.new(live.guild_id))
        else:
            await reply_to.send(text)

    async def member_joined(self, member: discord.Member, channel_id: Optional[int]) -> None:
        """A member's voice state changed: a join of the recorded channel gets its notice."""
        live = self.meetings.get(member.guild.id)
        if live is None or live.ending or channel_id != live.channel_id:
            return
        await set_contextual_locales_from_guild(self.bot, member.guild)
        await self.notices.joined(member.guild, live, member, await prefix_for(self.bot, member.guild))

    async def agree(self, guild: discord.Guild, user_id: int, *, always: bool, prefix: str) -> str:
        """A member agrees to be recorded (a consent button, ``[p]record optin [always]``);
        returns what they are told. Agreeing also lifts their opt-out."""
        settings = await self.settings.guild(guild.id)
        if not self.settings.accepts(guild.id, user_id):
            await self.settings.set_opt_out(guild.id, user_id, False)
        live = self.meetings.get(guild.id)
        if settings.consent_mode is not ConsentMode.OPTIN and (live is None or not live.consent.optin):
            return _("Done: your voice will be recorded again when a recording runs in this server.")
        if always:
            await self.settings.set_consent_always(guild.id, user_id, True)
            if live is not None:
                live.consent.agree(user_id)
            return _("Thanks: you agreed to be recorded in every recording of this server. `{command}` takes it "
                     "back.").format(command=f"{prefix}record optout")
        if live is None or live.ending:
            return _("Nothing is being recorded right now. `{command}` agrees to every recording here.").format(
                command=f"{prefix}record optin always")
        live.consent.agree(user_id)
        return _("Thanks: your voice in **{channel}** is recorded from now on, for this meeting.").format(
            channel=live.channel_name)

    async def consent_click(self, interaction: discord.Interaction, always: bool) -> str:
        """The consent buttons' handler (``ConsentViews``)."""
        guild = interaction.guild
        if guild is None:
            return _("This button works in a server only.")
        await set_contextual_locales_from_guild(self.bot, guild)
        return await self.agree(guild, interaction.user.id, always=always, prefix=await prefix_for(self.bot, guild))
    async def followed(self, live: LiveMeeting) -> None:
        """The manager's ``on_followed``: the bot was moved and the meeting goes on in the
        new channel (``recordingset move follow``); say so where it started, as a start is
        announced, so the new channel's members can see they are recorded."""
        if not live.settings.announce or live.text_channel_id is None:
            return
        guild = self.bot.get_guild(live.guild_id)
        channel = guild.get_channel(live.text_channel_id) if guild is not None else None
        if not isinstance(channel, discord.abc.Messageable):
            return
        await set_contextual_locales_from_guild(self.bot, guild)
        prefix = await prefix_for(self.bot, guild)
        with contextlib.suppress(discord.HTTPException):
            await channel.send(_(
                "🔴 I was moved to **{channel}** and keep recording there (meeting `{meeting_id}`). "
                "Stop with `{stop}`; anyone can opt out with `{optout}`."
            ).format(channel=live.channel_name, meeting_id=live.meeting_id, stop=f"{prefix}record stop",
                     optout=f"{prefix}record optout"))

    # ------------------------------------------------------------------ stop
    async def auto_stop(self, live: LiveMeeting, reason: Reason) -> None:
        """The manager's ``on_auto_stop``: the same stop path, posted where it started
        (in that guild's language: no command set it for this task)."""
        guild = self.bot.get_guild(live.guild_id)
        await set_contextual_locales_from_guild(self.bot, guild)
        if guild is None:
            with contextlib.suppress(UserError):
                await self.meetings.stop(live.guild_id, reason=reason)
            return
        channel = guild.get_channel(live.text_channel_id) if live.text_channel_id else None
        with contextlib.suppress(UserError):
            await self.finish(guild, channel if isinstance(channel, discord.abc.Messageable) else None,
                              reason=reason)

    async def finish(self, guild: discord.Guild, channel: Optional[discord.abc.Messageable], *,
                     reason: Reason) -> None:
        """The one stop path: leave voice, show progress, promote, post the files."""
        live = self.meetings.get(guild.id)
        if live is None:
            raise UserError(_("Nothing is being recorded in this server."))
        if live.ending:
            raise UserError(_("That recording is already stopping; the files are on their way."))
        title = _("⏹️ Recording of **{channel}** ended ({reason})").format(channel=live.channel_name, reason=reason)
        progress = ProgressMessage(channel, title) if channel is not None else None
        if progress is not None:
            await progress.start(_("finishing the files…"))
        try:
            live, result = await self.meetings.stop(guild.id, progress=progress, reason=reason)
        except UserError:
            if progress is not None:
                await progress.update(_("not finished, see below."))
            raise
        except PromotionTimeout:
            await self._forget_active(guild)
            if channel is not None and isinstance(channel, discord.abc.Snowflake):
                self._pending_posts[live.meeting_id] = (guild.id, channel.id, live.connection)
                with contextlib.suppress(discord.HTTPException):
                    await channel.send(_("Encoding is taking longer than usual; I'll post the files here when they "
                                         "are ready."))
            return
        except Exception as exc:
            log.exception("Stopping meeting %s failed", live.meeting_id)
            await self._forget_active(guild)
            if channel is not None:
                with contextlib.suppress(discord.HTTPException):
                    command = f"{await prefix_for(self.bot, guild)}recordings promote {live.meeting_id}"
                    await channel.send(_(
                        "The recording stopped, but finishing its files failed ({error}). Nothing is lost: "
                        "an admin can retry with `{command}`."
                    ).format(error=short_error(exc), command=command))
            return
        await self._forget_active(guild)
        self.events.meeting_promoted(result)
        recordings = list(result.recordings)
        if live.erased:
            await self._erase_users(live.erased)
            recordings = [r for r in recordings if r.user_id not in live.erased]
        if progress is not None:
            await progress.update(_("done."))
        if channel is not None:
            await self.post_result(guild, channel, live.session.meeting, result, recordings,
                                   connection=live.connection)

    async def _forget_active(self, guild: discord.Guild) -> None:
        self.views.end_meeting(guild.id)
        await self.restore_nick(guild)
        await self.settings.clear_active(guild.id)

    async def restore_nick(self, guild: Optional[discord.Guild]) -> None:
        """Put back the nickname from before [REC] (or strip the prefix if that is unknown)."""
        if guild is None:
            return
        active = await self.settings.active(guild.id)
        if active is not None:
            before = active.nick_before
        else:  # no record of the old name: drop our prefix from the current one
            nick = guild.me.nick if guild.me is not None else None
            before = nick[len(NICK_PREFIX):] if nick and nick.startswith(NICK_PREFIX) else nick
        await self.nickname.restore(guild, before or None)

    async def pause_all(self) -> None:
        """Unload with meetings running: say in each channel that nothing is lost (after the
        recorder kept them recoverable)."""
        # Each message in its guild's language; the unload command's own reply after this
        # keeps the language it had.
        locale, regional = get_locale(), get_regional_format()
        try:
            for live in list(self.meetings.live.values()):
                await self._pause_one(live)
        finally:
            set_contextual_locale(locale)
            set_contextual_regional_format(regional)

    async def _pause_one(self, live: LiveMeeting) -> None:
        guild = self.bot.get_guild(live.guild_id)
        with contextlib.suppress(Exception):
            await set_contextual_locales_from_guild(self.bot, guild)  # not in wait_for: its own task
        channel = guild.get_channel(live.text_channel_id) if guild and live.text_channel_id else None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.restore_nick(guild), 5)
        if isinstance(channel, discord.abc.Messageable):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.send(_(
                    "⏸️ Recording of **{channel}** paused: the recorder was unloaded. "
                    "Everything so far is kept; meeting `{meeting_id}` is finished when it loads again."
                ).format(channel=live.channel_name, meeting_id=live.meeting_id)), 5)

    # ------------------------------------------------------------------ promote and post
    async def promote_and_post(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting, *,
                               after_restart: bool = False) -> None:
        if after_restart:
            title = _("🛠️ Finishing the recording a restart interrupted: `{meeting_id}`").format(meeting_id=meeting.id)
        else:
            title = _("🛠️ Promoting `{meeting_id}`").format(meeting_id=meeting.id)
        progress = ProgressMessage(channel, title)
        await progress.start(_("collecting chunks…"))
        try:
            result = await self.meetings.recorder.promote(meeting.id, progress=progress)
        except Exception as exc:
            log.exception("Promoting meeting %s failed", meeting.id)
            raise UserError(_("Promoting `{meeting_id}` failed: {error}. Its chunks are kept; try again later.")
                            .format(meeting_id=meeting.id, error=short_error(exc))) from None
        await progress.update(_("done."))
        self.events.meeting_promoted(result)
        await self.post_result(guild, channel, meeting, result, list(result.recordings))

    async def promoted_in_background(self, result: PromotionResult) -> None:
        """A stop that outlived its wait finished later: post it where it was asked for."""
        self.events.meeting_promoted(result)
        target = self._pending_posts.pop(result.meeting.id, None)
        if target is None:
            return
        guild = self.bot.get_guild(target[0])
        channel = guild.get_channel(target[1]) if guild is not None else None
        await set_contextual_locales_from_guild(self.bot, guild)
        if guild is not None and isinstance(channel, discord.abc.Messageable):
            await self.post_result(guild, channel, result.meeting, result, list(result.recordings),
                                   connection=target[2])

    async def post_result(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting,
                          result: PromotionResult, recordings: Sequence[Recording], *,
                          connection: Optional[ConnectionLog] = None) -> None:
        """Post a finished meeting: the delivery rule decides where and in what form (the
        summary says what reconnects left silent, when the meeting knows it), and the
        notes' label track follows the files."""
        assert self.delivery is not None, "the service gives the flows their delivery"
        target = await self.delivery.post_meeting(guild, channel, meeting, result, recordings,
                                                  prefix=await prefix_for(self.bot, guild),
                                                  note=connection.result_line() if connection is not None else None)
        if target is not None:
            await self._post_labels(target, result)

    async def _post_labels(self, channel: discord.abc.Messageable, result: PromotionResult) -> None:
        """The notes' Audacity label track, after the files (a few hundred bytes)."""
        if not result.labels_path:
            return
        try:
            data = await asyncio.to_thread(Path(result.labels_path).read_bytes)
            if len(result.notes) == 1:
                text = _("📝 1 note: the label track for Audacity (File → Import → Labels); "
                         "the mixed file has it as a chapter.")
            else:
                text = _("📝 {notes} notes: the label track for Audacity (File → Import → Labels); "
                         "the mixed file has them as chapters.").format(notes=len(result.notes))
            await channel.send(text, file=discord.File(io.BytesIO(data), filename=Path(result.labels_path).name))
        except (OSError, discord.HTTPException) as exc:
            log.info("Posting the label track of %s failed: %s", result.meeting.id, exc)
