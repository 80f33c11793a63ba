"""A ``discord.Client`` that knows one guild with voice channels, without logging in.

discord.py's voice objects need a client whose connection state has the bot user,
the guild, its voice channels and members cached, as after the gateway's GUILD_CREATE.
This builds exactly that from gateway-shaped payloads (so ``guild.get_channel``,
``guild.me`` and ``channel.connect()`` are discord.py's own), and nothing else: it never
opens a connection to Discord. :meth:`FakeDiscordVoiceServer.attach` then gives it voice.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import discord

__all__ = ["guild_payload", "offline_client"]


def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot}


def guild_payload(guild_id: int, *, voice_channels: Mapping[int, str], members: Mapping[int, str],
                  bot_id: int, name: str = "Fake guild") -> dict[str, Any]:
    """GUILD_CREATE for a guild where everyone may view, connect and speak."""
    everyone = discord.Permissions(view_channel=True, connect=True, speak=True, send_messages=True)
    channels: list[dict[str, Any]] = [
        {"id": str(cid), "guild_id": str(guild_id), "name": cname, "type": 2, "position": i,
         "permission_overwrites": [], "nsfw": False, "parent_id": None, "bitrate": 64000,
         "user_limit": 0, "rtc_region": None}
        for i, (cid, cname) in enumerate(voice_channels.items())
    ]
    people = {**members, bot_id: "recorder"}
    return {
        "id": str(guild_id), "name": name, "owner_id": str(next(iter(members), bot_id)), "icon": None,
        "splash": None, "discovery_splash": None, "afk_channel_id": None, "afk_timeout": 300,
        "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
        "mfa_level": 0, "premium_tier": 0, "features": [], "emojis": [], "stickers": [],
        "member_count": len(people), "large": False, "unavailable": False,
        "roles": [{"id": str(guild_id), "name": "@everyone", "permissions": str(everyone.value),
                   "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False,
                   "flags": 0}],
        "members": [
            {"user": _user(uid, uname, bot=uid == bot_id), "roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
             "deaf": False, "mute": False, "nick": None, "flags": 0}
            for uid, uname in people.items()
        ],
        "channels": channels, "voice_states": [], "threads": [], "stage_instances": [],
        "guild_scheduled_events": [], "soundboard_sounds": [],
    }


def offline_client(guild_id: int, *, voice_channels: Mapping[int, str], members: Mapping[int, str],
                   bot_id: int) -> discord.Client:
    """A client with the bot user and one guild cached (call inside a running loop)."""
    client = discord.Client(intents=discord.Intents(guilds=True, voice_states=True, members=True))
    state = client._connection
    loop = asyncio.get_running_loop()
    client.loop = loop  # what Client._async_setup_hook does on login
    client.http.loop = loop
    state.loop = loop
    state.user = discord.ClientUser(state=state, data=_user(bot_id, "recorder", bot=True))  # type: ignore[arg-type]
    state._add_guild_from_data(guild_payload(guild_id, voice_channels=voice_channels, members=members,  # type: ignore[arg-type]
                                             bot_id=bot_id))
    return client
