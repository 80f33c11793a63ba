"""The Red cog: commands come from the mixins in ``commands/``; this file wires them.

It owns the cog's lifetime (open the store, start the recorder and its recovery,
close both on unload), turns Discord events into calls on the ``MeetingManager``,
posts results, answers every error with one line, and deletes a member's data on
request. The work itself is done by ``core/``, ``pipeline/`` and ``store/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import discord
from redbot.core import Config, commands
from redbot.core.bot import Red
from redbot.core.data_manager import cog_data_path
from redbot.core.errors import CogLoadError

from .commands.record import RecordCommands
from .commands.recordings import RecordingsCommands
from .commands.settings import SettingsCommands
from .core.abc import CompositeMetaClass
from .core.errors import UserError, explain
from .core.posting import result_text, short_error, upload_recordings
from .core.live import LiveMeeting, MeetingManager
from .core.nickname import PREFIX as NICK_PREFIX, RecNickname
from .core.progress import ProgressMessage
from .core.settings import (
    CONFIG_IDENTIFIER,
    GLOBAL_DEFAULTS,
    GUILD_DEFAULTS,
    MEMBER_DEFAULTS,
    GuildSettings,
)
from .objects.records import Meeting, Recording
from .pipeline.errors import PromotionTimeout
from .store import SqlRecordingService, StoreError

__all__ = ["ChunkRecorder"]

log = logging.getLogger("red.chunkrecorder")

RequestType = Literal["discord_deleted_user", "owner", "user", "user_strict"]

#: How often retention and leftover temp files are swept.
CLEANUP_EVERY_S = 3600.0


async def _discord_connector(channel: Any) -> Any:
    from .voice.discord_bridge import connect

    return await connect(channel)


class ChunkRecorder(
    RecordCommands,
    RecordingsCommands,
    SettingsCommands,
    commands.Cog,
    metaclass=CompositeMetaClass,
):
    """Record voice channels per speaker and mixed, in sync and crash-safe."""

    __version__ = "0.1.0"
    __author__ = "chunkrecorder developers"

    def __init__(self, bot: Red) -> None:
        super().__init__()
        self.bot = bot
        self.config = Config.get_conf(self, identifier=CONFIG_IDENTIFIER, force_registration=True)
        self.config.register_global(**GLOBAL_DEFAULTS)
        # ``active``: the live meeting's text channel and the nickname before [REC],
        # so a restart after a crash can report and restore.
        self.config.register_guild(**GUILD_DEFAULTS, active={})
        self.config.register_member(**MEMBER_DEFAULTS)
        self.data_dir: Path = cog_data_path(self)
        #: The network edge: joins a voice channel and returns a ``VoiceLink``.
        #: Tests and the harness put their fake here before recording.
        self.connector = _discord_connector
        self.store = SqlRecordingService(self.data_dir / "chunkrecorder.sqlite3")
        self.recorder: Any = None
        self.meetings = MeetingManager(
            recorder=None,
            connector=lambda channel: self.connector(channel),
            on_auto_stop=self._auto_stop,
            accept_user=self._accepts,
        )
        self.nickname = RecNickname()
        self._opted_out: dict[int, frozenset[int]] = {}
        self._background: set[asyncio.Task] = set()
        #: Meetings whose promotion went on in the background: (guild, text channel).
        self._pending_posts: dict[str, tuple[int, int]] = {}
        self.recovery_report: Any = None

    def format_help_for_context(self, ctx: commands.Context) -> str:
        return f"{super().format_help_for_context(ctx)}\n\nVersion: {self.__version__}"

    # ------------------------------------------------------------------ lifetime
    async def cog_load(self) -> None:
        try:
            await self._open()
        except BaseException as exc:
            # Leave nothing running behind a failed load (Red drops the cog object).
            if self.recorder is not None:
                with contextlib.suppress(Exception):
                    await self.recorder.close()
            await self.store.close()
            if isinstance(exc, (StoreError, OSError)):
                raise CogLoadError(
                    f"chunkrecorder cannot open its recordings in {self.data_dir}: {short_error(exc)}"
                ) from exc
            raise

    async def _open(self) -> None:
        from .pipeline.recorder import Recorder

        await self.store.open()
        # The recorder is passive: the cog runs the session ticks (with the receiver poll
        # and the watchdog), the cleanup (per-guild retention) and the promotion of
        # crashed meetings (per-guild auto-promote).
        self.recorder = Recorder(
            store=self.store,
            data_dir=self.data_dir,
            on_promoted=self._promoted_in_background,
        )
        self.meetings.recorder = self.recorder
        self.recovery_report = await self.recorder.start()
        for guild_id, members in (await self.config.all_members()).items():
            self._opted_out[guild_id] = frozenset(uid for uid, data in members.items() if data.get("opted_out"))
        self._spawn(self._after_restart())
        self._spawn(self._cleanup_loop())

    async def cog_unload(self) -> None:
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        live = list(self.meetings.live.values())
        await self.meetings.close()
        if self.recorder is not None:
            try:
                await self.recorder.close()
            except Exception:
                log.exception("Closing the recorder failed; the next load recovers the meetings")
        await self.store.close()
        for meeting in live:
            guild = self.bot.get_guild(meeting.guild_id)
            channel = guild.get_channel(meeting.text_channel_id) if guild and meeting.text_channel_id else None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._restore_nick(guild), 5)
            if channel is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.send(
                        f"⏸️ Recording of **{meeting.channel.name}** paused: the recorder was unloaded. "
                        f"Everything so far is kept; meeting `{meeting.meeting_id}` is finished when it loads again."
                    ), 5)

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _after_restart(self) -> None:
        """What a crash (or an unload mid-meeting) left: restore the nickname, then finish
        each interrupted meeting if its guild asks for that, in the channel it began in."""
        await self.bot.wait_until_red_ready()
        channels: dict[str, int] = {}
        for guild_id, data in (await self.config.all_guilds()).items():
            active = data.get("active")
            if not active or guild_id in self.meetings.live:
                continue
            if active.get("meeting") and active.get("text_channel"):
                channels[active["meeting"]] = active["text_channel"]
            guild = self.bot.get_guild(guild_id)
            if guild is not None:
                await self._restore_nick(guild)
            await self.config.guild_from_id(guild_id).active.clear()
        report = self.recovery_report
        for meeting_id in getattr(report, "awaiting_promotion", ()) or ():
            try:
                meeting = await self.store.get_meeting(meeting_id)
            except Exception:
                continue
            guild = self.bot.get_guild(meeting.guild_id)
            channel = guild.get_channel(channels[meeting_id]) if guild and meeting_id in channels else None
            settings = GuildSettings.from_config(await self.config.guild_from_id(meeting.guild_id).all())
            if not settings.auto_promote:
                if channel is not None:
                    with contextlib.suppress(discord.HTTPException):
                        await channel.send(
                            f"The recording `{meeting.id}` was interrupted by a restart. Its audio is kept: "
                            f"`{await _prefix(self.bot, guild)}recordings promote {meeting.id}` finishes it."
                        )
                continue
            try:
                if channel is not None and guild is not None:
                    await self.promote_and_post(guild, channel, meeting,
                                                title="Finishing the recording a restart interrupted:")
                else:
                    await self.recorder.promote(meeting.id)
            except Exception:
                log.exception("Promoting interrupted meeting %s failed", meeting.id)

    async def _promoted_in_background(self, result: Any) -> None:
        """A stop that outlived its wait finished later: post it where it was asked for."""
        target = self._pending_posts.pop(result.meeting.id, None)
        if target is None:
            return
        guild = self.bot.get_guild(target[0])
        channel = guild.get_channel(target[1]) if guild is not None else None
        if guild is not None and channel is not None:
            await self.post_result(guild, channel, result.meeting, result, list(result.recordings))

    async def _cleanup_loop(self) -> None:
        await self.bot.wait_until_red_ready()
        while True:
            try:
                await self.run_cleanup()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Cleanup failed; trying again later")
            await asyncio.sleep(CLEANUP_EVERY_S)

    async def run_cleanup(self) -> int:
        """Each guild's retention and the bot-wide temp TTL, in one pass of the recorder's
        cleanup; returns how many recordings retention deleted."""
        retention = {
            guild_id: GuildSettings.from_config(data).retention_days
            for guild_id, data in (await self.config.all_guilds()).items()
        }
        ttl_h = await self.config.temp_ttl_hours()
        report = await self.recorder.cleanup(temp_ttl_s=ttl_h * 3600.0, retention_days=retention)
        return report.recordings_deleted

    # ------------------------------------------------------------------ opt-out
    def _accepts(self, guild_id: int, user_id: int) -> bool:
        """Called from the receive path per frame: a set lookup, nothing more."""
        return user_id not in self._opted_out.get(guild_id, frozenset())

    async def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        await self.config.member_from_ids(guild_id, user_id).opted_out.set(opted_out)
        current = set(self._opted_out.get(guild_id, frozenset()))
        (current.add if opted_out else current.discard)(user_id)
        self._opted_out[guild_id] = frozenset(current)  # one atomic swap for the receive thread

    # ------------------------------------------------------------------ permissions
    async def may_control(self, member: discord.Member, settings: GuildSettings) -> bool:
        if await self.is_guild_admin(member):
            return True
        return settings.recorder_role is not None and any(r.id == settings.recorder_role for r in member.roles)

    async def is_guild_admin(self, member: discord.Member) -> bool:
        if await self.bot.is_owner(member) or member.guild.owner_id == member.id:
            return True
        if member.guild_permissions.manage_guild or member.guild_permissions.administrator:
            return True
        return await self.bot.is_admin(member)

    # ------------------------------------------------------------------ start / stop
    async def start_recording(self, ctx: commands.Context, channel: discord.VoiceChannel) -> None:
        guild = ctx.guild
        assert guild is not None
        live = self.meetings.get(guild.id)
        if live is not None:
            raise UserError(
                f"I'm already recording **{live.channel.name}** in this server; "
                f"`{ctx.clean_prefix}record stop` ends it first."
            )
        perms = channel.permissions_for(guild.me)
        if not (perms.connect and perms.view_channel):
            raise UserError(f"I need the Connect permission in **{channel.name}** to record it.")
        if channel.user_limit and len(channel.members) >= channel.user_limit and not perms.move_members:
            raise UserError(f"**{channel.name}** is full, so I can't join it.")
        settings = GuildSettings.from_config(await self.config.guild(guild).all())
        async with ctx.typing():
            live = await self.meetings.start(
                guild_id=guild.id,
                channel=channel,
                text_channel_id=ctx.channel.id,
                started_by=ctx.author.id,
                settings=settings,
            )
        nick_before: Optional[str] = None
        changed = False
        if settings.announce:
            changed, nick_before = await self.nickname.apply(guild)
        await self.config.guild(guild).active.set(
            {"meeting": live.meeting_id, "text_channel": ctx.channel.id, "nick": nick_before, "nick_changed": changed}
        )
        kind = {"per_user": "one file per speaker", "mixed": "one mixed file", "hybrid": "per speaker and mixed"}[settings.strategy]
        if settings.announce:
            await ctx.send(
                f"🔴 Recording **{channel.name}** ({kind}). Stop with `{ctx.clean_prefix}record stop`; "
                f"anyone can opt out with `{ctx.clean_prefix}record optout`."
            )
        else:
            await ctx.send(f"Recording **{channel.name}** (meeting `{live.meeting_id}`).")

    async def _auto_stop(self, live: LiveMeeting, reason: str) -> None:
        guild = self.bot.get_guild(live.guild_id)
        if guild is None:
            with contextlib.suppress(UserError):
                await self.meetings.stop(live.guild_id, reason=reason)
            return
        channel = guild.get_channel(live.text_channel_id) if live.text_channel_id else None
        with contextlib.suppress(UserError):
            await self.finish_recording(guild, channel, reason=reason)

    async def finish_recording(self, guild: discord.Guild, channel: Optional[discord.abc.Messageable], *,
                               reason: str) -> None:
        """The one stop path: leave voice, show progress, promote, post the files."""
        live = self.meetings.get(guild.id)
        if live is None:
            raise UserError("Nothing is being recorded in this server.")
        if live.ending:
            raise UserError("That recording is already stopping; the files are on their way.")
        progress = ProgressMessage(channel, f"⏹️ Recording of **{live.channel.name}** ended ({reason})") \
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
            if channel is not None:
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
                        f"an admin can retry with `{await _prefix(self.bot, guild)}recordings promote {live.meeting_id}`."
                    )
            return
        await self._forget_active(guild)
        if live.erased:
            await self._erase_users(live.erased)
            result_recs = [r for r in result.recordings if r.user_id not in live.erased]
        else:
            result_recs = list(result.recordings)
        if progress is not None:
            await progress.update("done.")
        if channel is not None:
            await self.post_result(guild, channel, live.session.meeting, result, result_recs)

    async def _forget_active(self, guild: discord.Guild) -> None:
        await self._restore_nick(guild)
        await self.config.guild(guild).active.clear()

    async def _restore_nick(self, guild: Optional[discord.Guild]) -> None:
        if guild is None:
            return
        active = await self.config.guild(guild).active()
        if active:
            before = active.get("nick")
        else:  # no record of the old name: drop our prefix from the current one
            nick = guild.me.nick if guild.me is not None else None
            before = nick[len(NICK_PREFIX):] if nick and nick.startswith(NICK_PREFIX) else nick
        await self.nickname.restore(guild, before or None)

    async def promote_and_post(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting, *,
                               title: str = "Promoting") -> None:
        progress = ProgressMessage(channel, f"🛠️ {title} `{meeting.id}`")
        await progress.start("collecting chunks…")
        try:
            result = await self.recorder.promote(meeting.id, progress=progress)
        except Exception as exc:
            log.exception("Promoting meeting %s failed", meeting.id)
            raise UserError(f"Promoting `{meeting.id}` failed: {short_error(exc)}. Its chunks are kept; try again later.") from None
        await progress.update("done.")
        await self.post_result(guild, channel, meeting, result, list(result.recordings))

    # ------------------------------------------------------------------ posting files
    async def post_result(self, guild: discord.Guild, channel: discord.abc.Messageable, meeting: Meeting,
                          result: Any, recordings: Sequence[Recording]) -> None:
        with contextlib.suppress(discord.HTTPException):
            await channel.send(result_text(guild, meeting, result, recordings))
        await self.upload_recordings(guild, channel, recordings)

    async def upload_recordings(self, guild: discord.Guild, channel: discord.abc.Messageable,
                                recordings: Sequence[Recording]) -> None:
        await upload_recordings(guild, channel, recordings, data_dir=self.data_dir,
                                prefix=await _prefix(self.bot, guild))

    # ------------------------------------------------------------------ deleting
    async def delete_recording(self, guild_id: int, recording_id: str) -> None:
        await self.recorder.delete_recording(recording_id, guild_id=guild_id)

    async def delete_meeting(self, guild_id: int, meeting_id: str) -> int:
        return (await self.recorder.delete_meeting(meeting_id, guild_id=guild_id)).files

    def meeting_disk_usage(self, meeting_id: str) -> int:
        return self.recorder.meeting_disk_usage(meeting_id)

    async def red_delete_data_for_user(self, *, requester: RequestType, user_id: int) -> None:
        """Delete a member's per-user recordings, chunks and opt-out choice.

        Mixed files are everyone's voices in one track and are kept (the end user data
        statement says so). A requester of kind "user" (a member asking under the
        non-strict setting) keeps the opt-out entry: erasing it would start recording
        them again, the opposite of what they asked for; every other kind erases it too.
        """
        for live in self.meetings.live.values():
            live.erased.add(user_id)  # refuse their audio for the rest of live meetings
        await self._erase_users({user_id})
        if requester != "user":
            for guild_id, members in (await self.config.all_members()).items():
                if user_id in members:
                    await self.config.member_from_ids(guild_id, user_id).clear()
                    current = set(self._opted_out.get(guild_id, frozenset()))
                    current.discard(user_id)
                    self._opted_out[guild_id] = frozenset(current)

    async def _erase_users(self, user_ids: set[int]) -> None:
        # The recorder's erasure: buffered audio in live sessions, half-assembled tracks,
        # chunks and finished per-user recordings; mixes stay.
        if self.recorder is not None:
            for user_id in user_ids:
                await self.recorder.erase_user(user_id)

    # ------------------------------------------------------------------ Discord events
    @commands.Cog.listener()
    async def on_voice_state_update(self, member: discord.Member, before: discord.VoiceState,
                                    after: discord.VoiceState) -> None:
        me = self.bot.user
        if me is None or member.id != me.id:
            return  # members coming and going: the tick watches the channel's head count
        self.meetings.bot_voice_moved(member.guild.id, after.channel.id if after.channel else None)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        self.meetings.channel_deleted(channel.guild.id, channel.id)

    # ------------------------------------------------------------------ errors
    async def cog_command_error(self, ctx: commands.Context, error: Exception) -> None:
        """Every error a user can cause becomes one line; the rest goes to the log."""
        line = await explain(ctx, error)
        if line is None:
            await self.bot.on_command_error(ctx, error, unhandled_by_cog=True)
            return
        if line:
            with contextlib.suppress(discord.HTTPException):
                await ctx.send(line.replace("[p]", ctx.clean_prefix))


async def _prefix(bot: Red, guild: Optional[discord.Guild]) -> str:
    prefixes = await bot.get_valid_prefixes(guild)
    return prefixes[0] if prefixes else "[p]"
