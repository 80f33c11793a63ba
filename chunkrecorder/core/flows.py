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

from ..objects.errors import PromotionTimeout
from ..objects.records import Meeting, Recording, Strategy
from ..objects.results import PromotionResult
from .config import ActiveRecord, SettingsStore
from .errors import UserError
from .meetings import LiveMeeting, MeetingManager
from .nickname import PREFIX as NICK_PREFIX, RecNickname
from .posting import result_text, short_error, upload_recordings
from .progress import ProgressMessage

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

__all__ = ["MeetingFlows", "prefix_for"]

log = logging.getLogger("red.chunkrecorder.flows")

_KINDS = {Strategy.PER_USER.value: "one file per speaker", Strategy.MIXED.value: "one mixed file",
          Strategy.HYBRID.value: "per speaker and mixed"}


async def prefix_for(bot: "Red", guild: Optional[discord.Guild]) -> str:
    """The prefix members of ``guild`` type, for messages sent outside a command."""
    prefixes = await bot.get_valid_prefixes(guild)
    return prefixes[0] if prefixes else "[p]"


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
                f"I'm already recording **{live.channel_name}** in this server; "
                f"`{prefix}record stop` ends it first."
            )
        perms = channel.permissions_for(guild.me)
        if not (perms.connect and perms.view_channel):
            raise UserError(f"I need the Connect permission in **{channel.name}** to record it.")
        if channel.user_limit and len(channel.members) >= channel.user_limit and not perms.move_members:
            raise UserError(f"**{channel.name}** is full, so I can't join it.")
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
                f"🔴 Recording **{channel.name}** ({_KINDS[settings.strategy]}). Stop with `{prefix}record stop`; "
                f"anyone can opt out with `{prefix}record optout`."
            )
        else:
            await reply_to.send(f"Recording **{channel.name}** (meeting `{live.meeting_id}`).")
        return live

    # ------------------------------------------------------------------ stop
    async def auto_stop(self, live: LiveMeeting, reason: str) -> None:
        """The manager's ``on_auto_stop``: the same stop path, posted where it started."""
        guild = self.bot.get_guild(live.guild_id)
        if guild is None:
            with contextlib.suppress(UserError):
                await self.meetings.stop(live.guild_id, reason=reason)
            return
        channel = guild.get_channel(live.text_channel_id) if live.text_channel_id else None
        with contextlib.suppress(UserError):
            await self.finish(guild, channel if isinstance(channel, discord.abc.Messageable) else None,
                              reason=reason)

    async def finish(self, guild: discord.Guild, channel: Optional[discord.abc.Messageable], *,
                     reason: str) -> None:
        """The one stop path: leave voice, show progress, promote, post the files."""
        live = self.meetings.get(guild.id)
        if live is None:
            raise UserError("Nothing is being recorded in this server.")
        if live.ending:
            raise UserError("That recording is already stopping; the files are on their way.")
        progress = ProgressMessage(channel, f"⏹️ Recording of **{live.channel_name}** ended ({reason})") \
            if channel is not None else None
        if progress is not None:
            await progress.start("finishing the files…")
        try:
            live, result = await self.meetings.stop(guild.id, progress=progress, reason=reason)
        except UserError:
            if progress is not None:
                await progress.update("not finished, see below.")
            raise
        except PromotionTimeout:
            await self._forget_active(guild)
            if channel is not None and isinstance(channel, discord.abc.Snowflake):
                self._pending_posts[live.meeting_id] = (guild.id, channel.id)
                with contextlib.suppress(discord.HTTPException):
                    await channel.send("Encoding is taking longer than usual; I'll post the files here when they are ready.")
            return
        except Exception as exc:
            log.exception("Stopping meeting %s failed", live.meeting_id)
            await self._forget_active(guild)
            if channel is not None:
                with contextlib.suppress(discord.HTTPException):
                    await channel.send(
                        f"The recording stopped, but finishing its files failed ({short_error(exc)}). Nothing is lost: "
                        f"an admin can retry with `{await prefix_for(self.bot, guild)}recordings promote {live.meeting_id}`."
                    )
            return
        await self._forget_active(guild)
        recordings = list(result.recordings)
        if live.erased:
            await self._erase_users(live.erased)
            recordings = [r for r in recordings if r.user_id not in live.erased]
        if progress is not None:
            await progress.update("done.")
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
        for live in list(self.meetings.live.values()):
            guild = self.bot.get_guild(live.guild_id)
            channel = guild.get_channel(live.text_channel_id) if guild and live.text_channel_id else None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.restore_nick(guild), 5)
            if isinstance(channel, discord.abc.Messageable):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.send(
                        f"⏸️ Recording of **{live.channel_name}** paused: the recorder was unloaded. "
                        f"Everything so far is kept; meeting `{live.meeting_id}` is finished when it loads again."
                    ), 5)

    # ------------------------------------------------------------------ promote and post
    async def promote_and_post(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting, *,
                               title: str = "Promoting") -> None:
        progress = ProgressMessage(channel, f"🛠️ {title} `{meeting.id}`")
        await progress.start("collecting chunks…")
        try:
            result = await self.meetings.recorder.promote(meeting.id, progress=progress)
        except Exception as exc:
            log.exception("Promoting meeting %s failed", meeting.id)
            raise UserError(f"Promoting `{meeting.id}` failed: {short_error(exc)}. Its chunks are kept; try again later.") from None
        await progress.update("done.")
        await self.post_result(guild, channel, meeting, result, list(result.recordings))

    async def promoted_in_background(self, result: PromotionResult) -> None:
        """A stop that outlived its wait finished later: post it where it was asked for."""
        target = self._pending_posts.pop(result.meeting.id, None)
        if target is None:
            return
        guild = self.bot.get_guild(target[0])
        channel = guild.get_channel(target[1]) if guild is not None else None
        if guild is not None and isinstance(channel, discord.abc.Messageable):
            await self.post_result(guild, channel, result.meeting, result, list(result.recordings))

    async def post_result(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting,
                          result: PromotionResult, recordings: Sequence[Recording]) -> None:
        with contextlib.suppress(discord.HTTPException):
            await channel.send(result_text(guild, meeting, result, recordings))
        await self.upload(guild, channel, recordings)

    async def upload(self, guild: discord.Guild, channel: discord.abc.Messageable,
                     recordings: Sequence[Recording]) -> None:
        await upload_recordings(guild, channel, recordings, data_dir=self.data_dir,
                                prefix=await prefix_for(self.bot, guild))
