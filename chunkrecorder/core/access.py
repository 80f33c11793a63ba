"""Who could hear a meeting, and so who may get its audio.

A recording is what was said in a voice channel; only people who could have been in
that channel may get it. Two rules follow, enforced here and nowhere else:

* **Starting.** The member who starts a recording must be able to see and join the
  voice channel, whatever else they may do: Manage Server or a recorder role is the
  right to run the recorder, not to hear a private channel (an admin who cannot see
  it cannot record it either). The guild's owner and Administrators see everything.
* **Posting.** A meeting's files (or its link) go to its text channel only when
  everyone who can read that channel can also see the voice channel. Otherwise they
  go to whoever started the meeting, by direct message, and the channel is told so.
  Checked member by member when the bot has every member cached (Red asks Discord for
  the member list), or, when it does not, only where no overwrite hides the voice
  channel from anyone; in doubt, the files go by DM.

Other bots count as readers (a logging bot forwards what it reads); the recorder
itself does not.
"""

from __future__ import annotations

from typing import Optional, Union

import discord

from ..i18n import _
from .errors import UserError

__all__ = ["audience_could_hear", "check_can_hear"]

Readable = Union[discord.abc.GuildChannel, discord.Thread]


def check_can_hear(member: discord.Member, voice: discord.VoiceChannel) -> None:
    """``UserError`` unless ``member`` can see and join ``voice``."""
    perms = voice.permissions_for(member)
    if perms.view_channel and perms.connect:
        return
    raise UserError(_("You can only record a voice channel you can see and join yourself, and **{channel}** "
                      "is not one of them.").format(channel=discord.utils.escape_markdown(voice.name)))


def _nobody_hidden(voice: discord.VoiceChannel) -> bool:
    """Every member sees ``voice``: @everyone may, and no overwrite denies it to anyone."""
    if not voice.permissions_for(voice.guild.default_role).view_channel:
        return False
    return not any(overwrite.view_channel is False for overwrite in voice.overwrites.values())


def audience_could_hear(channel: object, voice: Optional[discord.abc.GuildChannel]) -> bool:
    """Whether everyone who can read ``channel`` can also see ``voice``.

    False when either is unknown (a deleted voice channel: nobody can tell who heard it).
    """
    if not isinstance(voice, discord.VoiceChannel) or not isinstance(channel, (discord.abc.GuildChannel,
                                                                                discord.Thread)):
        return False
    if channel.id == voice.id:  # the voice channel's own text chat
        return True
    if _nobody_hidden(voice):
        return True
    guild = voice.guild
    if guild.member_count is None or len(guild.members) < guild.member_count:
        return False  # not every member is known: in doubt, privately
    me = guild.me
    for member in guild.members:
        if me is not None and member.id == me.id:
            continue
        if channel.permissions_for(member).view_channel and not voice.permissions_for(member).view_channel:
            return False
    return True
