"""``[p]recordingset``: the guild's recording settings, kept in Red's Config.

Each setter parses the text itself (``core.settings``) so a bad value gets one line
naming the allowed range, and Config is written only after the value is known good.
A running meeting keeps the settings it started with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from redbot.core import commands
from redbot.core.utils.chat_formatting import box

from ..core.abc import MixinMeta
from ..core.errors import UserError
from ..core.settings import (
    parse_bitrate,
    parse_bool,
    parse_channels,
    parse_number,
    parse_strategy,
)

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.commands import Context

__all__ = ["SettingsCommands"]


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
        rows = [
            ("flush", f"{s.flush_interval:g} s per chunk"),
            ("strategy", {"per_user": "per speaker", "mixed": "mixed only", "hybrid": "per speaker + mixed"}[s.strategy]),
            ("bitrate", f"{s.bitrate // 1000} kb/s"),
            ("channels", "stereo" if s.channels == 2 else "mono"),
            ("retention", f"{s.retention_days} days" if s.retention_days else "keep until deleted"),
            ("tempttl", f"{ttl} h (bot-wide)"),
            ("maxlength", f"{s.max_length_minutes} min"),
            ("autostop", f"after {s.autostop_minutes} min empty" if s.autostop_minutes else "off"),
            ("autopromote", "on" if s.auto_promote else "off"),
            ("announce", "on" if s.announce else "off"),
            ("role", f"@{role.name} or Manage Server" if role else "Manage Server"),
            ("reconnect", f"{s.reconnect_attempts} attempts"),
        ]
        width = max(len(k) for k, _ in rows)
        table = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
        return f"Recording settings for **{ctx.guild.name}**:\n{box(table)}" \
               f"Change one with `{ctx.clean_prefix}recordingset <name> <value>`."

    async def _save(self, ctx: "Context", message: str, **changes: Any) -> None:
        assert ctx.guild is not None
        await self.service.settings.save(ctx.guild.id, **changes)  # UserError before anything is written
        live = self.service.live(ctx.guild.id)
        later = " The recording running now keeps its settings." if live is not None else ""
        await ctx.send(message + later)

    @recordingset.command(name="flush")
    async def set_flush(self, ctx: "Context", seconds: str) -> None:
        """Seconds of audio per chunk (1–300): shorter loses less in a crash. Example: `[p]recordingset flush 10`."""
        value = parse_number(seconds, what="the flush interval", unit="seconds", low=1, high=300)
        await self._save(ctx, f"Chunks are now {value:g} seconds long.", flush_interval=float(value))

    @recordingset.command(name="strategy")
    async def set_strategy(self, ctx: "Context", strategy: str) -> None:
        """`per_user` (a file per speaker), `mixed` (one file) or `hybrid` (both). Example: `[p]recordingset strategy hybrid`."""
        value = parse_strategy(strategy)
        await self._save(ctx, f"Strategy set to `{value.value}`.", strategy=value.value)

    @recordingset.command(name="bitrate")
    async def set_bitrate(self, ctx: "Context", kbps: str) -> None:
        """MP3 bitrate in kb/s: 32, 48, 64, 96, 128, 160 or 192. Example: `[p]recordingset bitrate 96`."""
        value = parse_bitrate(kbps)
        await self._save(ctx, f"Bitrate set to {value // 1000} kb/s.", bitrate=value)

    @recordingset.command(name="channels")
    async def set_channels(self, ctx: "Context", layout: str) -> None:
        """`mono` or `stereo` files. Example: `[p]recordingset channels mono`."""
        value = parse_channels(layout)
        await self._save(ctx, f"Files will be {'stereo' if value == 2 else 'mono'}.", channels=value)

    @recordingset.command(name="retention")
    async def set_retention(self, ctx: "Context", days: str) -> None:
        """Delete recordings older than this many days (0 keeps them). Example: `[p]recordingset retention 30`."""
        value = int(parse_number(days, what="the retention", unit="days", low=0, high=3650, integer=True))
        msg = f"Recordings older than {value} days will be deleted." if value else "Recordings are kept until deleted."
        await self._save(ctx, msg, retention_days=value)

    @recordingset.command(name="tempttl")
    @commands.is_owner()
    async def set_temp_ttl(self, ctx: "Context", hours: str) -> None:
        """(Bot owner) Hours leftover temporary chunk files are kept, for every server. Example: `[p]recordingset tempttl 24`."""
        value = int(parse_number(hours, what="the temp file lifetime", unit="hours", low=1, high=720, integer=True))
        await self.service.settings.set_temp_ttl_hours(value)
        await ctx.send(f"Leftover temporary chunks are removed after {value} hours.")

    @recordingset.command(name="maxlength")
    async def set_max_length(self, ctx: "Context", minutes: str) -> None:
        """Stop a meeting after this many minutes (1–1440). Example: `[p]recordingset maxlength 120`."""
        value = int(parse_number(minutes, what="the maximum length", unit="minutes", low=1, high=1440, integer=True))
        await self._save(ctx, f"Recordings stop after {value} minutes.", max_length_minutes=value)

    @recordingset.command(name="autostop")
    async def set_autostop(self, ctx: "Context", minutes: str) -> None:
        """Stop when the voice channel has been empty this many minutes (0 = never). Example: `[p]recordingset autostop 5`."""
        value = int(parse_number(minutes, what="the empty-channel wait", unit="minutes", low=0, high=1440, integer=True))
        msg = f"Recordings stop once the channel has been empty for {value} minutes." if value else \
            "Recordings no longer stop when the channel empties."
        await self._save(ctx, msg, autostop_minutes=value)

    @recordingset.command(name="autopromote")
    async def set_autopromote(self, ctx: "Context", on_or_off: str) -> None:
        """Finish meetings a crash interrupted as soon as the cog loads again. Example: `[p]recordingset autopromote on`."""
        value = parse_bool(on_or_off, what="automatic promotion after a crash")
        await self._save(ctx, f"Automatic promotion after a crash is {'on' if value else 'off'}.", auto_promote=value)

    @recordingset.command(name="announce")
    async def set_announce(self, ctx: "Context", on_or_off: str) -> None:
        """Announce recordings in the channel (and show [REC] in my nickname). Example: `[p]recordingset announce on`."""
        value = parse_bool(on_or_off, what="announcements")
        await self._save(ctx, f"Announcements are {'on' if value else 'off'}.", announce=value)

    @recordingset.command(name="role")
    async def set_role(self, ctx: "Context", *, role: discord.Role = None) -> None:
        """Who may start and stop: members with this role (and Manage Server). No role: Manage Server only.

        Examples: `[p]recordingset role Scribes`, `[p]recordingset role` to clear.
        """
        if role is not None and role.is_default():
            raise UserError("Pick a specific role, not @everyone.")
        msg = f"Members with **{role.name}** can now start and stop recordings." if role else \
            "Only members with Manage Server (or the bot's admin role) can start and stop recordings now."
        await self._save(ctx, msg, recorder_role=role.id if role else None)

    @recordingset.command(name="reconnect")
    async def set_reconnect(self, ctx: "Context", attempts: str) -> None:
        """Reconnect attempts after the voice connection drops (0–10). Example: `[p]recordingset reconnect 3`."""
        value = int(parse_number(attempts, what="reconnect attempts", unit="attempts", low=0, high=10, integer=True))
        await self._save(ctx, f"I'll try to reconnect {value} times before finishing a recording.", reconnect_attempts=value)
