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

from ..objects.records import Meeting, Recording
from .formatting import batches, clock_duration, human_size, recording_line

__all__ = ["result_text", "upload_recordings", "short_error"]

log = logging.getLogger("red.chunkrecorder.posting")


def short_error(exc: BaseException) -> str:
    """First line of an exception, for a one-line message (details go to the log)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:150]


def result_text(guild: discord.Guild, meeting: Meeting, result: Any, recordings: Sequence[Recording]) -> str:
    total = sum(r.size_bytes for r in recordings)
    vc = guild.get_channel(meeting.channel_id)
    name = vc.name if vc is not None else f"channel {meeting.channel_id}"
    lines = [
        f"✅ **{name}**: {clock_duration(getattr(result, 'length_ms', None))} recorded, "
        f"{len(recordings)} file{'s' if len(recordings) != 1 else ''}, {human_size(total)} "
        f"(meeting `{meeting.id}`)."
    ]
    lines += [f"• {recording_line(guild, r)}" for r in recordings]
    if not recordings:
        lines.append("Nobody was heard, so there are no files.")
    failed = int(getattr(result, "failed_chunks", 0) or 0)
    if failed:
        lines.append(f"⚠️ {failed} chunk{'s' if failed != 1 else ''} could not be encoded and "
                     f"{'are' if failed != 1 else 'is'} missing from the files (kept for a retry).")
    return "\n".join(lines)


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
        notes.append(f"I can't attach files in this channel (I need Attach Files); "
                     f"`{prefix}recordings get <id>` works where I can.")
    else:
        for group in batches([r.size_bytes for r in recordings], limit):
            files = [await asyncio.to_thread(_open_file, recordings[i]) for i in group]
            try:
                present = [f for f in files if f is not None]
                if present:
                    await channel.send(files=present)
            except discord.HTTPException as exc:
                log.info("Upload to %s failed: %s", getattr(channel, "id", "?"), exc)
                notes.append(f"The upload failed ({short_error(exc)}); `{prefix}recordings get <id>` retries one file.")
            finally:
                for f in files:
                    if f is not None:
                        f.close()
            missing = [recordings[i].id for i, f in zip(group, files) if f is None]
            if missing:
                notes.append("Missing on disk: " + ", ".join(f"`{m}`" for m in missing) + ".")
    for r in recordings:
        if r.size_bytes > limit:
            notes.append(
                f"`{r.filename}` ({human_size(r.size_bytes)}) is over this server's {human_size(limit)} upload "
                f"limit: the bot owner can copy it from `{_relative(r.path, data_dir)}` in the cog's data folder."
            )
    if notes:
        with contextlib.suppress(discord.HTTPException):
            await channel.send("\n".join(notes))
