"""Posting a finished meeting: the summary line per file, then the files that fit.

Discord refuses an upload over the guild's limit (10 MiB for bots) with a 413, so
files are grouped under that limit before sending, and anything larger is named with
where the bot owner finds it, instead of failing the whole post.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import discord
from redbot.core.utils.chat_formatting import pagify

from ..i18n import _
from ..objects.records import Meeting, Recording
from .formatting import batches, channel_label, clock_duration, human_size, recording_line

__all__ = ["result_text", "send_long", "upload_recordings", "short_error"]

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


def _open_file(rec: Recording) -> Optional[discord.File]:
    try:
        return discord.File(open(rec.path, "rb"), filename=rec.filename)
    except OSError:
        return None


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return Path(path).name


async def upload_recordings(guild: discord.Guild, channel: discord.abc.Messageable,
                            recordings: Sequence[Recording], *, data_dir: Path, prefix: str) -> None:
    """Attach what fits the guild's upload limit; say how to get the rest."""
    if not recordings:
        return
    limit = guild.filesize_limit
    permissions_for = getattr(channel, "permissions_for", None)
    can_attach = permissions_for is None or permissions_for(guild.me).attach_files
    notes: list[str] = []
    if not can_attach:
        notes.append(_("I can't attach files in this channel (I need Attach Files); `{command}` works where I can.")
                     .format(command=f"{prefix}recordings get <id>"))
    else:
        for group in batches([r.size_bytes for r in recordings], limit):
            files = [await asyncio.to_thread(_open_file, recordings[i]) for i in group]
            try:
                present = [f for f in files if f is not None]
                if present:
                    await channel.send(files=present)
            except discord.HTTPException as exc:
                log.info("Upload to %s failed: %s", getattr(channel, "id", "?"), exc)
                notes.append(_("The upload failed ({error}); `{command}` retries one file.").format(
                    error=short_error(exc), command=f"{prefix}recordings get <id>"))
            finally:
                for f in files:
                    if f is not None:
                        f.close()
            missing = [recordings[i].id for i, f in zip(group, files) if f is None]
            if missing:
                notes.append(_("Missing on disk: {ids}.").format(ids=", ".join(f"`{m}`" for m in missing)))
    for r in recordings:
        if r.size_bytes > limit:
            notes.append(_(
                "`{filename}` ({size}) is over this server's {limit} upload limit: the bot owner can copy it "
                "from `{path}` in the cog's data folder."
            ).format(filename=r.filename, size=human_size(r.size_bytes), limit=human_size(limit),
                     path=_relative(r.path, data_dir)))
    if notes:
        with contextlib.suppress(discord.HTTPException):
            await send_long(channel, "\n".join(notes))
