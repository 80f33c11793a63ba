"""Live meetings: one per guild, from joining voice to the promoted files.

This is the cog's logic without Discord's command layer, so tests drive it directly.
For each live meeting it holds the voice link and the pipeline's ``RecordingSession``;
it decides when a meeting must end on its own (maximum length, channel empty, the bot
disconnected or moved) and when a dropped link is worth reconnecting. It runs no loop
of its own: the cog's ticker (``tasks/ticker.py``) calls :meth:`MeetingManager.poll`,
the recorder's ``tick`` and :meth:`MeetingManager.watch` in turn. *How* an ending is
announced belongs to the flows: ``on_auto_stop`` is called, and they run the same stop
path as ``[p]record stop``.

Nothing here blocks the event loop: the receiver's socket thread only calls
``session.feed`` (O(1)); flushing and encoding happen inside the pipeline's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Literal, Optional, Protocol, Union

from ..i18n import _
from ..objects.errors import FlushError
from ..objects.frames import MeetingSettings
from ..objects.results import PromotionResult
from ..utils.background import BackgroundTasks
from ..voice.link import BaseVoiceEventListener, VoiceConnector, VoiceLink
from .errors import UserError
from .settings import GuildSettings

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline.recorder import Recorder
    from ..pipeline.session import RecordingSession
    from ..objects.results import Progress

__all__ = ["LinkEvent", "LiveMeeting", "MeetingManager", "Reason", "StopReason"]

log = logging.getLogger("red.chunkrecorder.meetings")

ProgressCallback = Callable[["Progress"], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class StopReason:
    """Why a meeting ended on its own.

    Kept as data and worded only when shown (``str()``), so a member reads it in their
    guild's language however it was noticed (the ticker, a gateway event); it appears
    in Discord as "Recording of ... ended (<reason>)".
    """

    kind: Literal["kicked", "moved", "channel_gone", "max_length", "empty", "lost"]
    count: int = 0

    KICKED: ClassVar["StopReason"]
    MOVED: ClassVar["StopReason"]
    CHANNEL_GONE: ClassVar["StopReason"]

    @classmethod
    def max_length(cls, minutes: int) -> "StopReason":
        return cls("max_length", minutes)

    @classmethod
    def empty(cls, minutes: int) -> "StopReason":
        return cls("empty", minutes)

    @classmethod
    def lost(cls, attempts: int) -> "StopReason":
        return cls("lost", attempts)

    def __str__(self) -> str:
        n = self.count
        if self.kind == "kicked":
            return _("I was disconnected from the voice channel")
        if self.kind == "moved":
            return _("I was moved to another voice channel")
        if self.kind == "channel_gone":
            return _("the voice channel was deleted")
        if self.kind == "max_length":
            if n == 1:
                return _("it reached the maximum length of 1 minute")
            return _("it reached the maximum length of {minutes} minutes").format(minutes=n)
        if self.kind == "empty":
            if n == 1:
                return _("the voice channel was empty for 1 minute")
            return _("the voice channel was empty for {minutes} minutes").format(minutes=n)
        if n == 0:
            return _("the voice connection was lost and reconnecting is off")
        if n == 1:
            return _("the voice connection was lost and 1 reconnect attempt failed")
        return _("the voice connection was lost and {attempts} reconnect attempts failed").format(attempts=n)


StopReason.KICKED = StopReason("kicked")
StopReason.MOVED = StopReason("moved")
StopReason.CHANNEL_GONE = StopReason("channel_gone")

#: Why a meeting ends: a member's own words (worded when they asked) or a ``StopReason``.
Reason = Union[str, StopReason]


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """Something that happened to the voice link, shown in ``[p]record status``; worded
    when shown, like ``StopReason``."""

    kind: Literal["lost", "resumed", "reconnected"]
    detail: str = ""
    attempt: int = 0

    def __str__(self) -> str:
        if self.kind == "resumed":
            return _("voice session resumed")
        if self.kind == "reconnected":
            return _("reconnected (attempt {attempt})").format(attempt=self.attempt)
        if self.detail:
            return _("voice connection lost ({why})").format(why=self.detail)
        return _("voice connection lost (no reason given)")


class AutoStop(Protocol):
    def __call__(self, live: "LiveMeeting", reason: Reason) -> Awaitable[None]: ...


@dataclass(eq=False)
class LiveMeeting:
    """What the cog knows about a meeting while it is being recorded."""

    guild_id: int
    channel: Any  # discord.VoiceChannel, or the harness's stand-in with .id, .name, .members
    text_channel_id: Optional[int]
    started_by: int
    settings: GuildSettings
    session: "RecordingSession"
    link: VoiceLink
    started_at: float  # on the manager's clock
    ending: bool = False
    end_reason: Optional[Reason] = None
    empty_since: Optional[float] = None
    reconnects: int = 0
    events: list[LinkEvent] = field(default_factory=list)
    #: Members whose data was erased while the meeting ran: their audio is refused
    #: from then on and their files are removed again once the meeting is promoted.
    erased: set[int] = field(default_factory=set)

    @property
    def meeting_id(self) -> str:
        return self.session.meeting.id

    @property
    def channel_id(self) -> int:
        return int(self.channel.id)

    @property
    def channel_name(self) -> str:
        return str(getattr(self.channel, "name", self.channel_id))

    def humans_present(self) -> int:
        """Members in the voice channel who are not bots (the bot never counts)."""
        try:
            members = list(self.channel.members)
        except Exception:  # a deleted channel, say
            return 0
        return sum(1 for m in members if not getattr(m, "bot", False))


class _LinkListener(BaseVoiceEventListener):
    """What one link reports, handed to the manager; member and SPEAKING events are the
    receiver's business alone."""

    def __init__(self, manager: "MeetingManager", live: LiveMeeting, link: VoiceLink) -> None:
        self._manager = manager
        self._live = live
        self._link = link

    async def on_disconnect(self, reason: str) -> None:
        await self._manager._link_dropped(self._live, self._link, reason)

    def on_resume(self, outage_s: float = 0.0) -> None:  # the outage: wiring of issue 9 is the lead's
        self._live.events.append(LinkEvent("resumed"))

    def on_move(self, channel_id: int) -> None:
        if self._link is self._live.link:
            self._manager.bot_voice_moved(self._live.guild_id, int(channel_id))


class MeetingManager:
    """Starts, watches and stops live meetings; one instance per loaded cog."""

    def __init__(
        self,
        *,
        recorder: Optional["Recorder"],
        connector: VoiceConnector,
        on_auto_stop: Optional[AutoStop] = None,
        accept_user: Optional[Callable[[int, int], bool]] = None,
        clock: Optional[Callable[[], float]] = None,
        connect_timeout_s: float = 20.0,
        reconnect_delay_s: float = 2.0,
    ) -> None:
        self._recorder = recorder
        self.connector = connector
        self.on_auto_stop = on_auto_stop
        self._accept_user = accept_user
        #: The session's clock too: audio arrival times and the watchdog agree.
        self.clock = clock
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        self.live: dict[int, LiveMeeting] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks = BackgroundTasks("meetings")
        self._closing = False

    @property
    def recorder(self) -> "Recorder":
        if self._recorder is None:
            raise UserError(_("The recorder is not running; reload the cog (`[p]reload chunkrecorder`)."))
        return self._recorder

    @recorder.setter
    def recorder(self, recorder: Optional["Recorder"]) -> None:
        self._recorder = recorder

    def now(self) -> float:
        return self.clock() if self.clock is not None else time.monotonic()

    def get(self, guild_id: int) -> Optional[LiveMeeting]:
        return self.live.get(guild_id)

    def _lock(self, guild_id: int) -> asyncio.Lock:
        return self._locks.setdefault(guild_id, asyncio.Lock())

    # ------------------------------------------------------------------ start
    async def start(
        self,
        *,
        guild_id: int,
        channel: Any,
        text_channel_id: Optional[int],
        started_by: int,
        settings: GuildSettings,
    ) -> LiveMeeting:
        """Join ``channel`` and start recording; ``UserError`` if that cannot be done."""
        if self._closing:
            raise UserError(_("The recorder is shutting down; try again once the cog is loaded again."))
        async with self._lock(guild_id):
            current = self.live.get(guild_id)
            if current is not None:
                raise UserError(
                    _("I'm already recording **{channel}** in this server; stop that first.").format(
                        channel=current.channel_name
                    )
                )
            meeting_settings: MeetingSettings = settings.meeting_settings()
            link = await self._connect(channel)
            try:
                session = await self.recorder.start_meeting(
                    guild_id=guild_id,
                    channel_id=int(channel.id),
                    started_by=started_by,
                    settings=meeting_settings,
                    clock=self.clock,
                    accept_user=self._acceptor(guild_id),
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await link.disconnect()
                raise
            live = LiveMeeting(
                guild_id=guild_id,
                channel=channel,
                text_channel_id=text_channel_id,
                started_by=started_by,
                settings=settings,
                session=session,
                link=link,
                started_at=self.now(),
            )
            self._attach(live, link)
            self.live[guild_id] = live
            return live

    def _acceptor(self, guild_id: int) -> Callable[[int], bool]:
        """Per-frame gate: opted-out and erased members never reach the pipeline."""

        def accept(user_id: int) -> bool:
            live = self.live.get(guild_id)
            if live is not None and user_id in live.erased:
                return False
            if self._accept_user is None:
                return True
            return self._accept_user(guild_id, user_id)

        return accept

    async def _connect(self, channel: Any) -> VoiceLink:
        name = getattr(channel, "name", None) or _("that channel")
        try:
            return await asyncio.wait_for(self.connector(channel), self.connect_timeout_s)
        except asyncio.TimeoutError:
            raise UserError(
                _("I couldn't join **{channel}**: Discord did not answer in time. Try again.").format(channel=name)
            ) from None
        except UserError:
            raise
        except Exception as exc:  # discord.ClientException, Forbidden, OSError ...
            log.warning("Connecting to voice channel %s failed", getattr(channel, "id", "?"), exc_info=exc)
            detail = str(exc).strip().rstrip(".") or type(exc).__name__
            raise UserError(_("I couldn't join **{channel}**: {why}.").format(channel=name, why=detail)) from None

    def _attach(self, live: LiveMeeting, link: VoiceLink) -> None:
        live.link = link
        link.receiver.set_sink(live.session.feed, channels=live.session.settings.channels)
        link.set_listener(_LinkListener(self, live, link))

    # ------------------------------------------------------------------ the ticker's two halves
    async def poll(self) -> None:
        """Release frames the receivers hold behind a gap that will not fill (before the
        recorder's tick, so they reach this tick's flush)."""
        for live in list(self.live.values()):
            if not live.ending:
                try:
                    await asyncio.to_thread(live.link.receiver.poll)
                except Exception:
                    log.exception("Polling the receiver of meeting %s failed", live.meeting_id)

    def watch(self) -> None:
        """End every meeting that is due to end on its own (maximum length, empty channel)."""
        for live in list(self.live.values()):
            if live.ending:
                continue
            reason = self.due_stop(live)
            if reason is not None:
                self._request_stop(live, reason)

    def due_stop(self, live: LiveMeeting) -> Optional[StopReason]:
        now = self.now()
        s = live.settings
        if now - live.started_at >= s.max_length_minutes * 60:
            return StopReason.max_length(s.max_length_minutes)
        if live.humans_present() == 0:
            if live.empty_since is None:
                live.empty_since = now
            elif s.autostop_minutes > 0 and now - live.empty_since >= s.autostop_minutes * 60:
                return StopReason.empty(s.autostop_minutes)
        else:
            live.empty_since = None
        return None

    def _request_stop(self, live: LiveMeeting, reason: Reason) -> None:
        """Hand an automatic ending to the flows (once), off the caller's task."""
        if live.end_reason is not None or live.ending:
            return
        live.end_reason = reason
        self._tasks.spawn(self._auto_stop(live, reason), name=f"chunkrecorder-autostop-{live.guild_id}")

    async def _auto_stop(self, live: LiveMeeting, reason: Reason) -> None:
        try:
            if self.on_auto_stop is None:
                await self.stop(live.guild_id, reason=reason)
            else:
                await self.on_auto_stop(live, reason)
        except UserError:
            pass  # already stopping, or gone
        except Exception:
            log.exception("Automatic stop of meeting %s failed", live.meeting_id)

    # ------------------------------------------------------------------ Discord's side
    def bot_voice_moved(self, guild_id: int, channel_id: Optional[int]) -> None:
        """The gateway says the bot is now in ``channel_id`` (None: disconnected)."""
        live = self.live.get(guild_id)
        if live is None or live.ending:
            return
        if channel_id is None:
            self._request_stop(live, StopReason.KICKED)
        elif channel_id != live.channel_id:
            self._request_stop(live, StopReason.MOVED)

    def channel_deleted(self, guild_id: int, channel_id: int) -> None:
        live = self.live.get(guild_id)
        if live is not None and live.channel_id == channel_id:
            self._request_stop(live, StopReason.CHANNEL_GONE)

    def _settled(self, live: LiveMeeting) -> bool:
        """Whether the meeting's end is already decided (nothing more to try for it)."""
        return live.ending or live.end_reason is not None or self._closing

    async def _link_dropped(self, live: LiveMeeting, link: VoiceLink, reason: str) -> None:
        """The voice connection died: reconnect (up to the guild's limit) or end cleanly."""
        if self._settled(live) or link is not live.link:
            return
        live.events.append(LinkEvent("lost", detail=reason))
        attempts = live.settings.reconnect_attempts
        while live.reconnects < attempts:
            live.reconnects += 1
            await asyncio.sleep(self.reconnect_delay_s * live.reconnects)
            if self._settled(live):  # stopped, or the cog unloading, while we waited
                return
            try:
                new_link = await asyncio.wait_for(self.connector(live.channel), self.connect_timeout_s)
            except Exception as exc:
                log.info("Reconnect %d/%d to %s failed: %s", live.reconnects, attempts, live.channel_id, exc)
                continue
            self._attach(live, new_link)
            live.events.append(LinkEvent("reconnected", attempt=live.reconnects))
            return
        self._request_stop(live, StopReason.lost(attempts))

    # ------------------------------------------------------------------ stop
    async def stop(self, guild_id: int, *, progress: Optional[ProgressCallback] = None,
                   reason: Optional[Reason] = None) -> tuple[LiveMeeting, PromotionResult]:
        """End the guild's meeting: leave voice, flush, promote. Returns (meeting, result).

        The meeting leaves ``self.live`` whatever happens, so a failed promotion never
        blocks the next start; its rows stay for ``[p]recordings promote``.
        """
        live = self.live.get(guild_id)
        if live is None:
            raise UserError(_("Nothing is being recorded in this server."))
        if live.ending:
            raise UserError(_("That recording is already stopping; the files are on their way."))
        live.ending = True
        if reason is not None and live.end_reason is None:
            live.end_reason = reason
        keep = False
        try:
            await self._halt(live)
            result = await self.recorder.stop_meeting(live.meeting_id, progress=progress)
        except FlushError as exc:
            # The session still holds the unwritten audio: stay registered so that
            # `[p]record stop` can be run again once the disk has room.
            keep = True
            live.ending = False
            live.end_reason = None
            raise UserError(str(exc)) from None
        finally:
            if not keep:
                self.live.pop(guild_id, None)
                self._locks.pop(guild_id, None)
        return live, result

    async def _halt(self, live: LiveMeeting) -> None:
        """Leave voice; frames still held by the receiver reach the session."""
        link = live.link
        try:
            await asyncio.wait_for(link.disconnect(), 10)
        except Exception as exc:
            log.info("Leaving voice in guild %s: %s", live.guild_id, exc)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(link.receiver.flush)

    async def close(self) -> None:
        """Cog unload or shutdown: leave voice everywhere; the recorder's ``close`` keeps
        every meeting recoverable, so nothing recorded so far is lost."""
        self._closing = True
        await self._tasks.cancel_all()
        for live in list(self.live.values()):
            live.ending = True
            await self._halt(live)
        self.live.clear()
