"""How recordings, meetings and settings read in Discord.

Kept apart from the commands so every command shows a size, a duration or a speaker
the same way, and so tests can check the wording without a bot.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Literal, Optional, Sequence

import discord
from redbot.core.utils.chat_formatting import escape, humanize_list, humanize_number

from ..i18n import _
from ..objects.records import (
    ChunkCounts,
    Meeting,
    MeetingStatus,
    Recording,
    RecordingKind,
)
from ..objects.results import Gap

#: The styles of Discord's ``<t:...:style>`` timestamps.
TimestampStyle = Literal["f", "F", "d", "D", "t", "T", "s", "S", "R"]

__all__ = [
    "bar",
    "channel_label",
    "clock_duration",
    "human_size",
    "member_name",
    "meeting_line",
    "mixed_name",
    "mixed_note",
    "recording_line",
    "status_word",
    "timestamp",
]


def mixed_note() -> str:
    """Said wherever a mixed file is shown: why a deletion request does not remove it."""
    return _(
        "A mixed file holds everyone's voices in one track: it cannot be split per member, "
        "so a member's data deletion request does not remove it (an admin can delete it)."
    )


def human_size(size: int) -> str:
    """Binary units, one decimal: what Discord's own upload limit (10 MiB) is written in."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def clock_duration(ms: Optional[int | float]) -> str:
    """``m:ss`` or ``h:mm:ss``: how media players show a length."""
    if ms is None:
        return "?"  # the same in every language
    total = int(round(ms / 1000))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def timestamp(epoch: Optional[float], style: TimestampStyle = "f") -> str:
    """A Discord timestamp: every reader sees it in their own time zone."""
    if epoch is None:
        return "?"
    return discord.utils.format_dt(dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc), style)


def mixed_name() -> str:
    """What the mixed track is called where a speaker's name would be."""
    return _("Mixed")


def member_name(guild: Optional[discord.Guild], user_id: Optional[int]) -> str:
    """Display name without a ping; ids of members who left stay recognisable."""
    if user_id is None:
        return mixed_name()
    member = guild.get_member(user_id) if guild is not None else None
    if member is None:
        return _("user {user_id}").format(user_id=user_id)
    return escape(member.display_name, mass_mentions=True, formatting=True)


def status_word(status: MeetingStatus) -> str:
    words = {
        MeetingStatus.ACTIVE: _("recording"),
        MeetingStatus.STOPPING: _("finishing"),
        MeetingStatus.PROMOTED: _("done"),
        MeetingStatus.INTERRUPTED: _("interrupted"),
        MeetingStatus.FAILED: _("failed"),
    }
    return words.get(status, status.value.lower())


def channel_label(channel_name: Optional[str], channel_id: int) -> str:
    """A channel's name, or its id once it is gone."""
    return channel_name or _("channel {channel_id}").format(channel_id=channel_id)


def recording_line(guild: Optional[discord.Guild], rec: Recording) -> str:
    who = mixed_name() if rec.kind is RecordingKind.MIXED else member_name(guild, rec.user_id)
    return _("**{speaker}**: {length}, {size} (`{recording_id}`)").format(
        speaker=who, length=clock_duration(rec.duration_in_ms), size=human_size(rec.size_bytes), recording_id=rec.id
    )


def meeting_line(guild: Optional[discord.Guild], meeting: Meeting,
                 channel_name: Optional[str] = None) -> str:
    where = escape(channel_label(channel_name, meeting.channel_id), formatting=True)
    when = timestamp(meeting.started_at, "f")
    if meeting.length_samples:
        return _("`{meeting_id}` {started} in **{channel}** ({status}, {length})").format(
            meeting_id=meeting.id, started=when, channel=where, status=status_word(meeting.status),
            length=clock_duration(meeting.length_samples * 1000 / meeting.sample_rate),
        )
    return _("`{meeting_id}` {started} in **{channel}** ({status})").format(
        meeting_id=meeting.id, started=when, channel=where, status=status_word(meeting.status)
    )


def chunk_summary(counts: ChunkCounts) -> str:
    done, pending = humanize_number(counts.done), humanize_number(counts.pending)
    if counts.failed:
        return _("{done} done, {waiting} waiting, {failed} failed").format(
            done=done, waiting=pending, failed=humanize_number(counts.failed)
        )
    return _("{done} done, {waiting} waiting").format(done=done, waiting=pending)


def bar(done: int, total: int, width: int = 12) -> str:
    if total <= 0:
        return "▱" * width
    filled = max(0, min(width, round(width * done / total)))
    return "▰" * filled + "▱" * (width - filled)


def names(guild: Optional[discord.Guild], user_ids: Iterable[int]) -> str:
    listed = [member_name(guild, u) for u in user_ids]
    return humanize_list(listed) if listed else _("nobody yet")


def batches(sizes: Sequence[int], limit: int, max_files: int = 10) -> list[list[int]]:
    """Indices of files grouped so each message stays under the upload limit.

    Files larger than ``limit`` on their own are left out; the caller says how to
    get them instead.
    """
    out: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        if size > limit:
            continue
        if current and (used + size > limit or len(current) >= max_files):
            out.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        out.append(current)
    return out


def gap_reason(reason: str) -> str:
    """Why a window is silent, in a few words: the error's gist, never a code span breaker."""
    text = reason.replace("`", "'").strip()
    if "No space left" in text or "ENOSPC" in text:
        return _("the disk was full")
    if "Permission denied" in text:
        return _("no permission to write")
    if "damaged" in text or "missing" in text:
        return _("its encoded part was damaged")
    return text[:80] or _("encoding failed")


def gap_lines(guild: Optional[discord.Guild], meeting: Meeting, gaps: Sequence[Gap]) -> list[str]:
    """One line per stretch of time some files are silent in, who, why, and whether it can be put back."""
    by_window: dict[tuple[int, int], list[Gap]] = {}
    for gap in gaps:
        by_window.setdefault((gap.start_sample, gap.sample_count), []).append(gap)
    lines = []
    for (start, count), group in sorted(by_window.items()):
        who = humanize_list([mixed_name() if g.is_mix else member_name(guild, g.user_id) for g in group])
        span = "{start}–{end}".format(start=clock_duration(start * 1000 / meeting.sample_rate),
                                      end=clock_duration((start + count) * 1000 / meeting.sample_rate))
        if all(g.repairable for g in group):
            lines.append(_("• {span} silent for {who} ({reason}); its audio is kept for a repair").format(
                span=span, who=who, reason=gap_reason(group[0].reason)))
        else:
            lines.append(_("• {span} silent for {who} ({reason}); nothing of it is left to repair").format(
                span=span, who=who, reason=gap_reason(group[0].reason)))
    return lines
