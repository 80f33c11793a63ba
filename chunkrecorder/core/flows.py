"""What a meeting looks like from Discord: starting, stopping, finishing, posting.

The commands, the voice events and the background tasks all end a meeting the same
way, so the one stop path lives here: leave voice, show progress, promote, restore
the nickname, post the files. ``MeetingManager`` decides *when* a meeting ends;
this decides what members see when it does.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from .config import ActiveRecord, SettingsStore
from .errors import UserError
from .meetings import LiveMeeting, MeetingManager, Reason
from .nickname import PREFIX as NICK_PREFIX, RecNickname
from .posting import result_text, send_long, short_error, upload_recordings
from .progress import ProgressMessage

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core import commands
    from redbot.core.bot import Red

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
                 erase_users: Callable[[set[int]], Awaitable[None]]) -> None:
        self.bot = bot
        self.settings = settings
        self.meetings = meetings
        self.nickname = nickname
        self.data_dir = data_dir
        self._erase_users = erase_users
        #: Meetings whose promotion went on in the background: (guild, text channel).
        self._pending_posts: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ start
    async def start(self, guild: discord.Guild, channel: discord.VoiceChannel, *, author: discord.Member,
                    reply_to: discord.abc.Messageable, text_channel_id: int, prefix: str) -> LiveMeeting:
        live = self.meetings.get(guild.id)
        if live is not None:
            raise UserError(
                _("I'm already recording **{channel}** in this server; `{command}` ends it first.").format(
                    channel=live.channel_name, command=f"{prefix}record stop")
            )
        perms = channel.permissions_for(guild.me)
        if not (perms.connect and perms.view_channel):
            raise UserError(_("I need the Connect permission in **{channel}** to record it.").format(
                channel=channel.name))
        if channel.user_limit and len(channel.members) >= channel.user_limit and not perms.move_members:
            raise UserError(_("**{channel}** is full, so I can't join it.").format(channel=channel.name))
        settings = await self.settings.guild(guild.id)
        async with reply_to.typing():
            live = await self.meetings.start(guild_id=guild.id, channel=channel, text_channel_id=text_channel_id,
                                             started_by=author.id, settings=settings)
        nick_before: Optional[str] = None
        changed = False
        if settings.announce:
            changed, nick_before = await self.nickname.apply(guild)
        await self.settings.set_active(guild.id, ActiveRecord(live.meeting_id, text_channel_id, nick_before, changed))
        if settings.announce:
            await reply_to.send(
                _("🔴 Recording **{channel}** ({kinds}). Stop with `{stop}`; anyone can opt out with `{optout}`.")
                .format(channel=channel.name, kinds=_kinds(settings.strategy), stop=f"{prefix}record stop",
                        optout=f"{prefix}record optout")
            )
        else:
            await reply_to.send(_("Recording **{channel}** (meeting `{meeting_id}`).").format(
                channel=channel.name, meeting_id=live.meeting_id))
        return live

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
                self._pending_posts[live.meeting_id] = (guild.id, channel.id)
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
        recordings = list(result.recordings)
        if live.erased:
            await self._erase_users(live.erased)
            recordings = [r for r in recordings if r.user_id not in live.erased]
        if progress is not None:
            await progress.update(_("done."))
        if channel is not None:
            await self.post_result(guild, channel, live.session.meeting, result, recordings)

    async def _forget_active(self, guild: discord.Guild) -> None:
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
        await self.post_result(guild, channel, meeting, result, list(result.recordings))

    async def promoted_in_background(self, result: PromotionResult) -> None:
        """A stop that outlived its wait finished later: post it where it was asked for."""
        target = self._pending_posts.pop(result.meeting.id, None)
        if target is None:
            return
        guild = self.bot.get_guild(target[0])
        channel = guild.get_channel(target[1]) if guild is not None else None
        await set_contextual_locales_from_guild(self.bot, guild)
        if guild is not None and isinstance(channel, discord.abc.Messageable):
            await self.post_result(guild, channel, result.meeting, result, list(result.recordings))

    async def post_result(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting,
                          result: PromotionResult, recordings: Sequence[Recording]) -> None:
        with contextlib.suppress(discord.HTTPException):
            await send_long(channel, result_text(guild, meeting, result, recordings))
        await self.upload(guild, channel, recordings)

    async def upload(self, guild: discord.Guild, channel: discord.abc.Messageable,
                     recordings: Sequence[Recording]) -> None:
        await upload_recordings(guild, channel, recordings, data_dir=self.data_dir,
                                prefix=await prefix_for(self.bot, guild))
