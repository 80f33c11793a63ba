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
from typing import Any, Literal, Mapping, Optional

from ..i18n import _
from ..objects.frames import MAX_FLUSH_INTERVAL_S, MeetingSettings
from ..objects.records import Strategy
from .consent import ConsentMode
from .echo import echo
from .errors import UserError

__all__ = [
    "CONFIG_IDENTIFIER",
    "GLOBAL_DEFAULTS",
    "GUILD_DEFAULTS",
    "MEMBER_DEFAULTS",
    "AUTORECORD_DEFAULTS",
    "BITRATES_KBPS",
    "AUTOSTOP",
    "AUTORECORD_MEMBERS",
    "FLUSH",
    "GuildSettings",
    "MAX_LENGTH",
    "MOVE_ACTIONS",
    "MOVE_FOLLOW",
    "MOVE_STOP",
    "NumberSetting",
    "RECONNECT",
    "RETENTION",
    "TEMP_TTL",
    "DELIVERIES",
    "LINK_EXPIRY",
    "POST_FORMATS",
    "parse_delivery",
    "parse_post_format",
    "parse_bool",
    "parse_bitrate",
    "parse_channels",
    "parse_archive",
    "parse_move",
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
    #: What each track is kept as: "mp3" (64 kb/s, small) or "flac" (lossless, for editing).
    archive: str = "mp3"
    retention_days: int = 0  # 0 = keep until deleted
    max_length_minutes: int = 240
    autostop_minutes: int = 5  # 0 = never stop because the channel is empty
    auto_promote: bool = True
    announce: bool = True
    recorder_role: Optional[int] = None  # None = Manage Server (or Red admin) only
    reconnect_attempts: int = 3
    consent: str = ConsentMode.NOTICE.value  # "notice": everyone but opt-outs; "optin": who agreed
    #: Where a meeting's files go: "channel" (the text channel, when everyone who reads it
    #: could hear the meeting) or "dm" (the starter gets the meeting, each speaker their own file).
    delivery: str = "channel"
    #: Days a download link works (when the bot owner has turned links on).
    link_expiry_days: int = 7
    #: What is posted and fetched by default: "mp3" or "opus" (the compact copy).
    post_format: str = "mp3"
    #: When someone moves the bot to another voice channel: MOVE_STOP ends the meeting
    #: there; MOVE_FOLLOW records the new channel as the same meeting. Stopping is the
    #: default: members of the other channel never saw the start announcement.
    move_action: str = "stop"

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> "GuildSettings":
        """Typed view of stored values; anything invalid falls back to the default.

        A flush interval stored above today's cap (an older version allowed 300 s, at
        ~111 MB per speaker) falls back to the cap, the nearest value allowed, and the
        other settings stay as they were.
        """
        default = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = raw.get(f.name, getattr(default, f.name))
            values[f.name] = value
        flush = values["flush_interval"]
        if isinstance(flush, (int, float)) and not isinstance(flush, bool) and flush > MAX_FLUSH_INTERVAL_S:
            values["flush_interval"] = MAX_FLUSH_INTERVAL_S
        settings = cls(**values)
        try:
            settings.meeting_settings()
            Strategy(settings.strategy)
            ConsentMode(settings.consent)
            settings.check_delivery()
        except (ValueError, TypeError):
            return default
        if settings.move_action not in MOVE_ACTIONS:
            settings = replace(settings, move_action=default.move_action)
        return settings

    @property
    def consent_mode(self) -> ConsentMode:
        return ConsentMode(self.consent)

    def check_delivery(self) -> None:
        """``ValueError`` unless the delivery settings are ones this version knows."""
        if self.delivery not in DELIVERIES or self.post_format not in POST_FORMATS:
            raise ValueError(f"unknown delivery {self.delivery!r} or format {self.post_format!r}")
        days = self.link_expiry_days
        if isinstance(days, bool) or not isinstance(days, int) or not LINK_EXPIRY.low <= days <= LINK_EXPIRY.high:
            raise ValueError(f"link expiry {days!r} is out of range")

    def meeting_settings(self) -> MeetingSettings:
        """What a new meeting records with (validated by ``MeetingSettings`` itself)."""
        return MeetingSettings(
            strategy=Strategy(self.strategy),
            flush_interval_s=float(self.flush_interval),
            channels=int(self.channels),
            bitrate=int(self.bitrate),
            archive=str(self.archive),
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


#: ``recordingset move``: what a move of the bot to another voice channel does.
MOVE_STOP = "stop"
MOVE_FOLLOW = "follow"
MOVE_ACTIONS = (MOVE_STOP, MOVE_FOLLOW)

GUILD_DEFAULTS: dict[str, Any] = GuildSettings().as_config()
#: ``consent_always``: the member agreed to every recording in the guild (consent ``optin``).
MEMBER_DEFAULTS: dict[str, Any] = {"opted_out": False, "consent_always": False}
#: Guild keys kept beside the settings: auto-record rules (``[{"channel": id, "min_members": n}]``)
#: and the rule channels a manual stop paused until they empty.
AUTORECORD_DEFAULTS: dict[str, Any] = {"autorecord": [], "autorecord_paused": []}
#: Bot-wide: temp chunks of every guild share one cleanup pass; one download server
#: (``core/config.WebConfig``: off until the owner turns it on).
GLOBAL_DEFAULTS: dict[str, Any] = {"temp_ttl_hours": 24, "web": {}}

#: ``[p]recordingset delivery`` values, and the formats a guild may post by default.
DELIVERIES = ("channel", "dm")
POST_FORMATS = ("mp3", "opus")

#: ``[p]recordingset delivery`` values, and the formats a guild may post by default.
DELIVERIES = ("channel", "dm")
POST_FORMATS = ("mp3", "opus")


# --------------------------------------------------------------------------- parsing
_TRUE = {"on", "yes", "true", "enable", "enabled", "1", "y"}
_FALSE = {"off", "no", "false", "disable", "disabled", "0", "n"}


def parse_bool(text: str, *, setting: Literal["autopromote", "announce"]) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    if setting == "autopromote":
        raise UserError(_("`{value}` is not on or off: say `on` or `off` for automatic promotion after a crash.")
                        .format(value=echo(text)))
    raise UserError(_("`{value}` is not on or off: say `on` or `off` for announcements.").format(value=echo(text)))


NumberName = Literal["flush", "retention", "tempttl", "maxlength", "autostop", "reconnect", "members", "linkexpiry"]


@dataclass(frozen=True, slots=True)
class NumberSetting:
    """A numeric setting: its bounds in its own unit and the two sentences that refuse a value.

    Each sentence is whole (not pieced together from "what" and "unit"), so a translator
    can word it as their language needs. ``unit_s`` is the unit in seconds for the
    settings a duration can be given for (``30d``, ``4h``); 0 for plain counts.
    """

    name: NumberName
    low: float
    high: float
    integer: bool = True
    unit_s: float = 0.0

    def not_a_number(self, text: str) -> str:
        """``text`` is not a number of this setting's unit (or not a whole one)."""
        low, high = _fmt(self.low), _fmt(self.high)
        if self.name == "flush":
            msg = _("`{value}` is not a number of seconds: give the flush interval between {low} and {high}.")
        elif self.name == "retention":
            msg = _("`{value}` is not a whole number of days: give the retention between {low} and {high}.")
        elif self.name == "tempttl":
            msg = _("`{value}` is not a whole number of hours: give the temp file lifetime between {low} and {high}.")
        elif self.name == "maxlength":
            msg = _("`{value}` is not a whole number of minutes: give the maximum length between {low} and {high}.")
        elif self.name == "autostop":
            msg = _(
                "`{value}` is not a whole number of minutes: give the empty-channel wait between {low} and {high}."
            )
        elif self.name == "members":
            msg = _("`{value}` is not a whole number of members: give the auto-record minimum between {low} and "
                    "{high} (0 turns it off).")
        elif self.name == "linkexpiry":
            msg = _("`{value}` is not a whole number of days: give the link lifetime between {low} and {high}.")
        else:
            msg = _("`{value}` is not a whole number of attempts: give reconnect attempts between {low} and {high}.")
        return msg.format(value=echo(text), low=low, high=high)

    def out_of_range(self, value: float) -> str:
        """``value`` (in this setting's unit) is outside ``[low, high]``."""
        low, high, shown = _fmt(self.low), _fmt(self.high), _fmt(value)
        if self.name == "flush":
            msg = _("The flush interval must be between {low} and {high} seconds, not {value}.")
        elif self.name == "retention":
            msg = _("The retention must be between {low} and {high} days, not {value}.")
        elif self.name == "tempttl":
            msg = _("The temp file lifetime must be between {low} and {high} hours, not {value}.")
        elif self.name == "maxlength":
            msg = _("The maximum length must be between {low} and {high} minutes, not {value}.")
        elif self.name == "autostop":
            msg = _("The empty-channel wait must be between {low} and {high} minutes, not {value}.")
        elif self.name == "members":
            msg = _("The auto-record minimum must be between {low} and {high} members, not {value}.")
        elif self.name == "linkexpiry":
            msg = _("The link lifetime must be between {low} and {high} days, not {value}.")
        else:
            msg = _("Reconnect attempts must be between {low} and {high} attempts, not {value}.")
        return msg.format(low=low, high=high, value=shown)

    def check(self, value: float, text: str) -> float:
        """``value`` if it is a finite (whole, for whole settings) number within bounds;
        otherwise ``UserError`` with the sentence that says why."""
        if math.isnan(value) or math.isinf(value) or (self.integer and value != int(value)):
            raise UserError(self.not_a_number(text))
        if not self.low <= value <= self.high:
            raise UserError(self.out_of_range(value))
        return int(value) if self.integer else value

    def parse(self, text: str) -> float:
        """A plain number in the setting's own unit (``10``, ``2.5``)."""
        try:
            value = float(text.strip())
        except ValueError:
            raise UserError(self.not_a_number(text)) from None
        return self.check(value, text)


#: The numeric settings of ``[p]recordingset``.
FLUSH = NumberSetting("flush", 1, MAX_FLUSH_INTERVAL_S, integer=False, unit_s=1.0)
RETENTION = NumberSetting("retention", 0, 3650, unit_s=86_400.0)
TEMP_TTL = NumberSetting("tempttl", 1, 720, unit_s=3600.0)
MAX_LENGTH = NumberSetting("maxlength", 1, 1440, unit_s=60.0)
AUTOSTOP = NumberSetting("autostop", 0, 1440, unit_s=60.0)
RECONNECT = NumberSetting("reconnect", 0, 10)
#: Members an auto-record rule waits for (0 removes the rule).
AUTORECORD_MEMBERS = NumberSetting("members", 0, 99)
LINK_EXPIRY = NumberSetting("linkexpiry", 1, 365, unit_s=86_400.0)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def parse_strategy(text: str) -> Strategy:
    word = text.strip().lower().replace("-", "_")
    aliases = {"peruser": "per_user", "per_user": "per_user", "user": "per_user", "speakers": "per_user",
               "mix": "mixed", "mixed": "mixed", "both": "hybrid", "hybrid": "hybrid"}
    if word not in aliases:
        raise UserError(_("`{value}` is not a strategy: choose `per_user` (one file per speaker), "
                          "`mixed` (one file) or `hybrid` (both).").format(value=echo(text)))
    return Strategy(aliases[word])


def parse_bitrate(text: str) -> int:
    """Kilobits per second (``64``, ``64k``, ``64kbps``) to bits per second."""
    word = text.strip().lower().removesuffix("kbps").removesuffix("kb/s").removesuffix("k")
    choices = ", ".join(str(b) for b in BITRATES_KBPS)
    try:
        kbps = int(word)
    except ValueError:
        raise UserError(_("`{value}` is not a bitrate: choose one of {choices} (kb/s).")
                        .format(value=echo(text), choices=choices)) from None
    if kbps not in BITRATES_KBPS:
        raise UserError(_("{kbps} kb/s is not offered: choose one of {choices} (kb/s).")
                        .format(kbps=echo(kbps), choices=choices))
    return kbps * 1000


def parse_delivery(text: str) -> str:
    word = text.strip().lower()
    aliases = {"channel": "channel", "here": "channel", "dm": "dm", "dms": "dm", "direct": "dm"}
    if word not in aliases:
        raise UserError(_("`{value}` is not a delivery: say `channel` (files in the channel, when everyone "
                          "there could hear the meeting) or `dm` (each member by direct message).")
                        .format(value=echo(text)))
    return aliases[word]


def parse_post_format(text: str) -> str:
    word = text.strip().lower().lstrip(".")
    if word in ("mp3",):
        return "mp3"
    if word in ("opus", "ogg"):
        return "opus"
    raise UserError(_("`{value}` is not a format: say `mp3` or `opus`.").format(value=echo(text)))


def parse_move(text: str) -> str:
    """``stop`` or ``follow`` (what happens when someone moves the bot)."""
    word = text.strip().lower()
    aliases = {"stop": MOVE_STOP, "end": MOVE_STOP, "follow": MOVE_FOLLOW, "stay": MOVE_FOLLOW,
               "continue": MOVE_FOLLOW}
    if word not in aliases:
        raise UserError(_("`{value}` is not a choice: say `stop` (a move ends the recording) or `follow` "
                          "(keep recording in the new channel).").format(value=echo(text)))
    return aliases[word]


def parse_archive(text: str) -> str:
    word = text.strip().lower()
    if word in ("mp3", "flac"):
        return word
    raise UserError(_("`{value}` is not an archive format: say `mp3` or `flac`.").format(value=echo(text)))


def parse_channels(text: str) -> int:
    word = text.strip().lower()
    if word in ("1", "mono"):
        return 1
    if word in ("2", "stereo"):
        return 2
    raise UserError(_("`{value}` is not a channel layout: say `mono` or `stereo`.").format(value=echo(text)))
