"""Asking before something that cannot be undone: Red's ``ConfirmView`` buttons, or typed yes/no.

Buttons are what members expect; a typed answer still works where buttons do not show
(some clients, screen readers, a bot without the permission to add components) and is
what the cog asked for before, so both are accepted and whichever comes first wins.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Optional

import discord
from redbot.core import commands
from redbot.core.utils.predicates import MessagePredicate
from redbot.core.utils.views import ConfirmView

__all__ = ["confirm"]


async def confirm(ctx: commands.Context, question: str, *, timeout: float) -> Optional[bool]:
    """True (yes), False (no), or None when nobody answered within ``timeout`` seconds."""
    view = ConfirmView(ctx.author, timeout=timeout, disable_buttons=True)
    # Listen for the typed answer before the question goes out: an answer that comes
    # back at once (a fast client, a busy bot) must not pass before anyone listens.
    pred = MessagePredicate.yes_or_no(ctx)
    typed = asyncio.ensure_future(ctx.bot.wait_for("message", check=pred))
    await asyncio.sleep(0)  # (the wait is registered when its task first runs)
    try:
        view.message = await ctx.send(question, view=view)
    except BaseException:
        typed.cancel()
        raise
    clicked = asyncio.ensure_future(view.wait())
    try:
        done, _ = await asyncio.wait({typed, clicked}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (typed, clicked):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(typed, clicked, return_exceptions=True)
    if typed in done and not typed.cancelled() and typed.exception() is None:
        view.stop()
        with contextlib.suppress(discord.HTTPException):
            await view.message.edit(view=None)
        return bool(pred.result)
    if clicked in done:
        return view.result
    view.stop()
    return None
