"""The one façade the commands, events and tasks talk to: meetings, recordings, settings, erasure.

Commands never reach the store or the pipeline's internals; they ask this. Every read
and delete here is scoped to a guild, so an id from another guild reads as "not found"
and nobody reaches another guild's files. The service owns the parts the cog is made
of (the live meetings, the flows that show them in Discord, the Config wrapper) and
holds the pipeline's ``Recorder`` that the cog composed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, Optional, Union

from ..i18n import _
from ..objects.records import ChunkCounts, Meeting, Note, Recording
from ..objects.results import CleanupReport, Gap, Progress, RecoveryReport, RemovalReport, RepairResult, UnknownFiles
from ..voice.link import VoiceConnector
from .config import SettingsStore
from .delivery import Delivery
from .errors import UserError
from .flows import MeetingFlows
from .meetings import LiveMeeting, MeetingManager
from .nickname import RecNickname
from .weblinks import WebLinks

if TYPE_CHECKING:  # pragma: no cover
    from redbot.core.bot import Red

    from ..pipeline.recorder import Recorder

__all__ = ["RecordingService", "RequestType"]

log = logging.getLogger("red.chunkrecorder.service")

RequestType = Literal["discord_deleted_user", "owner", "user", "user_strict"]


class RecordingService:
    """Meetings (live and finished), recordings, settings and erasure for one loaded cog."""

    def __init__(self, *, bot: "Red", settings: SettingsStore, recorder: "Recorder", data_dir: Path,
                 connector: VoiceConnector) -> None:
        self.bot = bot
        self.settings = settings
        self.recorder = recorder
        self.data_dir = data_dir
        self.meetings = MeetingManager(recorder=recorder, connector=connector, accept_user=settings.accepts,
                                       channel_lookup=lambda _guild_id, channel_id: bot.get_channel(channel_id))
        #: The download server (off unless the owner turns it on) and the links it honours.
        self.links = WebLinks(bot=bot, settings=settings, recorder=recorder)
        #: Where and in what form finished recordings go: links, attachments, parts.
        self.delivery = Delivery(bot=bot, settings=settings, recorder=recorder, links=self.links, data_dir=data_dir)
        self.flows = MeetingFlows(bot=bot, settings=settings, meetings=self.meetings, nickname=RecNickname(),
                                  data_dir=data_dir, erase_users=self._erase_finished, delivery=self.delivery)
        self.meetings.on_auto_stop = self.flows.auto_stop
        self.meetings.on_followed = self.flows.followed
        recorder.on_promoted = self.flows.promoted_in_background

    # ------------------------------------------------------------------ lifetime
    async def open(self) -> RecoveryReport:
        """Read Config's opt-outs, recover what a crash left, start the encoders."""
        await self.settings.load()
        return await self.recorder.start()

    async def close(self) -> None:
        """Leave voice everywhere and flush every live meeting (each stays recoverable)."""
        await self.flows.pause_all()
        await self.meetings.close()
        try:
            await self.recorder.close()
        except Exception:
            log.exception("Closing the recorder failed; the next load recovers the meetings")

    # ------------------------------------------------------------------ live meetings
    def live(self, guild_id: int) -> Optional[LiveMeeting]:
        return self.meetings.get(guild_id)

    # ------------------------------------------------------------------ finished meetings and files
    async def meeting(self, guild_id: int, meeting_id: str) -> Meeting:
        """``NotFound`` unless the meeting belongs to ``guild_id``."""
        return await self.recorder.library.get_meeting(meeting_id, guild_id=guild_id)

    async def recording(self, guild_id: int, recording_id: str) -> Recording:
        """``NotFound`` unless the recording belongs to ``guild_id``."""
        return await self.recorder.library.get_recording(recording_id, guild_id=guild_id)

    async def meetings_page(self, guild_id: int, *, limit: int, offset: int = 0) -> tuple[list[Meeting], int]:
        """A page of the guild's meetings, newest first, and how many there are."""
        return await self.recorder.library.list_meetings(guild_id, limit=limit, offset=offset)

    async def recordings_of(self, meeting: Meeting) -> list[Recording]:
        return await self.recorder.library.recordings_for_meeting(meeting.id)

    async def chunk_counts(self, meeting_id: str) -> ChunkCounts:
        return await self.recorder.library.chunk_counts(meeting_id)

    async def disk_usage(self, meeting_id: str) -> int:
        return await asyncio.to_thread(self.recorder.meeting_disk_usage, meeting_id)

    async def gaps(self, meeting: Meeting) -> list[Gap]:
        """Windows of the meeting's files that are silent though audio was recorded (kept for a repair)."""
        return await self.recorder.gaps(meeting.id)

    def finishing(self, meeting_id: str) -> bool:
        """Whether the meeting is being promoted or repaired right now."""
        return self.recorder.finishing(meeting_id)

    async def repair(self, guild_id: int, meeting_id: str, *,
                     progress: Optional[Callable[[Progress], Union[Awaitable[None], None]]] = None) -> RepairResult:
        """Encode a finished meeting's gaps again and put them into its files (``NotFound`` outside the guild)."""
        await self.meeting(guild_id, meeting_id)
        return await self.recorder.repair(meeting_id, progress=progress)

    def unknown_files(self) -> UnknownFiles:
        """Files in the data folder no meeting of the database holds (kept; the owner is told)."""
        return self.recorder.unknown

    async def delete_recording(self, guild_id: int, recording_id: str) -> RemovalReport:
        report = await self.recorder.delete_recording(recording_id, guild_id=guild_id)
        self.flows.events.recordings_deleted(guild_id, report.recordings, "deleted")
        return report

    async def delete_meeting(self, guild_id: int, meeting_id: str) -> RemovalReport:
        report = await self.recorder.delete_meeting(meeting_id, guild_id=guild_id)
        self.flows.events.recordings_deleted(guild_id, report.recordings, "meeting_deleted")
        return report

    # ------------------------------------------------------------------ notes
    async def add_note(self, guild_id: int, author_id: int, text: str) -> Note:
        """A note at the live meeting's current time; ``UserError`` if nothing is recorded."""
        live = self.meetings.get(guild_id)
        if live is None or live.ending:
            raise UserError(_("Nothing is being recorded in this server, so there is nothing to take a note in."))
        return await self.recorder.add_note(live.meeting_id, author_id=author_id, text=text)

    async def notes(self, meeting_id: str) -> list[Note]:
        return await self.recorder.library.notes(meeting_id)

    # ------------------------------------------------------------------ auto-record
    async def pause_autorecord(self, guild_id: int, channel_id: int) -> bool:
        """A manual stop of a channel with an auto-record rule pauses the rule until the
        channel empties (so the bot does not start again while the meeting goes on)."""
        if not any(r.channel_id == channel_id for r in await self.settings.autorecord_rules(guild_id)):
            return False
        await self.settings.set_autorecord_paused(guild_id, channel_id, True)
        return True

    # ------------------------------------------------------------------ retention
    async def cleanup(self) -> CleanupReport:
        """Each guild's retention, then leftover temp files older than the bot-wide TTL."""
        retention = {gid: s.retention_days for gid, s in (await self.settings.all_guilds()).items()
                     if s.retention_days > 0}
        ttl_h = await self.settings.temp_ttl_hours()
        report = await self.recorder.cleanup(temp_ttl_s=ttl_h * 3600.0, retention_days=retention)
        self.flows.events.recordings_deleted(0, report.deleted, "retention")
        return report

    # ------------------------------------------------------------------ erasure
    async def erase_user(self, user_id: int, *, requester: RequestType) -> None:
        """Delete a member's per-user recordings, chunks, notes and opt-out and consent choices.

        Their notes also leave the label track and the mix's chapters of finished meetings
        (``Recorder.erase_user``).

        Mixed files are everyone's voices in one track and are kept (the end user data
        statement says so). A requester of kind "user" (a member asking under the
        non-strict setting) keeps the opt-out entry: erasing it would start recording
        them again, the opposite of what they asked for; every other kind erases it too.
        """
        for live in self.meetings.live.values():
            live.erased.add(user_id)  # refuse their audio for the rest of live meetings
            live.consent.withdraw(user_id)
        await self._erase_finished({user_id})
        if requester != "user":
            await self.settings.forget_member(user_id)

    async def _erase_finished(self, user_ids: set[int]) -> None:
        for user_id in user_ids:
            report = await self.recorder.erase_user(user_id)
            self.flows.events.recordings_deleted(0, report.recordings, "data_request")
