"""Every read and write of Red's Config goes through here (Vex-Cogs' ``configwrapper``).

Config holds plain JSON; this turns it into the typed views the rest of the cog uses
(``GuildSettings``), keeps the opt-out sets in memory for the voice receive thread
(which may not await), and owns the ``active`` record a restart reads to restore the
nickname and to find the channel an interrupted meeting was started from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from redbot.core import Config
from redbot.core.config import Group, Value

from .settings import (
    AUTORECORD_DEFAULTS,
    CONFIG_IDENTIFIER,
    GLOBAL_DEFAULTS,
    GUILD_DEFAULTS,
    MEMBER_DEFAULTS,
    GuildSettings,
)

__all__ = ["ActiveRecord", "AutoRecordRule", "SettingsStore", "WebConfig"]


@dataclass(frozen=True, slots=True)
class AutoRecordRule:
    """``[p]recordingset autorecord``: record ``channel_id`` once ``min_members`` are in it."""

    channel_id: int
    min_members: int

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> Optional["AutoRecordRule"]:
        try:
            rule = cls(int(raw["channel"]), int(raw.get("min_members", 1)))
        except (KeyError, TypeError, ValueError):
            return None
        return rule if rule.min_members >= 1 else None

    def as_config(self) -> dict[str, Any]:
        return {"channel": self.channel_id, "min_members": self.min_members}


@dataclass(frozen=True, slots=True)
class ActiveRecord:
    """What a guild's running meeting left in Config, for the next load after a crash."""

    meeting_id: Optional[str]
    text_channel_id: Optional[int]
    nick_before: Optional[str]
    nick_changed: bool

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> "ActiveRecord":
        channel = raw.get("text_channel")
        return cls(
            meeting_id=raw.get("meeting"),
            text_channel_id=int(channel) if channel else None,
            nick_before=raw.get("nick"),
            nick_changed=bool(raw.get("nick_changed")),
        )

    def as_config(self) -> dict[str, Any]:
        return {"meeting": self.meeting_id, "text_channel": self.text_channel_id,
                "nick": self.nick_before, "nick_changed": self.nick_changed}


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The bot-wide download server, as the owner set it (``[p]recordingset web``).

    ``secret`` signs the links (hex; made when links are first turned on, replaced by
    ``rotate``); ``retired`` are the key ids of earlier secrets, so that their links
    answer "revoked" rather than "not valid".
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""
    secret: str = ""
    retired: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> "WebConfig":
        default = cls()
        try:
            return cls(
                enabled=bool(raw.get("enabled", False)),
                host=str(raw.get("host") or default.host),
                port=int(raw.get("port", default.port)),
                base_url=str(raw.get("base_url") or ""),
                secret=str(raw.get("secret") or ""),
                retired=tuple(str(k) for k in raw.get("retired") or ()),
            )
        except (TypeError, ValueError):
            return default

    def as_config(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "host": self.host, "port": self.port, "base_url": self.base_url,
                "secret": self.secret, "retired": list(self.retired)}


def _value(attr: Group | Value) -> Value:
    """A Config value reached by attribute. Red types that as "a group or a value"
    (a ``Group`` is a ``Value``); this lets the type checker see ``set``/``clear`` as Red's."""
    assert isinstance(attr, Value), attr
    return attr


class SettingsStore:
    """The cog's Config: guild settings, the bot-wide temp TTL, opt-outs, active meetings."""

    def __init__(self, cog_instance: object) -> None:
        self.config: Config = Config.get_conf(cog_instance, identifier=CONFIG_IDENTIFIER, force_registration=True)
        self.config.register_global(**GLOBAL_DEFAULTS)
        self.config.register_guild(**GUILD_DEFAULTS, **AUTORECORD_DEFAULTS, active={})
        self.config.register_member(**MEMBER_DEFAULTS)
        self._opted_out: dict[int, frozenset[int]] = {}
        self._always: dict[int, frozenset[int]] = {}

    async def load(self) -> None:
        """Read every guild's opt-outs and standing agreements into memory (the receive
        path asks per frame)."""
        for guild_id, members in (await self.config.all_members()).items():
            self._opted_out[guild_id] = frozenset(uid for uid, data in members.items() if data.get("opted_out"))
            self._always[guild_id] = frozenset(uid for uid, data in members.items() if data.get("consent_always"))

    # ---- guild settings
    async def guild(self, guild_id: int) -> GuildSettings:
        return GuildSettings.from_config(await self.config.guild_from_id(guild_id).all())

    async def save(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Validate then write; raises ``UserError`` before anything is written."""
        updated = (await self.guild(guild_id)).with_value(**changes)
        async with self.config.guild_from_id(guild_id).all() as stored:
            for key in changes:
                stored[key] = getattr(updated, key)
        return updated

    async def all_guilds(self) -> dict[int, GuildSettings]:
        return {gid: GuildSettings.from_config(data) for gid, data in (await self.config.all_guilds()).items()}

    async def temp_ttl_hours(self) -> int:
        return int(await self.config.temp_ttl_hours())

    async def set_temp_ttl_hours(self, hours: int) -> None:
        await _value(self.config.temp_ttl_hours).set(hours)

    # ---- the download server (bot-wide)
    async def web(self) -> WebConfig:
        return WebConfig.from_config(await self.config.web())

    async def set_web(self, web: WebConfig) -> None:
        await _value(self.config.web).set(web.as_config())

    # ---- opt-outs
    def accepts(self, guild_id: int, user_id: int) -> bool:
        """Called from the voice receive thread per frame: one set lookup, nothing more."""
        return user_id not in self._opted_out.get(guild_id, frozenset())

    async def set_opt_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        """Opting out also withdraws a standing agreement (``consent_always``)."""
        member = self.config.member_from_ids(guild_id, user_id)
        await _value(member.opted_out).set(opted_out)
        self._swap(self._opted_out, guild_id, user_id, opted_out)
        if opted_out:
            await _value(member.consent_always).set(False)
            self._swap(self._always, guild_id, user_id, False)

    # ---- consent (guilds in ``optin`` mode)
    def agreed_always(self, guild_id: int, user_id: int) -> bool:
        """Called from the voice receive thread per frame, like :meth:`accepts`."""
        return user_id in self._always.get(guild_id, frozenset())

    async def set_consent_always(self, guild_id: int, user_id: int, agreed: bool) -> None:
        await _value(self.config.member_from_ids(guild_id, user_id).consent_always).set(agreed)
        self._swap(self._always, guild_id, user_id, agreed)

    async def forget_member(self, user_id: int) -> None:
        """A data deletion: the member's entry in every guild, opt-out and agreement included."""
        for guild_id, members in (await self.config.all_members()).items():
            if user_id in members:
                await self.config.member_from_ids(guild_id, user_id).clear()
                self._swap(self._opted_out, guild_id, user_id, False)
                self._swap(self._always, guild_id, user_id, False)

    @staticmethod
    def _swap(sets: dict[int, frozenset[int]], guild_id: int, user_id: int, member: bool) -> None:
        current = set(sets.get(guild_id, frozenset()))
        (current.add if member else current.discard)(user_id)
        sets[guild_id] = frozenset(current)  # one atomic swap for the receive thread

    # ---- auto-record rules
    async def autorecord_rules(self, guild_id: int) -> list[AutoRecordRule]:
        raw = await self.config.guild_from_id(guild_id).autorecord()
        return [r for r in (AutoRecordRule.from_config(x) for x in raw or []) if r is not None]

    async def all_autorecord_rules(self) -> dict[int, list[AutoRecordRule]]:
        out: dict[int, list[AutoRecordRule]] = {}
        for gid, data in (await self.config.all_guilds()).items():
            rules = [r for r in (AutoRecordRule.from_config(x) for x in data.get("autorecord") or []) if r]
            if rules:
                out[gid] = rules
        return out

    async def set_autorecord_rule(self, guild_id: int, rule: AutoRecordRule) -> None:
        """Add the rule, or replace the channel's rule."""
        async with self.config.guild_from_id(guild_id).autorecord() as stored:
            stored[:] = [x for x in stored
                         if (old := AutoRecordRule.from_config(x)) is None or old.channel_id != rule.channel_id]
            stored.append(rule.as_config())

    async def remove_autorecord_rule(self, guild_id: int, channel_id: int) -> bool:
        removed = False
        async with self.config.guild_from_id(guild_id).autorecord() as stored:
            keep = [x for x in stored if (r := AutoRecordRule.from_config(x)) is None or r.channel_id != channel_id]
            removed = len(keep) != len(stored)
            stored[:] = keep
        await self.set_autorecord_paused(guild_id, channel_id, False)
        return removed

    async def autorecord_paused(self, guild_id: int) -> set[int]:
        return {int(c) for c in await self.config.guild_from_id(guild_id).autorecord_paused() or []}

    async def set_autorecord_paused(self, guild_id: int, channel_id: int, paused: bool) -> None:
        """A manual stop pauses a channel's rule until the channel empties (kept across reloads)."""
        async with self.config.guild_from_id(guild_id).autorecord_paused() as stored:
            current = {int(c) for c in stored}
            (current.add if paused else current.discard)(channel_id)
            stored[:] = sorted(current)

    # ---- the running meeting's record
    async def active(self, guild_id: int) -> Optional[ActiveRecord]:
        raw = await self.config.guild_from_id(guild_id).active()
        return ActiveRecord.from_config(raw) if raw else None

    async def set_active(self, guild_id: int, record: ActiveRecord) -> None:
        await _value(self.config.guild_from_id(guild_id).active).set(record.as_config())

    async def clear_active(self, guild_id: int) -> None:
        await _value(self.config.guild_from_id(guild_id).active).clear()

    async def all_active(self) -> dict[int, ActiveRecord]:
        return {gid: ActiveRecord.from_config(data["active"])
                for gid, data in (await self.config.all_guilds()).items() if data.get("active")}
