"""Guild settings kept in Red's Config, and how they become a meeting's settings.

Config stores plain JSON values; ``GuildSettings`` is the typed view the commands and
the live-meeting code read, so that a bad value already stored (from an older version
or a hand-edited settings file) falls back to its default instead of breaking a start.
Parsing a user's text lives here too, so every setting has one friendly error message
and nothing is written until the value is known to be good.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, Optional

from ..objects.frames import MeetingSettings
from ..objects.records import Strategy
from .errors import UserError

__all__ = [
    "CONFIG_IDENTIFIER",
    "GLOBAL_DEFAULTS",
    "GUILD_DEFAULTS",
    "MEMBER_DEFAULTS",
    "BITRATES_KBPS",
    "GuildSettings",
    "parse_bool",
    "parse_bitrate",
    "parse_channels",
    "parse_number",
    "parse_strategy",
]

#: Red Config identifier: fixed forever, it locates the stored settings.
CONFIG_IDENTIFIER = 0x43_68_75_6E_6B_52_65_63  # "ChunkRec"

BITRATES_KBPS = (32, 48, 64, 96, 128, 160, 192)


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """One guild's choices; field names are the Config keys."""

    flush_interval: float = 10.0  # seconds per chunk
    strategy: str = Strategy.HYBRID.value
    bitrate: int = 64_000  # bits per second
    channels: int = 1
    retention_days: int = 0  # 0 = keep until deleted
    max_length_minutes: int = 240
    autostop_minutes: int = 5  # 0 = never stop because the channel is empty
    auto_promote: bool = True
    announce: bool = True
    recorder_role: Optional[int] = None  # None = Manage Server (or Red admin) only
    reconnect_attempts: int = 3

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> "GuildSettings":
        """Typed view of stored values; anything invalid falls back to the default."""
        default = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = raw.get(f.name, getattr(default, f.name))
            values[f.name] = value
        settings = cls(**values)
        try:
            settings.meeting_settings()
            Strategy(settings.strategy)
        except (ValueError, TypeError):
            return default
        return settings

    def meeting_settings(self) -> MeetingSettings:
        """What a new meeting records with (validated by ``MeetingSettings`` itself)."""
        return MeetingSettings(
            strategy=Strategy(self.strategy),
            flush_interval_s=float(self.flush_interval),
            channels=int(self.channels),
            bitrate=int(self.bitrate),
            max_length_s=float(self.max_length_minutes) * 60.0,
        )

    def with_value(self, **changes: Any) -> "GuildSettings":
        """A copy with ``changes``; raises ``UserError`` if the result cannot record."""
        updated = replace(self, **changes)
        try:
            updated.meeting_settings()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return updated

    def as_config(self) -> dict[str, Any]:
        return asdict(self)


GUILD_DEFAULTS: dict[str, Any] = GuildSettings().as_config()
MEMBER_DEFAULTS: dict[str, Any] = {"opted_out": False}
#: Bot-wide: temp chunks of every guild share one cleanup pass.
GLOBAL_DEFAULTS: dict[str, Any] = {"temp_ttl_hours": 24}


# --------------------------------------------------------------------------- parsing
_TRUE = {"on", "yes", "true", "enable", "enabled", "1", "y"}
_FALSE = {"off", "no", "false", "disable", "disabled", "0", "n"}


def parse_bool(text: str, *, what: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise UserError(f"`{text}` is not on or off: say `on` or `off` for {what}.")


def parse_number(text: str, *, what: str, unit: str, low: float, high: float,
                 integer: bool = False) -> float:
    """A number within ``[low, high]``; ``what``/``unit`` make the error message."""
    cleaned = text.strip().lower().rstrip("s") if unit.startswith("second") else text.strip().lower()
    try:
        value = float(cleaned)
    except ValueError:
        value = math.nan
    if math.isnan(value) or math.isinf(value) or (integer and value != int(value)):
        kind = "a whole number of" if integer else "a number of"
        raise UserError(f"`{text}` is not {kind} {unit}: give {what} between {_fmt(low)} and {_fmt(high)}.")
    if not low <= value <= high:
        raise UserError(f"{what.capitalize()} must be between {_fmt(low)} and {_fmt(high)} {unit}, not {_fmt(value)}.")
    return int(value) if integer else value


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def parse_strategy(text: str) -> Strategy:
    word = text.strip().lower().replace("-", "_")
    aliases = {"peruser": "per_user", "per_user": "per_user", "user": "per_user", "speakers": "per_user",
               "mix": "mixed", "mixed": "mixed", "both": "hybrid", "hybrid": "hybrid"}
    if word not in aliases:
        raise UserError(f"`{text}` is not a strategy: choose `per_user` (one file per speaker), "
                        f"`mixed` (one file) or `hybrid` (both).")
    return Strategy(aliases[word])


def parse_bitrate(text: str) -> int:
    """Kilobits per second (``64``, ``64k``, ``64kbps``) to bits per second."""
    word = text.strip().lower().removesuffix("kbps").removesuffix("kb/s").removesuffix("k")
    choices = ", ".join(str(b) for b in BITRATES_KBPS)
    try:
        kbps = int(word)
    except ValueError:
        raise UserError(f"`{text}` is not a bitrate: choose one of {choices} (kb/s).") from None
    if kbps not in BITRATES_KBPS:
        raise UserError(f"{kbps} kb/s is not offered: choose one of {choices} (kb/s).")
    return kbps * 1000


def parse_channels(text: str) -> int:
    word = text.strip().lower()
    if word in ("1", "mono"):
        return 1
    if word in ("2", "stereo"):
        return 2
    raise UserError(f"`{text}` is not a channel layout: say `mono` or `stereo`.")
