"""A real Red bot that invokes commands offline, for the cog's tests.

Everything above the Discord REST and gateway edge is real: Red's ``Red`` object with
its JSON Config driver in a temp data path, Red's global checks and Core cogs,
discord.py's ``Guild``/``Member``/``Message`` objects built from gateway payloads (so
permission checks compute from real roles), Red's converters, menus and predicates.
The one fake is ``FakeDiscordREST``: it answers the REST calls discord.py makes
(send, edit, delete, react, nickname) the way Discord would, including a 403 when the
bot lacks a permission and a 413 when an upload is over the guild's limit, and it
records what a user would see in the channel.

A pytest plugin (``tests/conftest.py`` registers it): the fixtures ``red_world``,
``cog_world`` and ``voice_world`` are there for every test; import the helpers and ids
from ``tests.support.red``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import re
import sys
import urllib.parse
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Optional

import discord
import pytest

GUILD_ID = 1_000_000_000_000_001
OTHER_GUILD_ID = 1_000_000_000_000_002
BOT_ID = 2_000_000_000_000_001
OWNER_ID = 3_000_000_000_000_001  # bot owner and owner of the first guild
ADMIN_ID = 3_000_000_000_000_002  # has a role with Manage Server
MEMBER_ID = 3_000_000_000_000_003  # plain member
SPEAKER_ID = 3_000_000_000_000_004  # plain member who talks
OTHER_ADMIN_ID = 3_000_000_000_000_005  # Manage Server in the other guild only
RECORDER_ROLE_MEMBER_ID = 3_000_000_000_000_006  # holds the "Recorders" role
TEXT_ID = 4_000_000_000_000_001
VOICE_ID = 4_000_000_000_000_002
VOICE2_ID = 4_000_000_000_000_003
OTHER_TEXT_ID = 4_000_000_000_000_004
OTHER_VOICE_ID = 4_000_000_000_000_005
MANAGER_ROLE_ID = 5_000_000_000_000_001
BOT_ROLE_ID = 5_000_000_000_000_002
RECORDER_ROLE_ID = 5_000_000_000_000_003
OTHER_MANAGER_ROLE_ID = 5_000_000_000_000_004
OTHER_BOT_ROLE_ID = 5_000_000_000_000_005

PREFIX = "!"

EVERYONE_PERMS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    add_reactions=True,
    connect=True,
    speak=True,
    use_voice_activation=True,
    embed_links=True,
    attach_files=True,
)

#: What the README asks a bot owner to grant: Connect, Change Nickname, Attach Files,
#: Send Messages (plus reading the channel it answers in).
BOT_PERMS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    add_reactions=True,
    embed_links=True,
    attach_files=True,
    connect=True,
    change_nickname=True,
)

_snowflakes = itertools.count(1)


def snowflake() -> int:
    """A valid, increasing snowflake (discord.py reads times out of message ids)."""
    return discord.utils.time_snowflake(discord.utils.utcnow()) + next(_snowflakes)


def _user_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name.title(),
        "avatar": None,
        "bot": bot,
    }


def _member_payload(user_id: int, name: str, roles: Iterable[int], *, bot: bool = False,
                    nick: Optional[str] = None) -> dict[str, Any]:
    return {
        "user": _user_payload(user_id, name, bot=bot),
        "roles": [str(r) for r in roles],
        "joined_at": "2024-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "nick": nick,
        "flags": 0,
    }


def _role_payload(role_id: int, name: str, perms: discord.Permissions, position: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(perms.value),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _channel_payload(channel_id: int, guild_id: int, name: str, kind: int, position: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(channel_id),
        "guild_id": str(guild_id),
        "name": name,
        "type": kind,
        "position": position,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
    }
    if kind == 2:
        data.update(bitrate=64000, user_limit=0, rtc_region=None)
    else:
        data.update(topic=None, last_message_id=None, rate_limit_per_user=0)
    return data


def guild_payload(*, bot_perms: discord.Permissions = BOT_PERMS) -> dict[str, Any]:
    """The first guild: owner, an admin (Manage Server), two plain members, the bot."""
    return {
        "id": str(GUILD_ID),
        "name": "Meeting Room",
        "owner_id": str(OWNER_ID),
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "premium_tier": 0,
        "features": [],
        "emojis": [],
        "stickers": [],
        "member_count": 6,
        "large": False,
        "unavailable": False,
        "roles": [
            _role_payload(GUILD_ID, "@everyone", EVERYONE_PERMS, 0),
            _role_payload(MANAGER_ROLE_ID, "Managers", discord.Permissions(manage_guild=True), 1),
            _role_payload(RECORDER_ROLE_ID, "Recorders", discord.Permissions.none(), 2),
            _role_payload(BOT_ROLE_ID, "Recorder Bot", bot_perms, 3),
        ],
        "members": [
            _member_payload(OWNER_ID, "owner", []),
            _member_payload(ADMIN_ID, "admin", [MANAGER_ROLE_ID]),
            _member_payload(MEMBER_ID, "member", []),
            _member_payload(SPEAKER_ID, "speaker", []),
            _member_payload(RECORDER_ROLE_MEMBER_ID, "scribe", [RECORDER_ROLE_ID]),
            _member_payload(BOT_ID, "recbot", [BOT_ROLE_ID], bot=True, nick="Minutes"),
        ],
        "channels": [
            _channel_payload(TEXT_ID, GUILD_ID, "general", 0, 0),
            _channel_payload(VOICE_ID, GUILD_ID, "Standup", 2, 1),
            _channel_payload(VOICE2_ID, GUILD_ID, "Lounge", 2, 2),
        ],
        "voice_states": [],
        "threads": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def other_guild_payload() -> dict[str, Any]:
    """A second guild whose admin must never see the first guild's recordings."""
    data = guild_payload()
    data.update(
        id=str(OTHER_GUILD_ID),
        name="Elsewhere",
        owner_id=str(OTHER_ADMIN_ID),
        member_count=2,
        roles=[
            _role_payload(OTHER_GUILD_ID, "@everyone", EVERYONE_PERMS, 0),
            _role_payload(OTHER_MANAGER_ROLE_ID, "Managers", discord.Permissions(manage_guild=True), 1),
            _role_payload(OTHER_BOT_ROLE_ID, "Recorder Bot", BOT_PERMS, 2),
        ],
        members=[
            _member_payload(OTHER_ADMIN_ID, "otheradmin", [OTHER_MANAGER_ROLE_ID]),
            _member_payload(BOT_ID, "recbot", [OTHER_BOT_ROLE_ID], bot=True),
        ],
        channels=[
            _channel_payload(OTHER_TEXT_ID, OTHER_GUILD_ID, "general", 0, 0),
            _channel_payload(OTHER_VOICE_ID, OTHER_GUILD_ID, "Voice", 2, 1),
        ],
    )
    return data


# --------------------------------------------------------------------------- REST edge
@dataclass
class Sent:
    """One message the bot sent, as the channel shows it (latest edit wins)."""

    id: int
    channel_id: int
    content: Optional[str]
    embeds: list[dict[str, Any]]
    files: list[tuple[str, bytes]]
    history: list[Optional[str]] = field(default_factory=list)
    deleted: bool = False
    reactions: list[str] = field(default_factory=list)
    #: The slash command this message answers (its response or a follow-up), if any.
    interaction_id: Optional[int] = None
    #: Only the member who used the slash command sees it.
    ephemeral: bool = False
    #: A deferred response still showing "<bot> is thinking…".
    loading: bool = False
    #: Buttons and other components under the message, as sent.
    components: list[dict[str, Any]] = field(default_factory=list)

    def custom_ids(self) -> list[str]:
        """The custom ids of the message's buttons, in order."""
        return [c["custom_id"] for row in self.components for c in row.get("components", []) if "custom_id" in c]

    @property
    def text(self) -> str:
        """Content plus embed titles/descriptions/fields: everything a reader sees."""
        parts = [self.content or ""]
        for embed in self.embeds:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            for f in embed.get("fields", []):
                parts += [f.get("name", ""), f.get("value", "")]
            if embed.get("footer"):
                parts.append(embed["footer"].get("text", ""))
        return "\n".join(p for p in parts if p)


class _Response:
    """What discord.HTTPException reads from an aiohttp response."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason


@dataclass
class InteractionRecord:
    """One slash command a member used, as Discord tracks its answer."""

    id: int
    token: str
    channel_id: int
    command: str
    #: 4: answered with a message; 5: deferred ("thinking…"); None: never answered, which
    #: the member sees as "The application did not respond".
    response_type: Optional[int] = None
    original_id: Optional[int] = None
    followup_ids: list[int] = field(default_factory=list)


def _bad_request(errors: dict[str, Any], code: int = 50035, message: str = "Invalid Form Body") -> discord.HTTPException:
    return discord.HTTPException(_Response(400, "Bad Request"), {"code": code, "message": message, "errors": errors})


#: Discord's rules for a command's or an option's name and description.
_NAME_RE = re.compile(r"^[-_\w]{1,32}$")
#: Option types Discord knows (1 SUB_COMMAND ... 11 ATTACHMENT).
_OPTION_TYPES = set(range(1, 12))


def _check_option_list(options: list[dict[str, Any]], where: str, *, depth: int) -> None:
    """What Discord checks in a synced command's options, answering 400 as it does."""
    if len(options) > 25:
        raise _bad_request({where: "Must be 25 or fewer in length."})
    names = [o.get("name") for o in options]
    if len(set(names)) != len(names):
        raise _bad_request({where: "Application command option names must be unique"})
    seen_optional = False
    kinds = {o.get("type") for o in options}
    if kinds & {1, 2} and kinds - {1, 2}:
        raise _bad_request({where: "Sub-commands and groups cannot be mixed with other options"})
    for i, opt in enumerate(options):
        at = f"{where}.{i}"
        kind = opt.get("type")
        if kind not in _OPTION_TYPES:
            raise _bad_request({at: f"Unknown option type {kind!r}"})
        name = opt.get("name") or ""
        if not _NAME_RE.match(name) or name != name.lower():
            raise _bad_request({f"{at}.name": "Invalid application command option name"})
        description = opt.get("description") or ""
        if not 1 <= len(description) <= 100:
            raise _bad_request({f"{at}.description": "Must be between 1 and 100 in length."})
        if kind == 2:
            if depth > 0:
                raise _bad_request({at: "Sub-command groups cannot be nested"})
            if not all(o.get("type") == 1 for o in opt.get("options") or []):
                raise _bad_request({at: "A group holds sub-commands only"})
            _check_option_list(opt.get("options") or [], f"{at}.options", depth=depth + 1)
        elif kind == 1:
            _check_option_list(opt.get("options") or [], f"{at}.options", depth=2)
        else:
            if opt.get("required"):
                if seen_optional:
                    raise _bad_request({at: "Required options must be placed before non-required options"})
            else:
                seen_optional = True
            if "channel_types" in opt and kind != 7:
                raise _bad_request({f"{at}.channel_types": "Only channel options have channel types"})
            if len(opt.get("choices") or []) > 25:
                raise _bad_request({f"{at}.choices": "Must be 25 or fewer in length."})


def _check_command(cmd: dict[str, Any], index: int) -> None:
    at = str(index)
    name = cmd.get("name") or ""
    if cmd.get("type", 1) == 1:
        if not _NAME_RE.match(name) or name != name.lower():
            raise _bad_request({f"{at}.name": "Invalid application command name"})
        if not 1 <= len(cmd.get("description") or "") <= 100:
            raise _bad_request({f"{at}.description": "Must be between 1 and 100 in length."})
    _check_option_list(cmd.get("options") or [], f"{at}.options", depth=0)


def _check_message(payload: dict[str, Any], files: list[tuple[str, bytes]], *, editing: bool = False) -> None:
    """Discord refuses an empty message and content over 2,000 characters."""
    content = payload.get("content")
    if content is not None and len(content) > 2000:
        raise _bad_request({"content": "Must be 2000 or fewer in length."})
    if not editing and not content and not payload.get("embeds") and not files:
        raise _bad_request({}, code=50006, message="Cannot send an empty message")


class FakeDiscordREST:
    """Discord's REST API as far as a recording cog uses it, enforcing its limits.

    That includes slash commands: syncing them (checked as Discord checks them) and
    answering an interaction (the callback, follow-ups, the original response), which
    discord.py sends through its webhook adapter rather than the bot's HTTP client.
    """

    def __init__(self, world: "RedWorld") -> None:
        self.world = world
        self.messages: dict[int, Sent] = {}
        self.calls: list[tuple[str, str]] = []
        #: The global commands as last synced (what Discord offers members).
        self.synced: list[dict[str, Any]] = []
        self.interactions: dict[int, InteractionRecord] = {}
        #: Direct-message channels the bot opened: member id -> channel id.
        self.dm_channels: dict[int, int] = {}

    def _message_payload(self, sent: Sent) -> dict[str, Any]:
        channel = self.world.bot.get_channel(sent.channel_id)
        guild_id = getattr(getattr(channel, "guild", None), "id", None)
        payload = {
            "id": str(sent.id),
            "channel_id": str(sent.channel_id),
            "author": _user_payload(BOT_ID, "recbot", bot=True),
            "content": sent.content or "",
            "timestamp": discord.utils.utcnow().isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(snowflake()),
                    "filename": name,
                    "size": len(data),
                    "url": f"https://cdn.invalid/{name}",
                    "proxy_url": f"https://cdn.invalid/{name}",
                }
                for name, data in sent.files
            ],
            "embeds": sent.embeds,
            "pinned": False,
            "type": 0 if sent.interaction_id is None else 20,  # 20: CHAT_INPUT_COMMAND's reply
            "flags": (64 if sent.ephemeral else 0) | (128 if sent.loading else 0),
            "components": sent.components,
        }
        if sent.interaction_id is not None:
            payload["webhook_id"] = str(BOT_ID)
            payload["application_id"] = str(BOT_ID)
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
        return payload

    @staticmethod
    def _payload_and_files(files: Any, form: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
        payload: dict[str, Any] = dict(kwargs.get("json") or {})
        for part in form or ():
            if part.get("name") == "payload_json":
                payload = json.loads(part["value"])
        read: list[tuple[str, bytes]] = []
        for f in files or ():
            f.reset()
            read.append((f.filename, f.fp.read()))
        return payload, read

    def _require(self, channel_id: int, **perms: bool) -> None:
        channel = self.world.bot.get_channel(channel_id)
        guild = getattr(channel, "guild", None)
        if guild is None:
            return
        have = channel.permissions_for(guild.me)
        missing = [p for p in perms if not getattr(have, p)]
        if missing:
            raise discord.Forbidden(_Response(403, "Forbidden"), {"code": 50013, "message": "Missing Permissions"})

    async def request(self, route: discord.http.Route, *, files: Any = None, form: Any = None, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # a real request always yields to the loop
        method, path = route.method, route.path
        self.calls.append((method, path))
        params = _route_params(route)
        channel_id = int(params["channel_id"]) if params.get("channel_id") else None
        if method == "POST" and path == "/users/@me/channels":
            # A DM channel with a member (discord.py caches it by the id answered here).
            recipient = int((kwargs.get("json") or {})["recipient_id"])
            channel_id = self.dm_channels.setdefault(recipient, snowflake())
            user = self.world.bot.get_user(recipient)
            return {"id": str(channel_id), "type": 1, "last_message_id": None,
                    "recipients": [_user_payload(recipient, user.name if user else "user")]}
        if method == "POST" and path == "/channels/{channel_id}/messages":
            payload, read = self._payload_and_files(files, form, kwargs)
            recipient = next((u for u, c in self.dm_channels.items() if c == channel_id), None)
            if recipient is not None and recipient in self.world.dms_closed:
                raise discord.Forbidden(_Response(403, "Forbidden"),
                                        {"code": 50007, "message": "Cannot send messages to this user"})
            self._require(channel_id, send_messages=True)
            _check_message(payload, read)
            if read:
                self._require(channel_id, attach_files=True)
                channel = self.world.bot.get_channel(channel_id)
                limit = channel.guild.filesize_limit if getattr(channel, "guild", None) else 10 * 2**20
                if sum(len(d) for _, d in read) > limit:
                    raise discord.HTTPException(_Response(413, "Payload Too Large"), {"code": 40005, "message": "Request entity too large"})
            sent = Sent(snowflake(), channel_id, payload.get("content"), payload.get("embeds") or [], read,
                        components=payload.get("components") or [])
            sent.history.append(sent.content)
            self.messages[sent.id] = sent
            return self._message_payload(sent)
        if method == "PATCH" and path == "/channels/{channel_id}/messages/{message_id}":
            payload, read = self._payload_and_files(files, form, kwargs)
            sent = self.messages[int(params["message_id"])]
            _check_message(payload, read, editing=True)
            if "content" in payload:
                sent.content = payload["content"]
            if "embeds" in payload:
                sent.embeds = payload["embeds"] or []
            sent.history.append(sent.content)
            return self._message_payload(sent)
        if method == "DELETE" and path == "/channels/{channel_id}/messages/{message_id}":
            self.messages[int(params["message_id"])].deleted = True
            return None
        if path.startswith("/channels/{channel_id}/messages/{message_id}/reactions"):
            sent = self.messages.get(int(params["message_id"]))
            if sent is not None and method == "PUT":
                sent.reactions.append(urllib.parse.unquote(params.get("emoji", "")))
            return None
        if method == "POST" and path == "/channels/{channel_id}/typing":
            return None
        if method == "PATCH" and path == "/guilds/{guild_id}/members/@me":
            guild = self.world.bot.get_guild(int(params["guild_id"]))
            if not guild.me.guild_permissions.change_nickname:
                raise discord.Forbidden(_Response(403, "Forbidden"), {"code": 50013, "message": "Missing Permissions"})
            body = kwargs.get("json") or {}
            me = guild.me
            data = _member_payload(BOT_ID, "recbot", [r.id for r in me.roles if not r.is_default()], bot=True,
                                   nick=body.get("nick") or None)
            data["guild_id"] = str(guild.id)
            # Discord follows a nickname change with GUILD_MEMBER_UPDATE.
            self.world.bot._connection.parse_guild_member_update(dict(data))
            self.world.nick_changes.append(body.get("nick") or None)
            return data
        if method == "PUT" and path == "/applications/{application_id}/commands":
            commands = kwargs.get("json") or []
            if len(commands) > 100:
                raise _bad_request({"_errors": "Must be 100 or fewer in length."})
            for i, cmd in enumerate(commands):
                _check_command(cmd, i)
            self.synced = [dict(cmd, id=str(snowflake()), application_id=str(BOT_ID), version=str(snowflake()),
                                default_member_permissions=cmd.get("default_member_permissions"))
                           for cmd in commands]
            return self.synced
        raise NotImplementedError(f"FakeDiscordREST has no answer for {method} {path}")

    # ---- interactions (discord.py sends these through its webhook adapter)
    async def webhook_request(self, route: discord.http.Route, session: Any = None, *, payload: Any = None,
                              multipart: Any = None, files: Any = None, params: Any = None, **_: Any) -> Any:
        await asyncio.sleep(0)
        method, path = route.method, route.path
        self.calls.append((method, path))
        values = _route_params(route)
        token = values.get("webhook_token", "")
        record = next((r for r in self.interactions.values() if r.token == token), None)
        if record is None:
            raise discord.NotFound(_Response(404, "Not Found"), {"code": 10015, "message": "Unknown Webhook"})
        body, read = self._payload_and_files(files, multipart, {"json": payload})
        if method == "POST" and path == "/interactions/{webhook_id}/{webhook_token}/callback":
            if record.response_type is not None:
                raise _bad_request({}, code=40060, message="Interaction has already been acknowledged.")
            kind, data = body.get("type"), body.get("data") or {}
            if kind not in (4, 5):
                raise NotImplementedError(f"FakeDiscordREST has no answer for callback type {kind}")
            if kind == 4:
                _check_message(data, read)
                self._check_upload(record.channel_id, read)
            sent = Sent(snowflake(), record.channel_id, data.get("content") if kind == 4 else None,
                        (data.get("embeds") or []) if kind == 4 else [], read if kind == 4 else [],
                        interaction_id=record.id, ephemeral=bool((data.get("flags") or 0) & 64),
                        loading=kind == 5)
            sent.history.append(sent.content)
            self.messages[sent.id] = sent
            record.response_type, record.original_id = kind, sent.id
            return {"interaction": {"id": str(record.id), "type": 2, "response_message_id": str(sent.id),
                                    "response_message_loading": kind == 5,
                                    "response_message_ephemeral": sent.ephemeral},
                    "resource": {"type": kind, "message": self._message_payload(sent)}}
        if record.response_type is None:  # nothing to follow up or edit before the answer
            raise discord.NotFound(_Response(404, "Not Found"), {"code": 10015, "message": "Unknown Webhook"})
        if method == "POST" and path == "/webhooks/{webhook_id}/{webhook_token}":
            _check_message(body, read)
            self._check_upload(record.channel_id, read)
            original = self.messages[record.original_id] if record.original_id else None
            if original is not None and original.loading:
                # The first follow-up after a deferral takes the place of "thinking…".
                sent = original
                sent.loading = False
                sent.content, sent.embeds, sent.files = body.get("content"), body.get("embeds") or [], read
                sent.ephemeral = bool((body.get("flags") or 0) & 64)
            else:
                sent = Sent(snowflake(), record.channel_id, body.get("content"), body.get("embeds") or [], read,
                            interaction_id=record.id, ephemeral=bool((body.get("flags") or 0) & 64))
                self.messages[sent.id] = sent
                record.followup_ids.append(sent.id)
            sent.history.append(sent.content)
            return self._message_payload(sent)
        message_id = values.get("message_id")
        target = record.original_id if message_id in (None, "@original") else int(message_id)
        sent = self.messages.get(target) if target else None
        if sent is None or sent.interaction_id != record.id:
            raise discord.NotFound(_Response(404, "Not Found"), {"code": 10008, "message": "Unknown Message"})
        if method == "GET":
            return self._message_payload(sent)
        if method == "PATCH":
            _check_message(body, read, editing=True)
            if "content" in body:
                sent.content = body["content"]
            if "embeds" in body:
                sent.embeds = body["embeds"] or []
            if read:
                sent.files = read
            sent.loading = False
            sent.history.append(sent.content)
            return self._message_payload(sent)
        if method == "DELETE":
            sent.deleted = True
            return None
        raise NotImplementedError(f"FakeDiscordREST has no answer for {method} {path}")

    def _check_upload(self, channel_id: int, read: list[tuple[str, bytes]]) -> None:
        channel = self.world.bot.get_channel(channel_id)
        limit = channel.guild.filesize_limit if getattr(channel, "guild", None) else 10 * 2**20
        if sum(len(d) for _, d in read) > limit:
            raise discord.HTTPException(_Response(413, "Payload Too Large"),
                                        {"code": 40005, "message": "Request entity too large"})

    # ---- what a test reads
    def in_channel(self, channel_id: int = TEXT_ID) -> list[Sent]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]


def _webhook_adapter() -> Any:
    """discord.py's webhook adapter (the one interactions answer through)."""
    from discord.webhook.async_ import async_context

    return async_context.get()


def _route_params(route: discord.http.Route) -> dict[str, str]:
    """The values discord.py formatted into the URL, by the template's names."""
    names = route.path.strip("/").split("/")
    values = route.url[len(route.BASE):].strip("/").split("/")
    return {n[1:-1]: v for n, v in zip(names, values) if n.startswith("{")}


# --------------------------------------------------------------------------- the world
class RedWorld:
    """One Red bot in a temp data path, two guilds, and the members who use them."""

    def __init__(self, data_path: Path, bot: Any) -> None:
        self.data_path = data_path
        self.bot = bot
        self.rest = FakeDiscordREST(self)
        self.nick_changes: list[Optional[str]] = []
        #: Members whose direct messages are closed to the bot (Discord answers 50007).
        self.dms_closed: set[int] = set()

    # ---- construction
    @classmethod
    async def create(cls, data_path: Path, *, bot_perms: discord.Permissions = BOT_PERMS) -> "RedWorld":
        from redbot.core import _drivers, config as config_module, data_manager
        from redbot.core._cli import parse_cli_flags
        from redbot.core.bot import Red

        _reset_red_globals()
        data_path.mkdir(parents=True, exist_ok=True)
        data_manager.basic_config = {
            "DATA_PATH": str(data_path),
            "COG_PATH_APPEND": "cogs",
            "CORE_PATH_APPEND": "core",
            "STORAGE_TYPE": "JSON",
            "STORAGE_DETAILS": {},
        }
        await _drivers.get_driver_class().initialize()
        # What redbot/__main__.py does before it builds the bot.
        lib = data_manager.cog_data_path(raw_name="Downloader") / "lib"
        lib.mkdir(parents=True, exist_ok=True)
        flags = parse_cli_flags(["chunkrecorder-tests", "--prefix", PREFIX, "--no-cogs"])
        bot = Red(cli_flags=flags, description="test", dm_help=None, owner_ids={OWNER_ID})
        world = cls(data_path, bot)
        bot.http.request = world.rest.request  # the network edge
        # Interaction answers go through discord.py's webhook adapter (its own HTTP session).
        _webhook_adapter().request = world.rest.webhook_request
        await bot._async_setup_hook()
        await bot._pre_login()
        state = bot._connection
        state.user = discord.ClientUser(state=state, data=_user_payload(BOT_ID, "recbot", bot=True))
        state.application_id = BOT_ID  # what READY says; syncing slash commands needs it
        await bot._pre_connect()
        state._add_guild_from_data(guild_payload(bot_perms=bot_perms))
        state._add_guild_from_data(other_guild_payload())
        bot._red_ready.set()
        return world

    async def close(self) -> None:
        for name in list(self.bot.cogs):
            if name not in ("Core", "CogManagerUI"):
                with contextlib.suppress(Exception):
                    await self.bot.remove_cog(name)
        await settle()
        with contextlib.suppress(AttributeError):
            del _webhook_adapter().request
        _reset_red_globals()

    def add_guild(self, guild_id: int, *, text_channels: dict[int, str], voice_channels: dict[int, str],
                  members: dict[int, str], name: str = "Scenario") -> discord.Guild:
        """One more guild as GUILD_CREATE brings it: the owner of the bot (who may run every
        command), ``members`` and the bot (with ``BOT_PERMS``), the channels given."""
        bot_role = guild_id + 1
        channels = [_channel_payload(cid, guild_id, cname, 0, i) for i, (cid, cname) in enumerate(text_channels.items())]
        channels += [_channel_payload(cid, guild_id, cname, 2, len(text_channels) + i)
                     for i, (cid, cname) in enumerate(voice_channels.items())]
        data = guild_payload()
        data.update(
            id=str(guild_id), name=name, owner_id=str(OWNER_ID), member_count=len(members) + 2,
            roles=[_role_payload(guild_id, "@everyone", EVERYONE_PERMS, 0),
                   _role_payload(bot_role, "Recorder Bot", BOT_PERMS, 1)],
            members=[_member_payload(OWNER_ID, "owner", []),
                     *(_member_payload(uid, uname, []) for uid, uname in members.items()),
                     _member_payload(BOT_ID, "recbot", [bot_role], bot=True)],
            channels=channels,
        )
        self.bot._connection._add_guild_from_data(data)
        guild = self.bot.get_guild(guild_id)
        assert guild is not None
        return guild

    # ---- objects
    @property
    def guild(self) -> discord.Guild:
        return self.bot.get_guild(GUILD_ID)

    @property
    def other_guild(self) -> discord.Guild:
        return self.bot.get_guild(OTHER_GUILD_ID)

    def member(self, user_id: int, guild_id: int = GUILD_ID) -> discord.Member:
        return self.bot.get_guild(guild_id).get_member(user_id)

    def set_bot_permissions(self, perms: discord.Permissions, guild_id: int = GUILD_ID) -> None:
        """Change the bot role's permissions as Discord would (GUILD_ROLE_UPDATE)."""
        role_id = BOT_ROLE_ID if guild_id == GUILD_ID else OTHER_BOT_ROLE_ID
        role = self.bot.get_guild(guild_id).get_role(role_id)
        self.bot._connection.parse_guild_role_update(
            {"guild_id": str(guild_id), "role": _role_payload(role_id, role.name, perms, role.position)}
        )
        assert self.bot.get_guild(guild_id).me.guild_permissions.value & perms.value == perms.value

    def deny_bot(self, channel_id: int, **perms: bool) -> None:
        """An admin denies the bot permissions in one channel (CHANNEL_UPDATE)."""
        channel = self.bot.get_channel(channel_id)
        kind = 2 if isinstance(channel, discord.VoiceChannel) else 0
        data = _channel_payload(channel_id, channel.guild.id, channel.name, kind, channel.position)
        data["permission_overwrites"] = [
            {"id": str(BOT_ID), "type": 1, "allow": "0", "deny": str(discord.Permissions(**perms).value)}
        ]
        self.bot._connection.parse_channel_update(data)
        assert not any(getattr(channel.permissions_for(channel.guild.me), p) for p in perms)

    def message(self, author_id: int, content: str, *, channel_id: int = TEXT_ID,
                guild_id: int = GUILD_ID) -> discord.Message:
        guild = self.bot.get_guild(guild_id)
        member = guild.get_member(author_id)
        data = {
            "id": str(snowflake()),
            "channel_id": str(channel_id),
            "guild_id": str(guild_id),
            "author": _user_payload(author_id, member.name),
            "member": {
                "roles": [str(r.id) for r in member.roles if not r.is_default()],
                "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "nick": member.nick,
                "flags": 0,
            },
            "content": content,
            "timestamp": discord.utils.utcnow().isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        return discord.Message(state=self.bot._connection, channel=guild.get_channel(channel_id), data=data)

    # ---- acting
    async def invoke(self, author_id: int, content: str, *, channel_id: int = TEXT_ID,
                     guild_id: int = GUILD_ID) -> list[Sent]:
        """Type a command as ``author_id`` and return what the bot sent in reply."""
        from redbot.core.i18n import set_contextual_locales_from_guild

        before = set(self.rest.messages)
        msg = self.message(author_id, content, channel_id=channel_id, guild_id=guild_id)
        # As Red's on_message does first: the guild's language (`[p]set locale server`).
        await set_contextual_locales_from_guild(self.bot, msg.guild)
        ctx = await self.bot.get_context(msg)
        assert ctx.valid, f"not a command: {content!r}"
        await self.bot.invoke(ctx)
        await settle()  # Red's own error handler runs as a separate task
        return [m for i, m in self.rest.messages.items() if i not in before]

    async def invoke_and_answer(self, author_id: int, content: str, answer: str, *,
                                channel_id: int = TEXT_ID, timeout: float = 10.0) -> list[Sent]:
        """Type a command that asks a question, wait for the question, answer it."""
        before = set(self.rest.messages)
        task = asyncio.create_task(self.invoke(author_id, content, channel_id=channel_id))
        deadline = asyncio.get_running_loop().time() + timeout
        while not (set(self.rest.messages) - before):
            assert not task.done(), f"{content!r} finished without asking: {task.result()!r}"
            assert asyncio.get_running_loop().time() < deadline, f"{content!r} never asked anything"
            await asyncio.sleep(0.01)
        await self.say(author_id, answer, channel_id=channel_id)
        await asyncio.wait_for(task, timeout)
        return [m for i, m in self.rest.messages.items() if i not in before]

    async def say(self, author_id: int, content: str, *, channel_id: int = TEXT_ID,
                  guild_id: int = GUILD_ID) -> None:
        """A plain chat message (an answer to a confirmation prompt, say)."""
        self.bot.dispatch("message", self.message(author_id, content, channel_id=channel_id, guild_id=guild_id))
        await settle()

    def voice_state(self, user_id: int, channel_id: Optional[int], *, guild_id: int = GUILD_ID,
                    session_id: str = "s") -> None:
        """A VOICE_STATE_UPDATE from the gateway: someone joined, moved or left voice."""
        guild = self.bot.get_guild(guild_id)
        member = guild.get_member(user_id)
        self.bot._connection.parse_voice_state_update(
            {
                "guild_id": str(guild_id),
                "channel_id": str(channel_id) if channel_id else None,
                "user_id": str(user_id),
                "session_id": session_id,
                "deaf": False,
                "mute": False,
                "self_deaf": False,
                "self_mute": False,
                "self_video": False,
                "suppress": False,
                "request_to_speak_timestamp": None,
                "member": _member_payload(user_id, member.name, [r.id for r in member.roles if not r.is_default()],
                                          bot=member.bot, nick=member.nick),
            }
        )

    def sent(self, channel_id: int = TEXT_ID) -> list[Sent]:
        return self.rest.in_channel(channel_id)

    def dms(self, user_id: int) -> list[Sent]:
        """What the bot sent ``user_id`` by direct message."""
        channel_id = self.rest.dm_channels.get(user_id)
        return [] if channel_id is None else self.rest.in_channel(channel_id)

    def set_overwrites(self, channel_id: int, overwrites: list[tuple[int, int, discord.Permissions,
                                                                       discord.Permissions]]) -> None:
        """An admin sets a channel's permission overwrites, as Discord reports it (CHANNEL_UPDATE):
        ``(target id, 0 role | 1 member, allow, deny)`` each."""
        channel = self.bot.get_channel(channel_id)
        kind = 2 if isinstance(channel, discord.VoiceChannel) else 0
        data = _channel_payload(channel_id, channel.guild.id, channel.name, kind, channel.position)
        data["permission_overwrites"] = [
            {"id": str(target), "type": kind_, "allow": str(allow.value), "deny": str(deny.value)}
            for target, kind_, allow, deny in overwrites
        ]
        self.bot._connection.parse_channel_update(data)

    # ---- slash commands
    async def slash(self, author_id: int, command: str, *, channel_id: int = TEXT_ID,
                    guild_id: int = GUILD_ID, **options: Any) -> list[Sent]:
        """Use a slash command as Discord's client does, and return what the bot showed.

        The interaction is built from the commands the bot last synced (``[p]slash sync``):
        Discord offers only what was synced, sends each option with its synced type (a
        channel option only with a channel of an allowed type) and refuses a missing
        required one. discord.py's ``CommandTree`` then dispatches it as it would a gateway
        INTERACTION_CREATE. Returns the messages the bot created or changed meanwhile:
        the answer and its follow-ups, and anything posted in channels.
        """
        path = command.split()
        top = next((c for c in self.rest.synced if c["name"] == path[0] and c.get("type", 1) == 1), None)
        assert top is not None, f"/{path[0]} was never synced: Discord would not offer it"
        guild = self.bot.get_guild(guild_id)
        channel = guild.get_channel(channel_id)
        member = guild.get_member(author_id)
        resolved: dict[str, dict[str, Any]] = {}
        schema, chain = top, []
        for name in path[1:]:
            sub = next((o for o in schema.get("options") or [] if o["name"] == name and o["type"] in (1, 2)), None)
            assert sub is not None, f"/{command}: no synced sub-command {name!r}"
            chain.append(sub)
            schema = sub
        assert not any(o["type"] in (1, 2) for o in schema.get("options") or []), f"/{command} needs a sub-command"
        given = []
        for opt in schema.get("options") or []:
            if opt["name"] not in options:
                assert not opt.get("required"), f"/{command}: Discord requires {opt['name']!r}"
                continue
            value = options.pop(opt["name"])
            if opt["type"] == 7:  # CHANNEL
                target = guild.get_channel(int(value))
                allowed = opt.get("channel_types")
                assert allowed is None or target.type.value in allowed, \
                    f"/{command}: Discord offers only channel types {allowed} for {opt['name']!r}"
                resolved.setdefault("channels", {})[str(target.id)] = {
                    "id": str(target.id), "name": target.name, "type": target.type.value,
                    "permissions": str(target.permissions_for(member).value),
                }
                value = str(target.id)
            elif opt["type"] == 4:
                value = int(value)
            elif opt["type"] == 3:
                value = str(value)
            given.append({"name": opt["name"], "type": opt["type"], "value": value})
        assert not options, f"/{command} has no synced options {sorted(options)}"
        data_options: list[dict[str, Any]] = given
        for sub in reversed(chain):
            data_options = [{"name": sub["name"], "type": sub["type"], "options": data_options}]
        interaction_id = snowflake()
        token = f"token-{interaction_id}"
        self.rest.interactions[interaction_id] = InteractionRecord(interaction_id, token, channel_id, command)
        payload = {
            "id": str(interaction_id),
            "application_id": str(BOT_ID),
            "type": 2,  # APPLICATION_COMMAND
            "data": {"id": top["id"], "name": top["name"], "type": 1, "options": data_options,
                     "resolved": resolved, "guild_id": str(guild_id)},
            "guild_id": str(guild_id),
            "channel_id": str(channel_id),
            "channel": _channel_payload(channel_id, guild_id, channel.name, channel.type.value, channel.position),
            "member": dict(_member_payload(author_id, member.name, [r.id for r in member.roles if not r.is_default()],
                                           bot=member.bot, nick=member.nick),
                           permissions=str(channel.permissions_for(member).value)),
            "token": token,
            "version": 1,
            "app_permissions": str(channel.permissions_for(guild.me).value),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": guild.filesize_limit,
        }
        before = {i: (m.content, m.loading, len(m.history)) for i, m in self.rest.messages.items()}
        running = asyncio.all_tasks()
        self.bot._connection.parse_interaction_create(payload)
        invoked = [t for t in asyncio.all_tasks() - running if t.get_name() == "CommandTree-invoker"]
        assert invoked, f"/{command}: discord.py's CommandTree did not take the interaction"
        await asyncio.gather(*invoked)
        await settle()  # error handlers run as tasks of their own
        return [m for i, m in self.rest.messages.items()
                if i not in before or before[i] != (m.content, m.loading, len(m.history))]

    async def click(self, author_id: int, message: Sent, custom_id: str, *, guild_id: int = GUILD_ID,
                    timeout: float = 10.0) -> Sent:
        """Press a button under ``message`` as Discord's client does (a component
        INTERACTION_CREATE); returns the bot's answer to the click."""
        assert custom_id in message.custom_ids(), f"no button {custom_id!r} under that message: Discord shows none"
        guild = self.bot.get_guild(guild_id)
        channel = guild.get_channel(message.channel_id)
        member = guild.get_member(author_id)
        interaction_id = snowflake()
        token = f"token-{interaction_id}"
        record = InteractionRecord(interaction_id, token, message.channel_id, custom_id)
        self.rest.interactions[interaction_id] = record
        payload = {
            "id": str(interaction_id),
            "application_id": str(BOT_ID),
            "type": 3,  # MESSAGE_COMPONENT
            "data": {"custom_id": custom_id, "component_type": 2},
            "guild_id": str(guild_id),
            "channel_id": str(message.channel_id),
            "channel": _channel_payload(message.channel_id, guild_id, channel.name, channel.type.value,
                                        channel.position),
            "member": dict(_member_payload(author_id, member.name, [r.id for r in member.roles if not r.is_default()],
                                           bot=member.bot, nick=member.nick),
                           permissions=str(channel.permissions_for(member).value)),
            "message": self.rest._message_payload(message),
            "token": token,
            "version": 1,
            "app_permissions": str(channel.permissions_for(guild.me).value),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": guild.filesize_limit,
        }
        self.bot._connection.parse_interaction_create(payload)
        deadline = asyncio.get_running_loop().time() + timeout
        while record.original_id is None:
            assert asyncio.get_running_loop().time() < deadline, f"the click on {custom_id!r} was never answered"
            await asyncio.sleep(0.01)
        await settle()
        return self.rest.messages[record.original_id]

    def interaction(self, command: str) -> InteractionRecord:
        """The last use of ``/command`` (to see whether and how it was answered)."""
        return [r for r in self.rest.interactions.values() if r.command == command][-1]


async def settle(rounds: int = 20) -> None:
    """Let tasks the bot scheduled (events, error handlers) run to completion."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def _reset_red_globals() -> None:
    """Red keeps JSON data, locks and Config objects in module globals keyed by cog name;
    a test's bot must not see the previous test's (or its event loop's) leftovers."""
    from redbot.core import config as config_module
    from redbot.core._drivers import json as json_driver

    json_driver._shared_datastore.clear()
    json_driver._locks.clear()
    config_module._config_cache = weakref.WeakValueDictionary()


@pytest.fixture
async def red_world(tmp_path: Path) -> AsyncIterator[RedWorld]:
    """A Red bot with Core loaded, prefix ``!``, and the two guilds; no chunkrecorder yet."""
    world = await RedWorld.create(tmp_path / "red")
    try:
        yield world
    finally:
        await world.close()


# --------------------------------------------------------------------------- with the cog
@pytest.fixture
async def cog_world(tmp_path: Path) -> AsyncIterator[RedWorld]:
    """``red_world`` with chunkrecorder loaded through its real ``setup(bot)``."""
    import chunkrecorder

    world = await RedWorld.create(tmp_path / "red")
    try:
        await chunkrecorder.setup(world.bot)
        world.cog = world.bot.get_cog("ChunkRecorder")
        await settle()
        yield world
    finally:
        await world.close()


# --------------------------------------------------------------------------- with voice
class VoiceWorld:
    """The cog plus the harness's fake voice channel behind the cog's connector.

    The harness is the Discord voice edge only: datagrams it sends go through the
    cog's real receiver, session, encoder and store. Its simulated clock is also the
    meeting's clock, so seconds of meeting run in a fraction of a second and the
    auto-stop timers can be reached without waiting.
    """

    def __init__(self, world: RedWorld, net: Any) -> None:
        self.world = world
        self.net = net

    @property
    def cog(self) -> Any:
        return self.world.cog

    @property
    def live(self) -> Any:
        return self.cog.service.live(GUILD_ID)

    async def run(self, seconds: float) -> None:
        """Stream ``seconds`` of meeting, advancing the session as the cog's tick does."""
        await self.net.run(seconds, on_tick=self.cog.service.recorder.tick)
        await settle()

    async def wait_until(self, predicate: Any, timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
            await asyncio.sleep(0.02)

    def join(self, *user_ids: int, channel_id: int = VOICE_ID) -> None:
        """Members join the voice channel as Discord's gateway reports it."""
        for uid in user_ids:
            self.world.voice_state(uid, channel_id)


@pytest.fixture
async def voice_world(cog_world: RedWorld) -> AsyncIterator[VoiceWorld]:
    """``cog_world`` recording from a harness channel with Speaker (sweep) and Member
    (another sweep) talking, 1 s chunks, and fast reconnects."""
    from harness import sources
    from harness.network import FakeVoiceNetwork

    net = FakeVoiceNetwork(guild_id=GUILD_ID, channel_id=VOICE_ID, bot_user_id=BOT_ID, seed=5,
                           channel_name="Standup")
    net.add_speaker(SPEAKER_ID, sources.synthetic_speaker(0, 10.0, seed=1, talk_spurts=False), name="speaker")
    net.add_speaker(MEMBER_ID, sources.synthetic_speaker(1, 10.0, seed=1, talk_spurts=False), name="member")
    cog = cog_world.cog
    meetings = cog.service.meetings
    meetings.connector = net.connector
    meetings.clock = net.clock
    meetings.reconnect_delay_s = 0.01
    cog.ticker.interval_s = 0.02
    await cog.config.guild_from_id(GUILD_ID).flush_interval.set(1.0)
    voice = VoiceWorld(cog_world, net)
    voice.join(ADMIN_ID, SPEAKER_ID, MEMBER_ID)
    yield voice


async def wait_for_sent(world: RedWorld, predicate: Any, timeout: float = 30.0, channel_id: int = TEXT_ID) -> Sent:
    """The first message in the channel matching ``predicate`` (auto-stops post on their own)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for m in world.sent(channel_id):
            if predicate(m):
                return m
        assert asyncio.get_running_loop().time() < deadline, [m.text for m in world.sent(channel_id)]
        await asyncio.sleep(0.02)
