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


class FakeDiscordREST:
    """Discord's REST API as far as a recording cog uses it, enforcing its limits."""

    def __init__(self, world: "RedWorld") -> None:
        self.world = world
        self.messages: dict[int, Sent] = {}
        self.calls: list[tuple[str, str]] = []

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
            "type": 0,
            "flags": 0,
            "components": [],
        }
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
        if method == "POST" and path == "/channels/{channel_id}/messages":
            payload, read = self._payload_and_files(files, form, kwargs)
            self._require(channel_id, send_messages=True)
            if read:
                self._require(channel_id, attach_files=True)
                channel = self.world.bot.get_channel(channel_id)
                limit = channel.guild.filesize_limit if getattr(channel, "guild", None) else 10 * 2**20
                if sum(len(d) for _, d in read) > limit:
                    raise discord.HTTPException(_Response(413, "Payload Too Large"), {"code": 40005, "message": "Request entity too large"})
            sent = Sent(snowflake(), channel_id, payload.get("content"), payload.get("embeds") or [], read)
            sent.history.append(sent.content)
            self.messages[sent.id] = sent
            return self._message_payload(sent)
        if method == "PATCH" and path == "/channels/{channel_id}/messages/{message_id}":
            payload, read = self._payload_and_files(files, form, kwargs)
            sent = self.messages[int(params["message_id"])]
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
        raise NotImplementedError(f"FakeDiscordREST has no answer for {method} {path}")

    # ---- what a test reads
    def in_channel(self, channel_id: int = TEXT_ID) -> list[Sent]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]


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
        await bot._async_setup_hook()
        await bot._pre_login()
        state = bot._connection
        state.user = discord.ClientUser(state=state, data=_user_payload(BOT_ID, "recbot", bot=True))
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
        _reset_red_globals()

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
