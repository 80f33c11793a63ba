"""Errors a user can cause, and the one line each becomes in Discord.

Red's own handler answers a missing argument with the whole help page and stays
silent on a failed permission check; a member then does not know what went wrong.
The cog's ``cog_command_error`` asks :func:`explain` first and leaves to Red only
what it does not cover (cooldowns, disabled commands, ...).
"""

from __future__ import annotations

import logging
from typing import Optional

import discord
from discord import app_commands
from redbot.core import commands
from redbot.core.commands.requires import PrivilegeLevel

from ..i18n import _
from ..objects.errors import StoreError
from .echo import echo

__all__ = ["ControlDenied", "UserError", "ValueRefused", "explain"]

log = logging.getLogger("red.chunkrecorder.errors")


class UserError(Exception):
    """Something the user can fix; ``str(exc)`` is one friendly line for Discord.

    Raised before anything is changed, so catching it never leaves half-done work.
    """


class ValueRefused(commands.BadArgument):
    """A converter refused an argument; ``str(exc)`` is the one line saying why and what
    is allowed (a setting's bounds, say), shown as it is."""


class ControlDenied(commands.CheckFailure):
    """The member may not start or stop recordings; the message says who may."""


async def explain(ctx: commands.Context, error: Exception) -> Optional[str]:
    """One line for ``error``; ``""`` for silence (as Red keeps for global checks);
    ``None`` to leave it to Red's handler."""
    if isinstance(error, commands.HybridCommandError):
        # The slash form of a hybrid command: discord.py wraps what the command raised in
        # app_commands' errors, which Red's handler leaves unanswered.
        inner = error.original
        if isinstance(inner, app_commands.CommandInvokeError):
            error = commands.CommandInvokeError(inner.original)
        elif isinstance(inner, app_commands.TransformerError):
            error = commands.BadArgument(str(inner))
    command = ctx.command
    usage = f"`{ctx.clean_prefix}{command.qualified_name} {command.signature}`".replace(" `", "`") if command else ""
    if isinstance(error, commands.CommandInvokeError):
        original = error.original
        if isinstance(original, (UserError, StoreError)):  # store/pipeline messages are user-fit
            return str(original)
        log.error("Error in %s", command.qualified_name if command else "?", exc_info=original)
        return _(
            "Something went wrong running `{command}` ({error}); the details are in the bot's log."
        ).format(command=f"{ctx.clean_prefix}{command.qualified_name if command else ''}",
                 error=type(original).__name__)
    if isinstance(error, ControlDenied):
        return str(error)
    if isinstance(error, commands.NoPrivateMessage):
        return _("Recording commands work only in a server.")
    if isinstance(error, commands.MissingRequiredArgument):
        return _("Missing `{argument}`. Usage: {usage}").format(argument=error.param.name, usage=usage)
    if isinstance(error, ValueRefused):
        return str(error)
    if isinstance(error, commands.ChannelNotFound):
        return _("I can't find a voice channel called `{name}`. Usage: {usage}").format(
            name=echo(error.argument), usage=usage
        )
    if isinstance(error, commands.RoleNotFound):
        return _("I can't find a role called `{name}`. Usage: {usage}").format(name=echo(error.argument), usage=usage)
    if isinstance(error, commands.BadArgument):
        if getattr(ctx.current_parameter, "converter", None) is int and ctx.current_argument:
            return _("`{value}` is not a whole number. Usage: {usage}").format(
                value=echo(ctx.current_argument), usage=usage
            )
        # A library's sentence may quote the argument: kept short and without mentions.
        problem = discord.utils.escape_mentions(" ".join(str(error).split()))
        if len(problem) > 300:
            problem = problem[:299] + "…"
        return _("{problem}. Usage: {usage}").format(problem=problem.rstrip("."), usage=usage)
    if isinstance(error, commands.UserInputError):
        return _("That doesn't look right. Usage: {usage}").format(usage=usage)
    if type(error) is commands.CheckFailure:
        # Red's privilege checks (admin, owner). Its global checks (blocklist, ignored
        # channels) fail the same way and must stay silent, as everywhere in Red.
        if not await ctx.bot.can_run(ctx, call_once=True) or not await ctx.bot.can_run(ctx):
            return ""
        if command is not None and command.requires.privilege_level is PrivilegeLevel.BOT_OWNER:
            return _("Only the bot owner can change that.")
        return _("You need Manage Server (or the bot's admin role) to use that.")
    return None
