"""The consent buttons: "Agree for this meeting" and "Agree always", surviving restarts.

A guild in ``optin`` mode records only members who agreed. The start message and each
join notice carry these two buttons. Their custom ids are fixed, so one view registered
with ``bot.add_view`` in ``cog_load`` answers clicks on every such message, also on
messages sent before a restart or a reload (discord.py routes a click by custom id
when no view is tracked for that message). Each message gets its own view instance
(discord.py tracks the instance per message); every instance a load created is stopped
at unload, so a click after a reload reaches the new cog, never the old one.

What a click does is the service's (``on_agree``): this module only turns the click
into that call and shows its answer to the member alone (an ephemeral reply).
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Optional

import discord

from ..i18n import _

__all__ = ["AGREE_ALWAYS_ID", "AGREE_MEETING_ID", "ConsentView", "ConsentViews"]

log = logging.getLogger("red.chunkrecorder.consent")

AGREE_MEETING_ID = "chunkrecorder:consent:meeting"
AGREE_ALWAYS_ID = "chunkrecorder:consent:always"

#: ``on_agree(interaction, always)`` → the line shown to the member who clicked.
AgreeHandler = Callable[[discord.Interaction, bool], Awaitable[str]]


class _AgreeButton(discord.ui.Button["ConsentView"]):
    def __init__(self, *, label: str, custom_id: str, always: bool, style: discord.ButtonStyle) -> None:
        super().__init__(label=label, custom_id=custom_id, style=style)
        self.always = always

    async def callback(self, interaction: discord.Interaction) -> None:
        assert self.view is not None
        await self.view.agree(interaction, self.always)


class ConsentView(discord.ui.View):
    """Two buttons with fixed custom ids and no timeout: a persistent view."""

    def __init__(self, on_agree: AgreeHandler) -> None:
        super().__init__(timeout=None)
        self._on_agree = on_agree
        self.add_item(_AgreeButton(label=_("Agree for this meeting"), custom_id=AGREE_MEETING_ID, always=False,
                                   style=discord.ButtonStyle.success))
        self.add_item(_AgreeButton(label=_("Agree always"), custom_id=AGREE_ALWAYS_ID, always=True,
                                   style=discord.ButtonStyle.secondary))

    async def agree(self, interaction: discord.Interaction, always: bool) -> None:
        try:
            text = await self._on_agree(interaction, always)
        except Exception:  # noqa: BLE001 - the member still gets an answer
            log.exception("Recording a consent click failed")
            text = _("Something went wrong recording your agreement; try `[p]record optin`.")
        await interaction.response.send_message(text, ephemeral=True)


class ConsentViews:
    """Every consent view of one loaded cog: made here, all stopped at unload."""

    def __init__(self, on_agree: AgreeHandler) -> None:
        self._on_agree = on_agree
        self._views: dict[Optional[int], list[ConsentView]] = {}
        self._persistent: Optional[ConsentView] = None

    def persistent(self) -> ConsentView:
        """The view for ``bot.add_view`` (clicks on messages no view tracks)."""
        if self._persistent is None:
            self._persistent = self.new()
        return self._persistent

    def new(self, guild_id: Optional[int] = None) -> ConsentView:
        """A view for one message of ``guild_id``'s meeting."""
        view = ConsentView(self._on_agree)
        self._views.setdefault(guild_id, []).append(view)
        return view

    def end_meeting(self, guild_id: int) -> None:
        """The guild's meeting ended: stop tracking its messages' views (a later click on
        them reaches the persistent view, which answers the same way)."""
        for view in self._views.pop(guild_id, []):
            view.stop()

    def close(self) -> None:
        for views in self._views.values():
            for view in views:
                view.stop()
        self._views.clear()
        self._persistent = None
