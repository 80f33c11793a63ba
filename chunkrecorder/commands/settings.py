"""``[p]recordingset``: the guild's recording settings, kept in Red's Config.

Numbers come through Red's converters (``commands.Range``, Red's timedelta converter:
``commands/converters.py``) and words through ``core.settings``'s parsers, so a bad value
gets one line naming what is allowed, and Config is written only after the value is
known good. A running meeting keeps the settings it started with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional, cast

import discord
from redbot.core import commands
from redbot.core.utils.chat_formatting import box

from ..core.abc import MixinMeta
from ..core.config import AutoRecordRule
from ..core.consent import ConsentMode, parse_consent_mode
from ..core.errors import UserError
from ..core.settings import (
    AUTORECORD_MEMBERS,
    AUTOSTOP,
    FLUSH,
    LINK_EXPIRY,
    MAX_LENGTH,
    MOVE_FOLLOW,
    RECONNECT,
    RETENTION,
    TEMP_TTL,
    parse_bitrate,
    parse_bool,
    parse_channels,
    parse_archive,
    parse_delivery,
    parse_post_format,
    parse_move,
    parse_strategy,
)
from ..core.weblinks import parse_base_url, parse_bind
from ..i18n import _
from .converters import DurationSetting, RangeSetting

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.commands import Context

__all__ = ["SettingsCommands"]

# What each number accepts: a bare number in the setting's own unit, or a duration.
Seconds = Annotated[float, DurationSetting(FLUSH, allowed_units=["minutes", "seconds"])]
RetentionDays = Annotated[int, DurationSetting(RETENTION, allowed_units=["weeks", "days"])]
TempHours = Annotated[int, DurationSetting(TEMP_TTL, allowed_units=["weeks", "days", "hours"])]
MaxMinutes = Annotated[int, DurationSetting(MAX_LENGTH, allowed_units=["days", "hours", "minutes"])]
WaitMinutes = Annotated[int, DurationSetting(AUTOSTOP, allowed_units=["hours", "minutes"])]
Attempts = Annotated[int, RangeSetting(RECONNECT)]
Members = Annotated[int, RangeSetting(AUTORECORD_MEMBERS)]
LinkDays = Annotated[int, DurationSetting(LINK_EXPIRY, allowed_units=["weeks", "days"])]


def _strategy_words(strategy: str) -> str:
    if strategy == "per_user":
        return _("per speaker")
    if strategy == "mixed":
        return _("mixed only")
    return _("per speaker + mixed")


def _days(days: int) -> str:
    return _("1 day") if days == 1 else _("{days} days").format(days=days)


def _on_off(value: bool) -> str:
    return _("on") if value else _("off")


def _autorecord_words(guild: discord.Guild, rule: AutoRecordRule) -> str:
    channel = guild.get_channel(rule.channel_id)
    name = channel.name if channel is not None else str(rule.channel_id)
    return _("{channel} at {members}+").format(channel=name, members=rule.min_members)


class SettingsCommands(MixinMeta):
    @commands.group(name="recordingset", invoke_without_command=True)
    @commands.guild_only()
    @commands.admin_or_permissions(manage_guild=True)
    async def recordingset(self, ctx: "Context") -> None:
        """Recording settings for this server; without a subcommand, shows them."""
        await ctx.send(await self.settings_text(ctx))

    async def settings_text(self, ctx: "Context") -> str:
        assert ctx.guild is not None
        s = await self.service.settings.guild(ctx.guild.id)
        ttl = await self.service.settings.temp_ttl_hours()
        role = ctx.guild.get_role(s.recorder_role) if s.recorder_role else None
        rules = await self.service.settings.autorecord_rules(ctx.guild.id)
        rows = [
            ("flush", _("{seconds} s per chunk").format(seconds=f"{s.flush_interval:g}")),
            ("strategy", _strategy_words(s.strategy)),
            ("bitrate", _("{kbps} kb/s").format(kbps=s.bitrate // 1000)),
            ("channels", _("stereo") if s.channels == 2 else _("mono")),
            ("archive", _("FLAC (lossless)") if s.archive == "flac" else _("MP3")),
            ("retention", _days(s.retention_days) if s.retention_days else _("keep until deleted")),
            ("tempttl", _("{hours} h (bot-wide)").format(hours=ttl)),
            ("maxlength", _("{minutes} min").format(minutes=s.max_length_minutes)),
            ("autostop", _("after {minutes} min empty").format(minutes=s.autostop_minutes) if s.autostop_minutes
             else _("off")),
            ("autopromote", _on_off(s.auto_promote)),
            ("announce", _on_off(s.announce)),
            ("role", _("@{role} or Manage Server").format(role=role.name) if role else _("Manage Server")),
            ("reconnect", _("off") if not s.reconnect_attempts else _("1 attempt") if s.reconnect_attempts == 1
             else _("{attempts} attempts").format(attempts=s.reconnect_attempts)),
            ("consent", _("opt-in: only members who agree") if s.consent == "optin"
             else _("notice: everyone is told, opt-outs are left out")),
            ("autorecord", ", ".join(_autorecord_words(ctx.guild, r) for r in rules) or _("off")),
            ("delivery", _("in the channel where everyone could hear it, else by DM") if s.delivery == "channel"
             else _("by DM: the starter all of it, each speaker their own")),
            ("format", _("Opus (compact)") if s.post_format == "opus" else _("MP3")),
            ("linkexpiry", _days(s.link_expiry_days)),
            ("web", _("download links on (bot-wide)") if self.service.links.running
             else _("download links off (bot-wide)")),
            ("move", _("follow into the new channel") if s.move_action == MOVE_FOLLOW else _("stop recording")),
        ]
        width = max(len(k) for k, _v in rows)
        table = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
        return _("Recording settings for **{guild}**:\n{table}Change one with `{command}`.").format(
            guild=ctx.guild.name, table=box(table), command=f"{ctx.clean_prefix}recordingset <name> <value>"
        )

    async def _save(self, ctx: "Context", message: str, **changes: Any) -> None:
        assert ctx.guild is not None
        await self.service.settings.save(ctx.guild.id, **changes)  # UserError before anything is written
        live = self.service.live(ctx.guild.id)
        if live is not None:
            message = _("{change} The recording running now keeps its settings.").format(change=message)
        await ctx.send(message)

    @recordingset.command(name="flush")
    async def set_flush(self, ctx: "Context", seconds: Seconds) -> None:
        """Seconds of audio per chunk (1–60): shorter loses less in a crash and holds less in memory. Example: `[p]recordingset flush 10`."""
        await self._save(ctx, _("Chunks are now {seconds} seconds long.").format(seconds=f"{seconds:g}"),
                         flush_interval=float(seconds))

    @recordingset.command(name="strategy")
    async def set_strategy(self, ctx: "Context", strategy: str) -> None:
        """`per_user` (a file per speaker), `mixed` (one file) or `hybrid` (both). Example: `[p]recordingset strategy hybrid`."""
        value = parse_strategy(strategy)
        await self._save(ctx, _("Strategy set to `{strategy}`.").format(strategy=value.value), strategy=value.value)

    @recordingset.command(name="bitrate")
    async def set_bitrate(self, ctx: "Context", kbps: str) -> None:
        """MP3 bitrate in kb/s: 32, 48, 64, 96, 128, 160 or 192. Example: `[p]recordingset bitrate 96`."""
        value = parse_bitrate(kbps)
        await self._save(ctx, _("Bitrate set to {kbps} kb/s.").format(kbps=value // 1000), bitrate=value)

    @recordingset.command(name="channels")
    async def set_channels(self, ctx: "Context", layout: str) -> None:
        """`mono` or `stereo` files. Example: `[p]recordingset channels mono`."""
        value = parse_channels(layout)
        await self._save(ctx, _("Files will be stereo.") if value == 2 else _("Files will be mono."), channels=value)

    @recordingset.command(name="archive")
    async def set_archive(self, ctx: "Context", fmt: str) -> None:
        """What each track is kept as: `mp3` (small) or `flac` (lossless, for editing; about 5x the size). Example: `[p]recordingset archive flac`."""
        value = parse_archive(fmt)
        message = _("Recordings will be kept as lossless FLAC.") if value == "flac" else \
            _("Recordings will be kept as MP3.")
        await self._save(ctx, message, archive=value)

    @recordingset.command(name="retention")
    async def set_retention(self, ctx: "Context", days: RetentionDays) -> None:
        """Delete recordings older than this many days (0 keeps them); `30d` or `2w` work too. Example: `[p]recordingset retention 30`."""
        if not days:
            msg = _("Recordings are kept until deleted.")
        elif days == 1:
            msg = _("Recordings older than 1 day will be deleted.")
        else:
            msg = _("Recordings older than {days} days will be deleted.").format(days=days)
        await self._save(ctx, msg, retention_days=int(days))

    @recordingset.command(name="tempttl")
    @commands.is_owner()
    async def set_temp_ttl(self, ctx: "Context", hours: TempHours) -> None:
        """(Bot owner) Hours leftover temporary chunk files are kept, for every server; `2d` works too. Example: `[p]recordingset tempttl 24`."""
        await self.service.settings.set_temp_ttl_hours(int(hours))
        await ctx.send(_("Leftover temporary chunks are removed after 1 hour.") if hours == 1
                       else _("Leftover temporary chunks are removed after {hours} hours.").format(hours=hours))

    @recordingset.command(name="maxlength")
    async def set_max_length(self, ctx: "Context", minutes: MaxMinutes) -> None:
        """Stop a meeting after this many minutes (1–1440); `4h` or `1h30m` work too. Example: `[p]recordingset maxlength 120`."""
        msg = _("Recordings stop after 1 minute.") if minutes == 1 else \
            _("Recordings stop after {minutes} minutes.").format(minutes=minutes)
        await self._save(ctx, msg, max_length_minutes=int(minutes))

    @recordingset.command(name="autostop")
    async def set_autostop(self, ctx: "Context", minutes: WaitMinutes) -> None:
        """Stop when the voice channel has been empty this many minutes (0 = never); `5m` works too. Example: `[p]recordingset autostop 5`."""
        if not minutes:
            msg = _("Recordings no longer stop when the channel empties.")
        elif minutes == 1:
            msg = _("Recordings stop once the channel has been empty for 1 minute.")
        else:
            msg = _("Recordings stop once the channel has been empty for {minutes} minutes.").format(minutes=minutes)
        await self._save(ctx, msg, autostop_minutes=int(minutes))

    @recordingset.command(name="autopromote")
    async def set_autopromote(self, ctx: "Context", on_or_off: str) -> None:
        """Finish meetings a crash interrupted as soon as the cog loads again. Example: `[p]recordingset autopromote on`."""
        value = parse_bool(on_or_off, setting="autopromote")
        msg = _("Automatic promotion after a crash is on.") if value else _("Automatic promotion after a crash is off.")
        await self._save(ctx, msg, auto_promote=value)

    @recordingset.command(name="announce")
    async def set_announce(self, ctx: "Context", on_or_off: str) -> None:
        """Announce recordings in the channel (and show [REC] in my nickname). Example: `[p]recordingset announce on`."""
        value = parse_bool(on_or_off, setting="announce")
        await self._save(ctx, _("Announcements are on.") if value else _("Announcements are off."), announce=value)

    @recordingset.command(name="role")
    async def set_role(self, ctx: "Context", *, role: discord.Role = None) -> None:  # type: ignore[assignment]
        """Who may start and stop: members with this role (and Manage Server). No role: Manage Server only.

        Examples: `[p]recordingset role Scribes`, `[p]recordingset role` to clear.
        """
        # Not `Optional[...]`: discord.py would then clear the role for a name it cannot find.
        chosen = cast(Optional[discord.Role], role)
        if chosen is not None and chosen.is_default():
            raise UserError(_("Pick a specific role, not @everyone."))
        if chosen is not None:
            msg = _("Members with **{role}** can now start and stop recordings.").format(role=chosen.name)
        else:
            msg = _("Only members with Manage Server (or the bot's admin role) can start and stop recordings now.")
        await self._save(ctx, msg, recorder_role=chosen.id if chosen else None)

    @recordingset.command(name="reconnect")
    async def set_reconnect(self, ctx: "Context", attempts: Attempts) -> None:
        """Times I join again when the voice connection is lost for good (0–10); Discord's quick reconnects always continue the recording. Example: `[p]recordingset reconnect 3`."""
        if not attempts:
            msg = _("I won't join again by myself once the voice connection is lost for good; Discord's quick "
                    "reconnects still continue the recording.")
        elif attempts == 1:
            msg = _("I'll try to reconnect once before finishing a recording.")
        else:
            msg = _("I'll try to reconnect {attempts} times before finishing a recording.").format(attempts=attempts)
        await self._save(ctx, msg, reconnect_attempts=int(attempts))

    @recordingset.command(name="consent")
    async def set_consent(self, ctx: "Context", mode: str) -> None:
        """`notice` (everyone is told and recorded unless they opt out) or `optin` (only members who agree). Example: `[p]recordingset consent optin`."""
        value = parse_consent_mode(mode)
        if value is None:
            raise UserError(_("`{value}` is not a consent mode: choose `notice` (everyone is told; opt-outs are left "
                              "out) or `optin` (only members who agree are recorded).").format(value=mode))
        if value is ConsentMode.OPTIN:
            msg = _("Consent is opt-in: only members who agree (a button on the start message, or `{command}`) "
                    "are recorded.").format(command=f"{ctx.clean_prefix}record optin")
        else:
            msg = _("Consent is notice: everyone in the channel is told and recorded unless they opt out.")
        await self._save(ctx, msg, consent=value.value)

    @recordingset.command(name="autorecord")
    async def set_autorecord(self, ctx: "Context", channel: discord.VoiceChannel,
                             min_members: Members = 1) -> None:
        """Record a voice channel by itself once this many members (who have not opted out) are in it; 0 turns it off.

        Example: `[p]recordingset autorecord Standup 3`. A manual `[p]record stop` pauses the rule until the channel empties.
        """
        assert ctx.guild is not None
        settings = self.service.settings
        if not min_members:
            if await settings.remove_autorecord_rule(ctx.guild.id, channel.id):
                await ctx.send(_("**{channel}** is no longer recorded automatically.").format(channel=channel.name))
            else:
                await ctx.send(_("**{channel}** had no auto-record rule.").format(channel=channel.name))
            return
        await settings.set_autorecord_rule(ctx.guild.id, AutoRecordRule(channel.id, int(min_members)))
        if min_members == 1:
            msg = _("I'll record **{channel}** by myself whenever a member who has not opted out is in it, and "
                    "stop as usual once it is empty.").format(channel=channel.name)
        else:
            msg = _("I'll record **{channel}** by myself whenever {members} members who have not opted out are "
                    "in it, and stop as usual once it is empty.").format(channel=channel.name, members=min_members)
        await ctx.send(msg)
    @recordingset.command(name="delivery")
    async def set_delivery(self, ctx: "Context", where: str) -> None:
        """Where a meeting's files go: `channel` (where it was started, if everyone there could hear it; else to the starter by DM) or `dm` (the starter gets all, each speaker their own). Example: `[p]recordingset delivery dm`."""
        value = parse_delivery(where)
        if value == "dm":
            msg = _("Files now go by direct message: whoever starts a recording gets all of it, each speaker "
                    "their own file.")
        else:
            msg = _("Files now go to the channel a recording was started from, when everyone who can read it "
                    "could hear the meeting (otherwise to whoever started it, by direct message).")
        await self._save(ctx, msg, delivery=value)

    @recordingset.command(name="format")
    async def set_format(self, ctx: "Context", audio_format: str) -> None:
        """What is posted and fetched by default: `mp3`, or `opus` (about half the size, made on first use). Example: `[p]recordingset format opus`."""
        value = parse_post_format(audio_format)
        msg = _("Recordings are now posted as Opus (about 14 MiB per hour and speaker).") if value == "opus" \
            else _("Recordings are now posted as MP3.")
        await self._save(ctx, msg, post_format=value)

    @recordingset.command(name="linkexpiry")
    async def set_link_expiry(self, ctx: "Context", days: LinkDays) -> None:
        """Days a download link works (1–365); `2w` works too. Example: `[p]recordingset linkexpiry 7`."""
        msg = _("New download links work for 1 day.") if days == 1 else \
            _("New download links work for {days} days.").format(days=days)
        await self._save(ctx, msg, link_expiry_days=int(days))

    # ------------------------------------------------------------------ the download server (owner)
    @recordingset.group(name="web", invoke_without_command=True)
    @commands.is_owner()
    async def web(self, ctx: "Context") -> None:
        """(Bot owner) Download links from the bot's own web server: shows whether they are on.

        `[p]recordingset web on 127.0.0.1:8080 https://rec.example.com` turns them on, `[p]recordingset web off` turns them off, `[p]recordingset web rotate` revokes every link given so far.
        """
        web = await self.service.links.config()
        if self.service.links.running:
            text = _("Download links are on: listening on {host}:{port}, links start with {url}.").format(
                host=web.host, port=web.port, url=web.base_url or f"http://{web.host}:{web.port}")
        elif web.enabled:
            text = _("Download links are on, but the server is not running: {problem}").format(
                problem=self.service.links.problem or _("it did not start."))
        else:
            text = _("Download links are off. `{command}` turns them on.").format(
                command=f"{ctx.clean_prefix}recordingset web on <HOST:PORT> [public URL]")
        await ctx.send(text)

    @web.command(name="on")
    @commands.is_owner()
    async def web_on(self, ctx: "Context", bind: str, public_url: str = "") -> None:
        """(Bot owner) Serve download links on HOST:PORT; links start with the public URL (default: http://HOST:PORT).

        Example: `[p]recordingset web on 127.0.0.1:8080 https://rec.example.com` behind a reverse proxy.
        """
        host, port = parse_bind(bind)
        base = parse_base_url(public_url) if public_url else ""
        async with ctx.typing():
            web = await self.service.links.enable(host, port, base)
        url = web.base_url or f"http://{host}:{port}"
        lines = [_("Download links are on: listening on {host}:{port}, links start with {url}.").format(
            host=host, port=port, url=url)]
        if url.startswith("http://") and host not in ("127.0.0.1", "::1", "localhost"):
            lines.append(_("The links are plain HTTP: anyone who can watch the network between the bot and a "
                           "member can read them. Put HTTPS in front (a reverse proxy) before you use them "
                           "beyond a trusted network."))
        await ctx.send("\n".join(lines))

    @web.command(name="off")
    @commands.is_owner()
    async def web_off(self, ctx: "Context") -> None:
        """(Bot owner) Stop the download server: links stop working until it is on again."""
        await self.service.links.disable()
        await ctx.send(_("Download links are off; files are attached again (in parts when they are large)."))

    @web.command(name="rotate")
    @commands.is_owner()
    async def web_rotate(self, ctx: "Context") -> None:
        """(Bot owner) Revoke every download link given so far (a new link secret)."""
        await self.service.links.rotate()
        await ctx.send(_("Every download link given so far is revoked; new links work as before."))

    @recordingset.command(name="move")
    async def set_move(self, ctx: "Context", stop_or_follow: str) -> None:
        """What happens when someone moves me to another voice channel: `stop` the recording, or `follow` and record the new channel as the same meeting. Example: `[p]recordingset move follow`."""
        value = parse_move(stop_or_follow)
        if value == MOVE_FOLLOW:
            msg = _("When I'm moved to another voice channel, I'll keep recording there as the same meeting.")
        else:
            msg = _("When I'm moved to another voice channel, I'll stop and post the recording.")
        await self._save(ctx, msg, move_action=value)
