"""The cog, in a real Red bot, recording through discord.py's real voice client.

:mod:`tests.support.real_voice` drives the voice link and the pipeline directly; this
drives them the way a server's members do: ``[p]record start`` and ``[p]record stop``
typed in a guild of Red's offline bot (:mod:`tests.support.red`), the cog's own
connector (``channel.connect(cls=RecordingVoiceClient)``: discord.py's real
``VoiceClient``, websocket, UDP and DAVE), the cog's ticker, manager and flows. The one
stand-in is the Discord side, :class:`harness.discord_voice.FakeDiscordVoiceServer`,
whose main-gateway half answers the bot's voice requests and plays kicks, moves and
voice server changes (only ``voice_state()`` and ``wss://`` are patched, see
:mod:`harness.discord_voice.gateway`).

Every scenario is a guild of its own on one bot and one fake voice server, so the
scenarios of a test run at once, at wall-clock pace, as one bot serving several
servers. Each ends with the promoted files, decoded and compared with what its
members said by :func:`tests.support.real_voice.assert_faithful` (the references
come from the fake server's log of what it sent and could deliver, never from the cog).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Optional, Sequence

from harness.discord_voice import FakeDiscordVoiceServer
from harness.sources import FRAME_SAMPLES

from tests.support.real_voice import (AFTER_RESUME_S, FLUSH_S, RECEIVE_STALL_S, RECONNECT_GRACE_S, Run, Speaker,
                                      opus_cache)
from tests.support.red import OWNER_ID, PREFIX, RedWorld, Sent, wait_for_sent

__all__ = ["CogBench", "CogRun", "CogScenario"]

CogAction = Callable[["CogRun"], Awaitable[None]]


@dataclass
class CogScenario:
    """One meeting in its own guild. ``actions`` are (seconds after the start, what happens);
    a speaker's ``channel`` is 0 (where the recording starts) or 1 (where a move goes)."""

    name: str
    speakers: Sequence[Speaker]
    seconds: float = 10.0
    dave: bool = True
    actions: Sequence[tuple[float, CogAction]] = ()
    move: str = "stop"  # the guild's `recordingset move`
    join_after_s: float = 0.6  # the members talk this long before `[p]record start`
    reconnects: int = 0  # as Scenario.reconnects: gaps the trouble leaves, waited for


@dataclass
class CogRun(Run):
    """A scenario being played by the cog; the fields of :class:`Run` the checks read are
    filled from what the cog did (its live meeting, its links, its promoted files)."""

    text_id: int = 0
    voice_ids: list[int] = field(default_factory=list)
    live: Any = None  # the cog's LiveMeeting
    summary: Optional[Sent] = None  # the result message ("✅ ...")
    ended_by_itself: bool = False
    _sink: Any = None

    def feed(self, frame: Any) -> None:
        """The session's sink with receive stalls noted (see :meth:`Run.feed`)."""
        last = self._last_frame.get(frame.user_id)
        if last is not None and (frame.timestamp - last[1]) % (1 << 32) == FRAME_SAMPLES \
                and frame.arrival - last[0] > RECEIVE_STALL_S:
            self.receive_stalls.append((frame.arrival - self.session.t0, frame.arrival - last[0]))
        self._last_frame[frame.user_id] = (frame.arrival, frame.timestamp)
        self._sink(frame)

    def mark_stop(self) -> None:
        """The next action ends the meeting (a kick, a move with ``move stop``): its length
        is the meeting time now."""
        self.stopped_at = self.now()
        self.ended_by_itself = True


class CogBench:
    """One Red bot with the cog loaded, one fake voice server, a guild per scenario."""

    def __init__(self, world: RedWorld, *, first_guild: int = 7_000_000_000_000_000) -> None:
        self.world = world
        self._next_guild = first_guild

    @property
    def cog(self) -> Any:
        return self.world.cog

    async def play(self, *scenarios: CogScenario) -> list[CogRun]:
        """Play the scenarios at once; a failure in one is raised after all have ended."""
        await asyncio.to_thread(opus_cache, scenarios)  # type: ignore[arg-type]
        server = FakeDiscordVoiceServer(seed=int(self._next_guild % 10_000), opus=opus_cache(),
                                        heartbeat_interval_ms=1000)
        await server.start()
        try:
            runs = [await self._prepare(server, s) for s in scenarios]
            server.attach(self.world.bot)
            await server.start_media()
            await asyncio.sleep(max(s.join_after_s for s in scenarios))
            results = await asyncio.gather(*(self._play(r) for r in runs), return_exceptions=True)
        finally:
            await server.stop()
        for s, r in zip(scenarios, results):
            if isinstance(r, BaseException):
                raise AssertionError(f"scenario {s.name!r} failed to run: {r!r}") from r
        return runs

    async def _prepare(self, server: FakeDiscordVoiceServer, s: CogScenario) -> CogRun:
        self._next_guild += 1000
        guild_id = self._next_guild
        text_id, voice_ids = guild_id + 10, [guild_id + 20, guild_id + 21]
        members = {sp.user_id: f"member{sp.user_id}" for sp in s.speakers}
        self.world.add_guild(guild_id, text_channels={text_id: "meetings"},
                             voice_channels={voice_ids[0]: "Standup", voice_ids[1]: "Lounge"},
                             members=members, name=s.name[:90])
        calls = [server.add_call(guild_id, cid, dave=s.dave) for cid in voice_ids]
        for sp in s.speakers:
            calls[sp.channel].add_speaker(sp.user_id, sp.source, speaking_delay_frames=sp.speaking_delay_frames,
                                          **sp.plan)
            self.world.voice_state(sp.user_id, voice_ids[sp.channel], guild_id=guild_id)
        guild_config = self.cog.config.guild_from_id(guild_id)
        await guild_config.flush_interval.set(FLUSH_S)
        await guild_config.move_action.set(s.move)
        return CogRun(s, server, calls, self.world.bot, guild_id, text_id=text_id,  # type: ignore[arg-type]
                      voice_ids=voice_ids)

    async def _play(self, run: CogRun) -> CogRun:
        world, s = self.world, run.scenario
        assert isinstance(s, CogScenario)
        await world.invoke(OWNER_ID, f"{PREFIX}record start {run.voice_ids[0]}", channel_id=run.text_id,
                           guild_id=run.guild_id)
        live = self.cog.service.live(run.guild_id)
        assert live is not None, [m.text for m in world.sent(run.text_id)]
        run.live, run.session = live, live.session
        run.links.append(live.link)
        # Observe what reaches the session (receive stalls of a busy machine are left out of
        # the comparisons); the manager's own reconnects attach this same sink.
        run._sink = live.session.feed
        live.session.feed = run.feed
        live.link.receiver.set_sink(live.session.feed, channels=live.session.settings.channels)
        await self._script(run, s)
        if not run.ended_by_itself:
            run.stopped_at = run.now()
            await world.invoke(OWNER_ID, f"{PREFIX}record stop", channel_id=run.text_id, guild_id=run.guild_id)
        run.summary = await wait_for_sent(world, lambda m: m.text.startswith("✅"), channel_id=run.text_id)
        await wait_for_sent(world, lambda m: bool(m.files), channel_id=run.text_id)
        service = self.cog.service
        meeting = await service.meeting(run.guild_id, live.meeting_id)
        recordings = await service.recordings_of(meeting)
        run.result = SimpleNamespace(recordings=recordings, length_ms=meeting.length_samples * 1000 / meeting.sample_rate,
                                     meeting=meeting)
        run.gaps = [(g.start_s, g.end_s) for g in live.connection.gaps]
        run.snapshot = live.session.snapshot()
        return run

    async def _script(self, run: CogRun, s: CogScenario) -> None:
        t0 = run.session.t0
        pending = sorted(s.actions, key=lambda a: a[0])
        while True:
            live = run.live
            if live.link not in run.links:
                run.links.append(live.link)
            if run.ended_by_itself or live.ending or self.cog.service.live(run.guild_id) is not live:
                return  # it ended on its own (a kick, a move it does not follow)
            now = time.monotonic()
            if pending and now >= t0 + pending[0][0]:
                _, action = pending.pop(0)
                await action(run)
                continue
            if not pending and now >= t0 + s.seconds:
                # A reconnect not yet noticed, under way, or just back: the member stops
                # a little after it (real_voice.RECONNECT_GRACE_S says why).
                gaps = live.connection.gaps
                settling = live.connection.down is not None or len(gaps) < s.reconnects or (
                    bool(gaps) and now - t0 - gaps[-1].end_s < AFTER_RESUME_S)
                if not settling or now >= t0 + s.seconds + RECONNECT_GRACE_S:
                    return
            await asyncio.sleep(0.02)

    async def status(self, run: CogRun) -> str:
        """``[p]record status`` in the scenario's guild, as one text."""
        replies = await self.world.invoke(OWNER_ID, f"{PREFIX}record status", channel_id=run.text_id,
                                          guild_id=run.guild_id)
        return "\n".join(m.text for m in replies)


@contextlib.contextmanager
def reconnect_delay(cog: Any, seconds: float) -> Any:
    """The cog's reconnect policy waits ``seconds`` (then twice that...) instead of 2 s."""
    meetings = cog.service.meetings
    before = meetings.reconnect_delay_s
    meetings.reconnect_delay_s = seconds
    try:
        yield
    finally:
        meetings.reconnect_delay_s = before
