"""Who may do what: start and stop recordings, manage a guild's files.

Red's own checks (``admin_or_permissions``) guard whole commands; these answer the
finer questions inside a command (may this member fetch someone else's file?) with the
same rule everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from .settings import GuildSettings

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

__all__ = ["is_guild_admin", "may_control"]


async def is_guild_admin(bot: "Red", member: discord.Member) -> bool:
    """The bot owner, the guild owner, Manage Server/Administrator, or Red's admin role."""
    if await bot.is_owner(member) or member.guild.owner_id == member.id:
        return True
    if member.guild_permissions.manage_guild or member.guild_permissions.administrator:
        return True
    return bool(await bot.is_admin(member))


async def may_control(bot: "Red", member: discord.Member, settings: GuildSettings) -> bool:
    """Start and stop: an admin, or a member with the guild's recorder role."""
    if await is_guild_admin(bot, member):
        return True
    return settings.recorder_role is not None and any(r.id == settings.recorder_role for r in member.roles)
