"""Live meetings: one per guild, from joining voice to the promoted files.

This is the cog's logic without Discord's command layer, so tests drive it directly.
For each live meeting it holds the voice link and the pipeline's ``RecordingSession``;
it decides when a meeting must end on its own (maximum length, channel empty, the bot
kicked, or moved with ``recordingset move stop``) and when it goes on through trouble:
discord.py's own reconnects (the link tells them from kicks: ``classify_voice_state``),
a move the guild follows, and the cog's reconnect policy once discord.py gives up. What
each reconnect cost is noted in the meeting's ``ConnectionLog``. It runs no loop
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
from ..voice.link import BaseVoiceEventListener, DisconnectReason, VoiceConnector, VoiceLink, VoiceStateVerdict
from .connection_log import ConnectionLog, LinkEvent
from .consent import ConsentGate
from .errors import UserError
from .settings import MOVE_FOLLOW, GuildSettings

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline.recorder import Recorder
    from ..pipeline.session import RecordingSession
    from ..objects.results import Progress

__all__ = ["ChannelLookup", "Followed", "LinkEvent", "LiveMeeting", "MeetingManager", "Reason", "StopReason"]

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


class AutoStop(Protocol):
    def __call__(self, live: "LiveMeeting", reason: Reason) -> Awaitable[None]: ...


class Followed(Protocol):
    """Told when a meeting followed the bot into another voice channel (the flows say so
    in the text channel)."""

    def __call__(self, live: "LiveMeeting") -> Awaitable[None]: ...


#: ``lookup(guild_id, channel_id)``: the channel object for an id (the bot's cache).
ChannelLookup = Callable[[int, int], Any]


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
    #: Reconnects, the silences they left, moves followed (``[p]record status``, results).
    connection: ConnectionLog = field(default_factory=ConnectionLog)
    #: Members whose data was erased while the meeting ran: their audio is refused
    #: from then on and their files are removed again once the meeting is promoted.
    erased: set[int] = field(default_factory=set)
    #: Who may be recorded (the guild's consent mode and who agreed); read per frame.
    consent: ConsentGate = field(default_factory=ConsentGate)
    #: How members see that the bot records: "nickname" ([REC] prefix) or "message"
    #: (a message in the voice channel's own chat); set by the flows at start.
    indicator: Literal["nickname", "message", "none"] = "none"
    #: Members told in the voice channel's chat that this meeting records (once each).
    noticed: set[int] = field(default_factory=set)
    #: The auto-record rule that started it, if a rule did (its channel's minimum).
    auto_rule: Optional[int] = None

    @property
    def meeting_id(self) -> str:
        return self.session.meeting.id

    @property
    def channel_id(self) -> int:
        return int(self.channel.id)

    @property
    def channel_name(self) -> str:
        return str(getattr(self.channel, "name", self.channel_id))

    @property
    def reconnects(self) -> int:
        """Reconnects so far, discord.py's own and the cog's."""
        return self.connection.reconnects

    @property
    def events(self) -> list[LinkEvent]:
        return self.connection.events

    def humans_present(self) -> int:
        """Members in the voice channel who are not bots (the bot never counts)."""
        try:
            members = list(self.channel.members)
        except Exception:  # a deleted channel, say
            return 0
        return sum(1 for m in members if not getattr(m, "bot", False))


class _LinkListener(BaseVoiceEventListener):
    """What one link reports, handed to the manager; member and SPEAKING events are the
    receiver's business alone. A link that is no longer the meeting's is not listened to."""

    def __init__(self, manager: "MeetingManager", live: LiveMeeting, link: VoiceLink) -> None:
        self._manager = manager
        self._live = live
        self._link = link

    def _current(self) -> bool:
        return self._link is self._live.link and not self._manager._settled(self._live)

    async def on_disconnect(self, reason: DisconnectReason) -> None:
        # The reconnect policy runs in the manager's tasks, so unloading the cog cancels it.
        task = self._manager._tasks.spawn(self._manager._link_ended(self._live, self._link, reason),
                                          name=f"chunkrecorder-link-ended-{self._live.guild_id}")
        await asyncio.shield(task)

    def on_reconnecting(self, cause: str) -> None:
        if self._current():
            self._live.connection.reconnecting(self._manager.outage_start(self._live, self._link), cause)

    def on_resume(self, outage_s: float) -> None:
        if self._current():
            gap = self._live.connection.resumed(self._manager.meeting_time(self._live), float(outage_s))
            log.info("Voice in guild %s reconnected after %.2f s (%s)", self._live.guild_id, gap.seconds, gap.cause)

    def on_move(self, channel_id: int) -> None:
        if self._current():
            self._manager._bot_moved(self._live, int(channel_id), None)


class MeetingManager:
    """Starts, watches and stops live meetings; one instance per loaded cog."""

    def __init__(
        self,
        *,
        recorder: Optional["Recorder"],
        connector: VoiceConnector,
        on_auto_stop: Optional[AutoStop] = None,
        on_followed: Optional[Followed] = None,
        channel_lookup: Optional[ChannelLookup] = None,
        accept_user: Optional[Callable[[int, int], bool]] = None,
        clock: Optional[Callable[[], float]] = None,
        connect_timeout_s: float = 20.0,
        reconnect_delay_s: float = 2.0,
    ) -> None:
        self._recorder = recorder
        self.connector = connector
        self.on_auto_stop = on_auto_stop
        self.on_followed = on_followed
        self.channel_lookup = channel_lookup
        self._accept_user = accept_user
        #: The session's clock too: audio arrival times and the watchdog agree.
        self.clock = clock
        self.connect_timeout_s = connect_timeout_s
        #: How long a new connection may take to decrypt audio (its DAVE welcome) before
        #: the gap is closed anyway.
        self.hearing_timeout_s = 5.0
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

    def outage_start(self, live: LiveMeeting, link: VoiceLink) -> float:
        """Meeting time a drop began: when the link last heard the server, which a close
        reported late (discord.py leaving voice first: 0.12-0.2 s measured) or a read
        timeout noticed seconds later puts before now."""
        return max(0.0, self.meeting_time(live) - link.quiet_for())

    def meeting_time(self, live: LiveMeeting) -> float:
        """Seconds since the meeting's t=0 (its session's start, on the same clock)."""
        t0 = getattr(live.session, "t0", None)
        return max(0.0, self.now() - (t0 if isinstance(t0, (int, float)) else live.started_at))

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
        consent: Optional[ConsentGate] = None,
    ) -> LiveMeeting:
        """Join ``channel`` and start recording; ``UserError`` if that cannot be done.

        ``consent`` decides per frame who may be recorded (default: everyone but the
        opted-out); it is in force from the meeting's first frame.
        """
        gate = consent if consent is not None else ConsentGate()
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
                    accept_user=self._acceptor(guild_id, gate),
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
                consent=gate,
            )
            self._attach(live, link)
            self.live[guild_id] = live
            return live

    def _acceptor(self, guild_id: int, consent: ConsentGate) -> Callable[[int], bool]:
        """Per-frame gate: opted-out, erased and (under optin) not-agreed members never
        reach the pipeline."""

        def accept(user_id: int) -> bool:
            live = self.live.get(guild_id)
            if live is not None and user_id in live.erased:
                return False
            if not consent.accepts(user_id):
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
    def bot_voice_state(self, guild_id: int, channel: Any) -> None:
        """The gateway says the bot is now in ``channel`` (None: in no channel).

        The link knows what discord.py made of that very update: the "no channel" of
        its own reconnect (it leaves and rejoins, for a 4006, a 1006, a read timeout)
        is ``RECONNECT`` and the rejoin ``SAME``, ignored here; no channel while no
        reconnect was in progress is a kick; another channel is a move.
        """
        live = self.live.get(guild_id)
        if live is None or self._settled(live):
            return
        channel_id = int(channel.id) if channel is not None else None
        verdict = live.link.classify_voice_state(channel_id)
        if verdict is VoiceStateVerdict.KICKED:
            self._request_stop(live, StopReason.KICKED)
        elif verdict is VoiceStateVerdict.MOVED and channel_id is not None:
            self._bot_moved(live, channel_id, channel)

    def _bot_moved(self, live: LiveMeeting, channel_id: int, channel: Any) -> None:
        """Someone moved the bot: stop there, or follow (the link already does) and record
        the new channel as the same meeting, as the guild chose (``recordingset move``)."""
        if self._settled(live) or channel_id == live.channel_id:
            return  # already stopping, or already following (the link and the gateway both say so)
        if live.settings.move_action != MOVE_FOLLOW:
            self._request_stop(live, StopReason.MOVED)
            return
        if channel is None and self.channel_lookup is not None:
            channel = self.channel_lookup(live.guild_id, channel_id)
        if channel is None:  # not in the cache: nothing to watch or name, so do not guess
            self._request_stop(live, StopReason.MOVED)
            return
        live.channel = channel
        live.empty_since = None
        live.connection.moved(live.channel_name)
        log.info("Meeting %s follows the bot into channel %s", live.meeting_id, channel_id)
        if self.on_followed is not None:
            self._tasks.spawn(self._tell_followed(live), name=f"chunkrecorder-followed-{live.guild_id}")

    async def _tell_followed(self, live: LiveMeeting) -> None:
        assert self.on_followed is not None
        try:
            await self.on_followed(live)
        except Exception:
            log.exception("Announcing that meeting %s moved failed", live.meeting_id)

    def channel_deleted(self, guild_id: int, channel_id: int) -> None:
        live = self.live.get(guild_id)
        if live is not None and live.channel_id == channel_id:
            self._request_stop(live, StopReason.CHANNEL_GONE)

    def _settled(self, live: LiveMeeting) -> bool:
        """Whether the meeting's end is already decided (nothing more to try for it)."""
        return live.ending or live.end_reason is not None or self._closing

    async def _link_ended(self, live: LiveMeeting, link: VoiceLink, reason: object) -> None:
        """The link is dead: a kick stops the meeting; anything else is the cog's to
        reconnect (``GAVE_UP``: discord.py stopped trying, or a reconnect took too long)."""
        if self._settled(live) or link is not live.link:
            return
        if reason == DisconnectReason.KICKED:
            self._request_stop(live, StopReason.KICKED)
            return
        if reason == DisconnectReason.GAVE_UP:
            cause = live.connection.down[1] if live.connection.down is not None else ""
            cause = cause or _("the voice connection closed and discord.py stopped reconnecting")
        else:  # a link that names its own reason (the harness's "voice server restarted")
            cause = str(reason)
        await self._link_dropped(live, link, cause)

    async def _link_dropped(self, live: LiveMeeting, link: VoiceLink, cause: str) -> None:
        """The cog's reconnect policy: up to the guild's ``reconnect`` attempts, 2 s, 4 s,
        6 s ... apart, each a new link into the same session; then end cleanly. The count
        starts again at every drop: a long meeting may drop several times."""
        if self._settled(live) or link is not live.link:
            return
        live.connection.lost(self.outage_start(live, link), cause)
        attempts = live.settings.reconnect_attempts
        for attempt in range(1, attempts + 1):
            await asyncio.sleep(self.reconnect_delay_s * attempt)
            if self._settled(live):  # stopped, or the cog unloading, while we waited
                return
            try:
                new_link = await asyncio.wait_for(self.connector(live.channel), self.connect_timeout_s)
            except Exception as exc:
                log.info("Reconnect %d/%d to %s failed: %s", attempt, attempts, live.channel_id, exc)
                continue
            if self._settled(live):  # stopped while connecting: leave again
                with contextlib.suppress(Exception):
                    await new_link.disconnect()
                return
            self._attach(live, new_link)
            # The gap members read ends where the files have audio again: once the new
            # connection can decrypt (its DAVE welcome), not when it was made (0.23 s
            # apart was measured on a loaded machine).
            try:
                hearing = await new_link.until_hearing(self.hearing_timeout_s)
            except ConnectionError:
                return  # the new link dropped too: its own drop carries the gap on
            if self._settled(live) or live.link is not new_link or live.connection.down is None:
                return  # stopped meanwhile (the stop ends the gap), or discord.py's resume did
            if not hearing:
                log.warning("Meeting %s: the new voice connection could not decrypt audio within %.0f s",
                            live.meeting_id, self.hearing_timeout_s)
            gap = live.connection.reconnected(self.meeting_time(live), attempt)
            log.info("Meeting %s reconnected on attempt %d after %.1f s", live.meeting_id, attempt, gap.seconds)
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
        # The files end where the stop was asked for, not where leaving voice ends
        # (seconds later when discord.py is in the middle of a reconnect).
        self.recorder.end_here(live.meeting_id)
        live.connection.ended(self.meeting_time(live))
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
