"""Events for other cogs: a meeting started, a meeting's files are ready, a file is gone.

Red cogs build on each other through the bot's events (Red's audio cog dispatches
``red_audio_track_start``); these let a transcription, upload or summary cog follow
chunkrecorder without importing it (a cog loaded by Red is not importable by name):

* ``chunkrecorder_meeting_started(event: MeetingStarted)``
* ``chunkrecorder_meeting_promoted(event: MeetingPromoted)``
* ``chunkrecorder_recording_deleted(event: RecordingDeleted)``

A listener is ``@commands.Cog.listener() async def on_chunkrecorder_meeting_promoted(self, event)``.
Payloads are frozen dataclasses of plain values (ids, paths, milliseconds) plus the
``discord.Guild`` where one is at hand; the README documents every field. Listeners run
as their own tasks (``bot.dispatch``), so a slow or failing listener never delays or
breaks a recording.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal, Optional

import discord

from ..objects.records import Recording, RecordingKind
from ..objects.results import PromotionResult

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from .meetings import LiveMeeting

__all__ = ["MeetingPromoted", "MeetingStarted", "NoteInfo", "RecordingDeleted", "RecordingInfo", "EventDispatcher"]

log = logging.getLogger("red.chunkrecorder.dispatch")

DeleteReason = Literal["deleted", "meeting_deleted", "retention", "data_request"]


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """One finished file: ``kind`` is "per_user" (``user_id`` is the speaker) or "mixed" (None)."""

    id: str
    meeting_id: str
    kind: str
    user_id: Optional[int]
    path: str
    filename: str
    duration_ms: int
    size_bytes: int
    sha256: str

    @classmethod
    def of(cls, rec: Recording) -> "RecordingInfo":
        kind = RecordingKind(rec.kind)
        return cls(id=rec.id, meeting_id=rec.meeting_id, kind=kind.value,
                   user_id=rec.user_id if kind is RecordingKind.PER_USER else None, path=rec.path,
                   filename=rec.filename, duration_ms=rec.duration_in_ms, size_bytes=rec.size_bytes,
                   sha256=rec.sha256)


@dataclass(frozen=True, slots=True)
class NoteInfo:
    at_ms: int
    author_id: int
    text: str


@dataclass(frozen=True, slots=True)
class MeetingStarted:
    guild: discord.Guild
    channel_id: int
    meeting_id: str
    #: Who ran ``[p]record start`` (the bot's own id when an auto-record rule started it).
    started_by: int
    #: "notice" or "optin".
    consent: str
    #: The auto-record rule's minimum members if a rule started it, else None.
    auto_rule: Optional[int]


@dataclass(frozen=True, slots=True)
class MeetingPromoted:
    guild: Optional[discord.Guild]
    guild_id: int
    channel_id: int
    meeting_id: str
    started_by: int
    length_ms: int
    recordings: tuple[RecordingInfo, ...]
    notes: tuple[NoteInfo, ...]
    #: The Audacity label track of the notes, or None without notes.
    labels_path: Optional[str]
    #: Chunks that could not be encoded (silence stands in for them).
    failed_chunks: int


@dataclass(frozen=True, slots=True)
class RecordingDeleted:
    guild_id: int
    recording: RecordingInfo
    #: "deleted" (an admin, one file), "meeting_deleted", "retention" or "data_request".
    reason: str


class EventDispatcher:
    """Turns what happened into the bot's events (``bot.dispatch``); never raises."""

    def __init__(self, bot: "Red") -> None:
        self.bot = bot

    def _dispatch(self, name: str, event: object) -> None:
        try:
            self.bot.dispatch(name, event)
        except Exception:  # noqa: BLE001 - another cog's trouble is never the recording's
            log.exception("Dispatching %s failed", name)

    def meeting_started(self, guild: discord.Guild, live: "LiveMeeting") -> None:
        self._dispatch("chunkrecorder_meeting_started", MeetingStarted(
            guild=guild, channel_id=live.channel_id, meeting_id=live.meeting_id, started_by=live.started_by,
            consent=live.consent.mode.value, auto_rule=live.auto_rule))

    def meeting_promoted(self, result: PromotionResult) -> None:
        meeting = result.meeting
        self._dispatch("chunkrecorder_meeting_promoted", MeetingPromoted(
            guild=self.bot.get_guild(meeting.guild_id), guild_id=meeting.guild_id, channel_id=meeting.channel_id,
            meeting_id=meeting.id, started_by=meeting.started_by, length_ms=result.length_ms,
            recordings=tuple(RecordingInfo.of(r) for r in result.recordings),
            notes=tuple(NoteInfo(n.at_ms, n.author_id, n.text) for n in result.notes),
            labels_path=result.labels_path, failed_chunks=result.failed_chunks))

    def recordings_deleted(self, guild_id: int, recordings: Iterable[Recording], reason: DeleteReason) -> None:
        for rec in recordings:
            self._dispatch("chunkrecorder_recording_deleted",
                           RecordingDeleted(guild_id=rec.guild_id or guild_id, recording=RecordingInfo.of(rec),
                                            reason=reason))
