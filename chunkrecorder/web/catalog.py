"""What the web server may serve, looked up by id: meetings, their recordings, their files.

The server never sees a path from a URL: it asks this for a recording by id, and this
asks the pipeline (``Recorder.library`` for rows, ``Recorder.compact`` for the Opus
copy). Names shown to a visitor (speakers, the channel) come from a :class:`Names`
the owner provides: the cog's reads Discord's cache, the harness's its speaker list,
so the same server serves both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Protocol

from ..i18n import _
from ..objects.records import Meeting, Recording, RecordingKind
from .files import ServedFile, safe_filename

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline.recorder import Recorder

__all__ = ["Catalog", "FORMATS", "Format", "Names", "parse_format"]

Format = Literal["mp3", "opus"]
FORMATS: tuple[Format, ...] = ("mp3", "opus")
_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "flac": "audio/flac"}


def parse_format(text: Optional[str]) -> Optional[Format]:
    """``mp3`` or ``opus`` (``ogg`` too), case-insensitive; None for anything else."""
    word = (text or "").strip().lower().lstrip(".")
    if word == "mp3":
        return "mp3"
    if word in ("opus", "ogg"):
        return "opus"
    return None


class Names(Protocol):
    """Display names for what the server shows; None when unknown (a member who left)."""

    def speaker(self, guild_id: int, user_id: int) -> Optional[str]: ...

    def channel(self, guild_id: int, channel_id: int) -> Optional[str]: ...


@dataclass(frozen=True, slots=True)
class Track:
    recording: Recording
    speaker: str
    filename: str


class Catalog:
    """Meetings and recordings by id, and the file of a recording in a format."""

    def __init__(self, recorder: "Recorder", names: Names) -> None:
        self.recorder = recorder
        self.names = names

    async def meeting(self, meeting_id: str) -> Meeting:
        """``NotFound`` if there is none (never was, or deleted)."""
        return await self.recorder.library.get_meeting(meeting_id)

    async def recording(self, recording_id: str) -> Recording:
        return await self.recorder.library.get_recording(recording_id)

    async def tracks(self, meeting: Meeting, fmt: Format) -> list[Track]:
        """The meeting's files with the names a visitor sees (unique within the meeting)."""
        recs = await self.recorder.library.recordings_for_meeting(meeting.id)
        out: list[Track] = []
        seen: set[str] = set()
        for rec in recs:
            name = self.file_name(meeting, rec, fmt)
            if name.lower() in seen:  # two members with one display name
                stem, _dot, ext = name.rpartition(".")
                name = f"{stem} ({rec.user_id}).{ext}"
            seen.add(name.lower())
            out.append(Track(rec, self.speaker(meeting, rec), name))
        return out

    def speaker(self, meeting: Meeting, rec: Recording) -> str:
        if rec.kind is RecordingKind.MIXED or rec.user_id is None:
            return _("Everyone (mixed)")
        return self.names.speaker(meeting.guild_id, rec.user_id) or _("user {user_id}").format(user_id=rec.user_id)

    def channel(self, meeting: Meeting) -> str:
        return self.names.channel(meeting.guild_id, meeting.channel_id) or _("channel {channel_id}").format(
            channel_id=meeting.channel_id)

    @staticmethod
    def date(meeting: Meeting) -> str:
        return dt.datetime.fromtimestamp(meeting.started_at, tz=dt.timezone.utc).strftime("%Y-%m-%d")

    def file_name(self, meeting: Meeting, rec: Recording, fmt: Format) -> str:
        """``<channel> <date> <speaker>.mp3``: what the download is saved as."""
        speaker = _("mixed") if rec.kind is RecordingKind.MIXED else self.speaker(meeting, rec)
        ext = "flac" if fmt == "mp3" and rec.path.endswith(".flac") else fmt  # the archive as it is
        return safe_filename(f"{self.channel(meeting)} {self.date(meeting)} {speaker}.{ext}")

    def zip_name(self, meeting: Meeting, fmt: Format) -> str:
        suffix = "" if fmt == "mp3" else " opus"
        return safe_filename(f"{self.channel(meeting)} {self.date(meeting)}{suffix}.zip")

    async def served(self, meeting: Meeting, rec: Recording, fmt: Format, filename: Optional[str] = None) -> ServedFile:
        """The file to send; ``FileNotFoundError`` if it is gone from disk. Opus is made on
        first request (which takes a while for a long recording)."""
        name = filename or self.file_name(meeting, rec, fmt)
        if fmt == "opus":
            copy = await self.recorder.compact(rec)
            return ServedFile(copy.path, copy.size, f'"{copy.sha256}"', _TYPES["opus"], name)
        size = (await asyncio.to_thread(os.stat, rec.path)).st_size
        kind = "flac" if rec.path.endswith(".flac") else "mp3"
        return ServedFile(Path(rec.path), size, f'"{rec.sha256}"', _TYPES[kind], name)
