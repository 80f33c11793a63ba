"""What members in a recorded voice channel are told, in that channel's own chat.

Consent that can be skipped is not consent, so two things are not optional:

* **The indicator.** While recording, the bot shows it: the "[REC] " nickname prefix
  where it may change its nickname, otherwise a message in the voice channel's own text
  chat (discord.py 2.7 sends to a ``VoiceChannel``). ``[p]record status`` says which.
  A start is refused when neither is possible (no Change Nickname and no Send Messages
  in the voice channel).
* **The notice.** Every member in the channel is told once per meeting, in the voice
  channel's chat: a mention, who started the recording, and how to opt out (``notice``
  mode) or how to agree (``optin`` mode, with the consent buttons). The members present
  at the start are told in the start notice, each member who joins later on joining.

``[p]recordingset announce`` only controls the extra announcement where the command was
typed; none of the above.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Optional, Sequence

import discord
from redbot.core.utils.chat_formatting import pagify

from ..i18n import _
from .consent_view import ConsentViews

if TYPE_CHECKING:  # pragma: no cover
    from .meetings import LiveMeeting

__all__ = ["RecordingNotices", "can_post_in_voice_chat", "starter_words"]

log = logging.getLogger("red.chunkrecorder.notices")

_MENTIONS = discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=False)


def can_post_in_voice_chat(channel: discord.abc.GuildChannel) -> bool:
    me = channel.guild.me
    perms = channel.permissions_for(me)
    return bool(perms.view_channel and perms.send_messages)


def starter_words(guild: discord.Guild, live: "LiveMeeting") -> str:
    """Who started the recording, as members read it."""
    if live.auto_rule is not None:
        if live.auto_rule == 1:
            return _("the auto-record rule of this channel (1 member)")
        return _("the auto-record rule of this channel ({members} members)").format(members=live.auto_rule)
    member = guild.get_member(live.started_by)
    return member.display_name if member is not None else str(live.started_by)


class RecordingNotices:
    """The start notice and the join notices of each live meeting."""

    def __init__(self, views: ConsentViews) -> None:
        self.views = views

    def _text(self, guild: discord.Guild, live: "LiveMeeting", mentions: str, prefix: str, *, start: bool) -> str:
        values = dict(mentions=mentions, channel=live.channel_name, starter=starter_words(guild, live),
                      optout=f"{prefix}record optout", optin=f"{prefix}record optin",
                      always=f"{prefix}record optin always")
        if live.consent.optin:
            if start:
                return _("🔴 **[REC]** This voice channel is being recorded, started by {starter}. {mentions}: "
                         "only members who agree are recorded. Press a button below, or type `{optin}` (this "
                         "meeting) or `{always}` (every recording here).").format(**values)
            return _("🔴 **[REC]** {mentions}, **{channel}** is being recorded (started by {starter}). You are "
                     "not recorded unless you agree: press a button below, or type `{optin}`.").format(**values)
        if start:
            return _("🔴 **[REC]** This voice channel is being recorded, started by {starter}. {mentions}: your "
                     "voice is recorded; `{optout}` if you don't want it to be.").format(**values)
        return _("🔴 **[REC]** {mentions}, **{channel}** is being recorded (started by {starter}). "
                 "`{optout}` if you don't want your voice recorded.").format(**values)

    async def _send(self, channel: discord.abc.Messageable, text: str, *, optin: bool, guild_id: int) -> bool:
        """Send ``text`` (in pages if long; the consent buttons on the last); False if it failed."""
        pages = list(pagify(text, delims=[" ", "\n"], page_length=1900))
        try:
            for i, page in enumerate(pages):
                view = self.views.new(guild_id) if optin and i == len(pages) - 1 else None
                if view is not None:
                    await channel.send(page, allowed_mentions=_MENTIONS, view=view)
                else:
                    await channel.send(page, allowed_mentions=_MENTIONS)
        except discord.HTTPException as exc:
            log.info("Could not post in the chat of voice channel %s: %s", getattr(channel, "id", "?"), exc)
            return False
        return True

    async def started(self, guild: discord.Guild, live: "LiveMeeting", prefix: str,
                      present: Sequence[discord.Member]) -> bool:
        """The start notice in the voice channel's chat, naming everyone present; True if
        it was posted (it is the indicator where the nickname cannot carry it)."""
        channel = live.channel
        if not isinstance(channel, discord.VoiceChannel) or not can_post_in_voice_chat(channel):
            return False
        humans = [m for m in present if not m.bot]
        live.noticed.update(m.id for m in humans)
        mentions = " ".join(m.mention for m in humans) or _("Everyone who joins")
        return await self._send(channel, self._text(guild, live, mentions, prefix, start=True),
                                optin=live.consent.optin, guild_id=guild.id)

    async def joined(self, guild: discord.Guild, live: "LiveMeeting", member: discord.Member, prefix: str) -> None:
        """A member joined the recorded channel: tell them, once per meeting."""
        if member.bot or member.id in live.noticed:
            return
        live.noticed.add(member.id)
        channel = live.channel
        if not isinstance(channel, discord.VoiceChannel) or not can_post_in_voice_chat(channel):
            return
        with contextlib.suppress(Exception):
            await self._send(channel, self._text(guild, live, member.mention, prefix, start=False),
                             optin=live.consent.optin, guild_id=guild.id)

    @staticmethod
    def indicator_words(live: "LiveMeeting") -> Optional[str]:
        """How the recording is shown, for ``[p]record status``."""
        if live.indicator == "nickname":
            return _("Shown by my nickname's [REC] prefix.")
        if live.indicator == "message":
            return _("Shown by a [REC] message in **{channel}**'s chat (I can't change my nickname here).").format(
                channel=live.channel_name)
        return None
