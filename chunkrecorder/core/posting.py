"""Posting a finished meeting: the summary, a line per file, in as many messages as it takes.

Where the files themselves go, and as what (links, attachments, parts), is
``core/delivery.py``'s.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import discord
from redbot.core.utils.chat_formatting import pagify

from ..i18n import _
from ..objects.records import Meeting, Recording
from .formatting import channel_label, clock_duration, human_size, recording_line

__all__ = ["result_text", "send_long", "short_error"]

log = logging.getLogger("red.chunkrecorder.posting")


def short_error(exc: BaseException) -> str:
    """First line of an exception, for a one-line message (details go to the log)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:150]


def result_text(guild: discord.Guild, meeting: Meeting, result: Any, recordings: Sequence[Recording]) -> str:
    total = sum(r.size_bytes for r in recordings)
    vc = guild.get_channel(meeting.channel_id)
    values = dict(channel=channel_label(vc.name if vc is not None else None, meeting.channel_id),
                  length=clock_duration(getattr(result, "length_ms", None)), files=len(recordings),
                  size=human_size(total), meeting_id=meeting.id)
    if len(recordings) == 1:
        head = _("✅ **{channel}**: {length} recorded, 1 file, {size} (meeting `{meeting_id}`).").format(**values)
    else:
        head = _("✅ **{channel}**: {length} recorded, {files} files, {size} (meeting `{meeting_id}`).").format(**values)
    lines = [head]
    lines += [f"• {recording_line(guild, r)}" for r in recordings]
    if not recordings:
        lines.append(_("Nobody was heard, so there are no files."))
    failed = int(getattr(result, "failed_chunks", 0) or 0)
    if failed == 1:
        lines.append(_("⚠️ 1 chunk could not be encoded and is missing from the files (kept for a retry)."))
    elif failed:
        lines.append(_("⚠️ {chunks} chunks could not be encoded and are missing from the files (kept for a retry).")
                     .format(chunks=failed))
    return "\n".join(lines)


async def send_long(channel: discord.abc.Messageable, text: str) -> None:
    """``text`` in as many messages as it needs, cut between lines (a meeting of many
    speakers has a line per file)."""
    for page in pagify(text, delims=["\n"], page_length=1900):
        await channel.send(page)
