"""Meetings recorded through discord.py's real voice client, checked against what was said.

Each :class:`Scenario` is one short meeting (2-3 speakers, 10-14 s at wall-clock pace):
its own :class:`harness.discord_voice.FakeDiscordVoiceServer` and offline
``discord.Client``; the bot joins with the cog's own connector
(``chunkrecorder.voice.discord_bridge.connect``: ``channel.connect(cls=RecordingVoiceClient)``
→ ``VoiceConnectionState`` → ``DiscordVoiceWebSocket`` → UDP), and the link's receiver
feeds a real ``RecordingSession`` of a real ``Recorder`` (SQLite store, MP3 encoder in
worker processes). Several scenarios run at once on one event loop and one recorder,
so a test of four costs about as much wall time as one.

What is checked comes from the fake server's log of what each member's client sent and
whether the bot could have decrypted it, never from the code under test: the promoted
per-speaker files are decoded and compared with the speakers' sources placed on the
meeting's timeline (both clocks are ``time.monotonic``), shifted by the Opus encoder's
look-ahead. Where the bot could not hear (before it joined, during an outage) the
reference is silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Sequence

import numpy as np

from chunkrecorder.audio import mp3
from chunkrecorder.audio.opus import CODEC_DELAY_SAMPLES
from chunkrecorder.objects import MeetingSettings
from chunkrecorder.pipeline.recorder import Recorder
from chunkrecorder.store import SqlRecordingService
from chunkrecorder.voice.discord_bridge import DiscordVoiceLink, connect
from chunkrecorder.voice.link import BaseVoiceEventListener, DisconnectReason
from harness.discord_voice import FakeCall, FakeDiscordVoiceServer, offline_client
from harness.impairments import Fate
from harness.network import OpusCache
from harness.sources import FRAME_SAMPLES, SAMPLE_RATE, Source, synthetic_speaker

from tests.support.lifecycle import Track
from tests.support.signals import decode_file

log = logging.getLogger("tests.real_voice")

BOT_ID = 9_000_001
FLUSH_S = 2.0
#: "Audio after the gap aligned within 20 ms of the source" (issue 9).
ALIGN_TOLERANCE = int(0.020 * SAMPLE_RATE)
#: Lags on either side of a window differing by more than this: the stream was re-placed there.
REPLACED_BY = int(0.0005 * SAMPLE_RATE)
#: A window correlating below this is looked at as a possible re-placement boundary.
BOUNDARY_BELOW = 0.97
#: ...and is one if the 0.2 s (or 0.1 s) either side of some point in it each match this well,
#: on at least STEP_SIDE comparable samples each (10 ms: a stretch shorter than that
#: cannot pull a 0.4 s window below 0.95 by itself).
STEP_PART_S = (0.2, 0.1)
STEP_FIT = 0.95
STEP_SIDE = int(0.010 * SAMPLE_RATE)
#: A frame the fake server's media thread sent this late means the machine stalled the
#: whole test process (a busy CI machine): the stretch around it is left out of the
#: comparisons, which are about the bot's logic, not the machine's scheduling.
STALL_S = 0.06
#: The same on the receiving side: consecutive frames arriving this far apart.
RECEIVE_STALL_S = 0.1
#: How long past its end a scenario waits for a reconnect not yet noticed or still under
#: way (``Scenario.reconnects``), and then for
#: AFTER_RESUME_S of audio after it: a scenario's trouble is meant to be over well before
#: its end, but at a load of 7 on 2 cores a reconnect was measured taking 2.8 s (1 s idle)
#: and the one after a read timeout ending 1.4 s before the stop, too close to check the
#: alignment after it. (A stop during a reconnect is its own test, in test_voice_events.py.)
RECONNECT_GRACE_S = 15.0
AFTER_RESUME_S = 3.0
#: Speech is compared from this far into the meeting (the sink is attached just after
#: the meeting starts; the first packets of a stream wait in the reorder buffer).
SETTLE_S = 0.4

#: Every scenario's speakers say one of these, encoded to Opus once per test process.
SOURCES: list[Source] = [synthetic_speaker(i, 30.0, talk_spurts=False) for i in range(6)]
SPURTS: list[Source] = [synthetic_speaker(i, 30.0, seed=3, talk_spurts=True) for i in range(6)]
_OPUS: Optional[OpusCache] = None


def opus_cache(scenarios: Sequence["Scenario"] = ()) -> OpusCache:
    """One cache for every scenario of the process: each source is encoded once, ahead
    of time (encoding in the fake members' real-time thread would be the harness's
    cost, not the bot's)."""
    global _OPUS
    if _OPUS is None:
        _OPUS = OpusCache(complexity=5)
    for s in scenarios:
        for sp in s.speakers:
            _OPUS.prepare(sp.source, int((s.seconds + s.join_after_s + 2.0) * 50))
    return _OPUS


# --------------------------------------------------------------------------- scenarios
@dataclass
class Speaker:
    user_id: int
    source: Source
    plan: dict[str, Any] = field(default_factory=dict)  # SpeakerPlan keywords (join_at, reconnects...)
    speaking_delay_frames: int = 0
    channel: int = 0  # index into Scenario.channels


Action = Callable[["Run"], Awaitable[None]]


@dataclass
class Scenario:
    """One meeting. ``actions`` are (seconds after the meeting's start, what happens)."""

    name: str
    speakers: Sequence[Speaker]
    seconds: float = 10.0
    dave: bool = True
    channels: int = 1
    join_after_s: float = 0.6  # the members talk this long before the bot joins
    greeting_delay_frames: int = 0
    actions: Sequence[tuple[float, Action]] = ()
    #: What the test (standing in for the cog) does when the link dies: "stop" the
    #: meeting (a kick), or "reconnect" with a new link into the same session.
    on_disconnect: str = "stop"
    #: discord.py reconnects the trouble causes: the meeting runs on past ``seconds``
    #: (up to RECONNECT_GRACE_S) until they are back (a loaded machine notices late).
    reconnects: int = 0


class Events(BaseVoiceEventListener):
    """Everything a link reports, with the meeting time it was reported at."""

    def __init__(self, run: "Run") -> None:
        self.run = run
        self.log: list[tuple[float, str, Any]] = []
        self.disconnected = asyncio.Event()

    def _add(self, name: str, arg: Any = None) -> None:
        self.log.append((self.run.now(), name, arg))

    def on_reconnecting(self, cause: str) -> None:
        self._add("reconnecting", cause)

    def on_resume(self, outage_s: float) -> None:
        self._add("resume", outage_s)

    def on_move(self, channel_id: int) -> None:
        self._add("move", channel_id)

    def on_disconnect(self, reason: DisconnectReason) -> None:
        self._add("disconnect", reason)
        self.disconnected.set()

    def names(self) -> list[str]:
        return [name for _, name, _ in self.log]

    def of(self, name: str) -> list[Any]:
        return [arg for _, n, arg in self.log if n == name]


@dataclass
class Run:
    """A scenario being played: the server, the bot's client and link, the session."""

    scenario: Scenario
    server: FakeDiscordVoiceServer
    calls: list[FakeCall]
    client: Any
    guild_id: int
    links: list[DiscordVoiceLink] = field(default_factory=list)
    events: list[Events] = field(default_factory=list)
    session: Any = None
    result: Any = None
    gaps: list[tuple[float, float]] = field(default_factory=list)  # meeting-time outages, all links
    stopped_at: Optional[float] = None
    snapshot: Any = None  # the session's counters just before it stopped
    receive_stalls: list[tuple[float, float]] = field(default_factory=list)  # (meeting time, seconds)
    _last_frame: dict[int, tuple[float, int]] = field(default_factory=dict)
    #: The bot's VOICE_STATE_UPDATEs as the cog sees them (discord.py's on_voice_state_update
    #: event) with the link's verdict asked right then: (meeting time, channel id, verdict).
    verdicts: list[tuple[float, Optional[int], Any]] = field(default_factory=list)

    @property
    def link(self) -> DiscordVoiceLink:
        return self.links[-1]

    @property
    def channel_ids(self) -> list[int]:
        return [c.channel_id for c in self.calls]

    def now(self) -> float:
        return time.monotonic() - (self.session.t0 if self.session is not None else 0.0)

    def feed(self, frame: Any) -> None:
        """The session's sink, noting receive stalls: two consecutive frames of a stream
        (RTP timestamps 960 apart) whose arrivals are far apart were held up on this
        side (a busy machine), not by the sender or the network."""
        last = self._last_frame.get(frame.user_id)
        if last is not None and (frame.timestamp - last[1]) % (1 << 32) == FRAME_SAMPLES \
                and frame.arrival - last[0] > RECEIVE_STALL_S:
            self.receive_stalls.append((frame.arrival - self.session.t0, frame.arrival - last[0]))
        self._last_frame[frame.user_id] = (frame.arrival, frame.timestamp)
        self.session.feed(frame)

    def all_events(self) -> list[tuple[float, str, Any]]:
        return [e for ev in self.events for e in ev.log]


# --------------------------------------------------------------------------- running
class Bench:
    """One recorder (real store, real encoder) shared by the scenarios of a test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.store: Any = None
        self.recorder: Any = None
        self._next_guild = 100

    async def __aenter__(self) -> "Bench":
        self.store = SqlRecordingService(self.tmp_path / "chunkrecorder.sqlite3")
        await self.store.open()
        self.recorder = Recorder(store=self.store, data_dir=self.tmp_path)  # passive: the runs tick their sessions
        await self.recorder.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.recorder.close()
        await self.store.close()

    async def play(self, *scenarios: Scenario) -> list[Run]:
        """Play the scenarios at once; a failure in one is raised after all have ended."""
        await asyncio.to_thread(opus_cache, scenarios)
        runs = await asyncio.gather(*(self._play(s) for s in scenarios), return_exceptions=True)
        for s, r in zip(scenarios, runs):
            if isinstance(r, BaseException):
                raise AssertionError(f"scenario {s.name!r} failed to run: {r!r}") from r
        return [r for r in runs if isinstance(r, Run)]

    async def _play(self, s: Scenario) -> Run:
        self._next_guild += 1
        guild_id = self._next_guild
        channel_ids = [guild_id * 10 + i for i in range(s.channels)]
        server = FakeDiscordVoiceServer(seed=guild_id, opus=opus_cache(), heartbeat_interval_ms=1000)
        await server.start()
        calls = [server.add_call(guild_id, cid, dave=s.dave, greeting_delay_frames=s.greeting_delay_frames)
                 for cid in channel_ids]
        for sp in s.speakers:
            calls[sp.channel].add_speaker(sp.user_id, sp.source, speaking_delay_frames=sp.speaking_delay_frames,
                                          **sp.plan)
        members = {sp.user_id: f"member{sp.user_id}" for sp in s.speakers}
        client = offline_client(guild_id, voice_channels={cid: f"voice{cid}" for cid in channel_ids},
                                members=members, bot_id=BOT_ID)
        server.attach(client)
        run = Run(s, server, calls, client, guild_id)

        @client.event
        async def on_voice_state_update(member: Any, before: Any, after: Any) -> None:
            if member.id == BOT_ID and run.links:
                channel_id = after.channel.id if after.channel is not None else None
                run.verdicts.append((run.now(), channel_id, run.link.classify_voice_state(channel_id)))
        ticker: Optional[asyncio.Task[None]] = None
        try:
            await server.start_media()
            await asyncio.sleep(s.join_after_s)
            channel = client.get_channel(channel_ids[0])
            await self._connect(run, channel)
            run.session = await self.recorder.start_meeting(
                guild_id=guild_id, channel_id=channel_ids[0], started_by=s.speakers[0].user_id,
                settings=MeetingSettings(flush_interval_s=FLUSH_S), clock=time.monotonic)
            run.link.receiver.set_sink(run.feed, channels=run.session.settings.channels)
            ticker = asyncio.create_task(self._tick(run))
            await self._script(run, channel)
            await self._stop(run)
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            for link in run.links:
                with contextlib.suppress(Exception):
                    await link.disconnect()
            await server.stop()
        return run

    async def _connect(self, run: Run, channel: Any) -> None:
        try:
            link = await connect(channel, timeout=10.0)
        except Exception as exc:
            # What the server saw, so a failed connect says where the handshake stopped.
            sessions = [(s.ops_received, s.ops_sent, s.close_code) for ep in run.server.endpoints for s in ep.sessions]
            discoveries = [ep.udp.discoveries for ep in run.server.endpoints]
            raise AssertionError(f"connect failed: {exc!r}; sessions (ops in, ops out, close) {sessions}; "
                                 f"IP discoveries {discoveries}; gateway {[g.dispatched for g in run.server.gateways]}"
                                 ) from exc
        events = Events(run)
        link.set_listener(events)
        run.links.append(link)
        run.events.append(events)

    async def _tick(self, run: Run) -> None:
        """What the cog's tick does: release held frames, flush due windows."""
        while True:
            link = run.link
            if link._receiver is not None:
                await asyncio.to_thread(link.receiver.poll)
            await run.session.advance()
            await asyncio.sleep(0.1)

    async def _script(self, run: Run, channel: Any) -> None:
        s = run.scenario
        t0 = run.session.t0
        pending = sorted(s.actions, key=lambda a: a[0])
        while True:
            events = run.events[-1]
            next_at = pending[0][0] if pending else s.seconds
            wait = t0 + next_at - time.monotonic()
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(events.disconnected.wait(), wait)
            if events.disconnected.is_set():
                reason = events.of("disconnect")[-1]
                if s.on_disconnect == "reconnect" and reason is DisconnectReason.GAVE_UP and run.now() < s.seconds:
                    # The cog's own reconnect policy: a new link into the same session.
                    await self._connect(run, channel)
                    run.link.receiver.set_sink(run.feed, channels=run.session.settings.channels)
                    continue
                return  # a kick: the meeting stops here
            if pending and time.monotonic() >= t0 + pending[0][0]:
                _, action = pending.pop(0)
                await action(run)
                continue
            if not pending and time.monotonic() >= t0 + s.seconds:
                if not _settling(run.all_events(), run.now(), s.reconnects) or \
                        time.monotonic() >= t0 + s.seconds + RECONNECT_GRACE_S:
                    return
                await asyncio.sleep(0.02)

    async def _stop(self, run: Run) -> None:
        run.stopped_at = run.now()
        # As the cog's stop does: the files end here, however long leaving voice takes
        # (0.34 s was measured on a clean clone's loaded run, all of it silence otherwise).
        self.recorder.end_here(run.session.meeting.id)
        link = run.link
        for l in run.links:
            run.gaps.extend((o.start - run.session.t0, o.end - run.session.t0) for o in l.outages)
        if link.is_connected() or link.tracker.state.name != "ENDED":
            await link.disconnect()
        else:
            link.receiver.flush()
        await run.session.advance()
        run.snapshot = run.session.snapshot()
        run.result = await self.recorder.stop_meeting(run.session.meeting.id)


def _settling(log: Sequence[tuple[float, str, Any]], now: float, expected: int = 0) -> bool:
    """Whether fewer than ``expected`` reconnects have come back, a link is reconnecting,
    or one resumed less than ``AFTER_RESUME_S`` ago."""
    if sum(1 for e in log if e[1] == "resume") < expected:
        return True
    last = next((e for e in reversed(log) if e[1] in ("reconnecting", "resume")), None)
    return last is not None and (last[1] == "reconnecting" or now - last[0] < AFTER_RESUME_S)


# --------------------------------------------------------------------------- checking
@dataclass
class SpeakerCheck:
    """One speaker's file next to what it should hold."""

    user_id: int
    track: Track
    said: np.ndarray  # per 20 ms frame of the file: the speaker was talking and the bot could hear
    corr: float
    lags: dict[float, int]  # meeting second -> lag in samples
    corrs: dict[float, float]  # meeting second -> correlation of the window there
    silent_while_talking: list[tuple[float, float]]  # meeting-time spans (outside machine stalls)
    stalls: int = 0  # stretches the machine held up, sending or receiving (left out)
    replaced: list[float] = field(default_factory=list)  # windows across a re-placement (not scored)


def _member(run: Run, user_id: int) -> tuple[FakeCall, Any]:
    for call in run.calls:
        if user_id in call.members:
            return call, call.members[user_id]
    raise KeyError(user_id)


def check_speaker(run: Run, user_id: int) -> SpeakerCheck:
    """Decode ``user_id``'s file and measure it against the server's log."""
    rec = next(r for r in run.result.recordings if r.user_id == user_id)
    recording = decode_file(rec.path)
    n = len(recording)
    call, member = _member(run, user_id)
    server = run.server
    assert server.t0 is not None
    # Server frame k left its client at t0s + (k+1)*20 ms and is placed so that it ends at
    # its arrival: server sample s lands on meeting sample s + shift.
    shift = int(round((server.t0 - run.session.t0) * SAMPLE_RATE))
    frames = -(-(n - shift) // FRAME_SAMPLES) + 2
    fates = call.fates(user_id, frames)
    delivered = fates == Fate.DELIVERED
    src = member.plan.source.expected(frames * FRAME_SAMPLES, sent=delivered).astype(np.float64).mean(axis=1)
    reference = np.zeros(n)
    start = shift + CODEC_DELAY_SAMPLES
    lo, hi = max(0, start), min(n, start + len(src))
    if hi > lo:
        reference[lo:hi] = src[lo - start: hi - start]
    # Masked: before the meeting settled, frames the bot could not decrypt (and one either
    # side, for Opus's overlap and the MP3 frame's smear), and each outage's edges.
    mask = np.ones(n, dtype=bool)
    mask[: int(SETTLE_S * SAMPLE_RATE)] = False
    for k in np.flatnonzero(fates == Fate.LOST):
        a = shift + k * FRAME_SAMPLES - FRAME_SAMPLES - mp3.FRAME
        mask[max(0, a): max(0, min(n, a + 3 * FRAME_SAMPLES + 2 * mp3.FRAME))] = False
    send_lags = np.asarray(server.media_lags[: len(fates)])
    stalled = np.flatnonzero(send_lags > STALL_S)
    for k in stalled:
        a = shift + (int(k) - 15) * FRAME_SAMPLES
        mask[max(0, a): max(0, min(n, a + 31 * FRAME_SAMPLES))] = False
    held = [(t - gap, t) for t, gap in run.receive_stalls]
    for a_s, b_s in held:
        a, b = int((a_s - 0.3) * SAMPLE_RATE), int((b_s + 0.3) * SAMPLE_RATE)
        mask[max(0, a): max(0, min(n, b))] = False
    # After an outage the new stream settles as the meeting's first one does (SETTLE_S).
    for g0, g1 in run.gaps:
        for edge, after in ((g0, FRAME_SAMPLES * 10), (g1, int(SETTLE_S * SAMPLE_RATE))):
            c = int(edge * SAMPLE_RATE)
            mask[max(0, c - FRAME_SAMPLES * 10): max(0, min(n, c + after))] = False
    track = Track(user_id, recording, reference, mask)
    # Content and place are measured in windows inside one stretch of sending (a talk
    # spurt, one SSRC): each stretch is placed on its own arrival times, to within a
    # millisecond, and a window across two would mix two such placements.
    spoke = call.spoke(user_id, frames)
    lags: dict[float, int] = {}
    corrs: dict[float, float] = {}
    window = int(0.4 * SAMPLE_RATE)
    for second in np.arange(1.0, n / SAMPLE_RATE - 0.5, 0.5):
        at = int(second * SAMPLE_RATE)
        k0 = (at - shift - CODEC_DELAY_SAMPLES) // FRAME_SAMPLES - 1
        k1 = (at + window - shift) // FRAME_SAMPLES + 1
        if k0 < 0 or k1 > len(spoke) or not spoke[k0:k1].all():
            continue
        fit = local_fit(track, at, window=window)
        if fit is not None:
            lags[float(second)], corrs[float(second)] = fit
    # A stream is re-placed by a few milliseconds when a frame proves its anchor late
    # (timeline.SpeakerClock: a busy machine delayed the frames it was anchored on); the
    # window across that point mixes two placements, each right on its own, and correlates
    # poorly at every lag. Such a window is a boundary between two stretches, not a
    # stretch: its content is not scored, once it is shown to be one (`_placement_step`).
    replaced = [t for t, r in corrs.items()
                if r < BOUNDARY_BELOW and _placement_step(track, int(t * SAMPLE_RATE), window) is not None]
    scored = [r for t, r in corrs.items() if t not in replaced]
    corr = min(scored) if scored else 0.0
    # Where the member's client sent audio but the file is silent.
    talked = np.zeros(n // FRAME_SAMPLES, dtype=bool)
    for i in range(len(talked)):
        k = (i * FRAME_SAMPLES - shift) // FRAME_SAMPLES
        talked[i] = 0 <= k < len(spoke) and bool(spoke[k])
    energy = (recording[: len(talked) * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES) ** 2).mean(axis=1)
    near_stall = np.zeros(len(talked), dtype=bool)
    for k in stalled:
        i = (shift + int(k) * FRAME_SAMPLES) // FRAME_SAMPLES
        near_stall[max(0, i - 15): max(0, i + 16)] = True
    for a_s, b_s in held:
        near_stall[max(0, int((a_s - 0.3) * 50)): max(0, int((b_s + 0.3) * 50))] = True
    silent = talked & (energy < 1e4) & ~near_stall
    silent[: int(SETTLE_S * 50)] = False
    spans: list[tuple[float, float]] = []
    i = 0
    while i < len(silent):
        if silent[i]:
            j = i
            while j < len(silent) and silent[j]:
                j += 1
            spans.append((i * 0.02, j * 0.02))
            i = j
        else:
            i += 1
    return SpeakerCheck(user_id, track, delivered, corr, lags, corrs, spans, len(stalled) + len(held), replaced)


def _placement_step(t: Track, at: int, window: int) -> Optional[tuple[int, int, int]]:
    """(sample it happens at, lag before, lag after) if the window at ``at`` is two
    stretches placed apart: some point in it has the stretch before it matching
    the source at one lag and the stretch after it at another, each closely (r above
    ``STEP_FIT``), both lags in tolerance and differing by more than ``REPLACED_BY``.

    Each side is measured on its comparable samples only, and needs ``STEP_SIDE`` of
    them: a re-placement comes soon after a new stream starts, so the stretch before it
    is often a few tens of milliseconds between an outage's masked edge and the step.
    Audio in the wrong place, or not the speaker's, finds no such point, so a window
    that fails for those reasons is still scored.
    """
    best: Optional[tuple[float, tuple[int, int, int]]] = None
    # The step is where the re-placed frame starts: anywhere, not on the window's frame
    # grid (it moved by a few ms), so cuts are tried every quarter frame.
    for cut in range(at + FRAME_SAMPLES // 4, at + window, FRAME_SAMPLES // 4):
        for part_s in STEP_PART_S:  # shorter where the recording or the source ends near
            part = int(part_s * SAMPLE_RATE)
            before = local_fit(t, cut - part, window=part, least=STEP_SIDE)
            after = local_fit(t, cut, window=part, least=STEP_SIDE)
            if before is not None and after is not None:
                break
        if before is None or after is None:
            continue
        (lag0, r0), (lag1, r1) = before, after
        if (min(r0, r1) > STEP_FIT and abs(lag0 - lag1) > REPLACED_BY
                and max(abs(lag0), abs(lag1)) <= ALIGN_TOLERANCE
                and (best is None or min(r0, r1) > best[0])):
            best = min(r0, r1), (cut, lag0, lag1)  # the frame either side of which fits best
    return None if best is None else best[1]


def local_fit(t: Track, at: int, *, window: int = int(0.4 * SAMPLE_RATE),
              search: int = ALIGN_TOLERANCE, least: Optional[int] = None) -> Optional[tuple[int, float]]:
    """(lag, correlation) of the recording against the reference around ``at``: where
    the window of reference best matches, and how well (None: nothing to compare there).

    Only the window's comparable samples (``t.mask``) count, and there must be ``least``
    of them (nine tenths of the window unless told): a masked stretch is one the check
    declared it cannot judge (an outage's edge, a stalled machine), so it weighs neither
    for the bot nor against it.

    Measured per window, because the receiver places each stream (each SSRC, each
    reconnect) on arrival times to within a millisecond, and at a few kHz a fraction of
    a millisecond between two stretches already lowers a whole-file correlation.
    """
    if at + window + search > len(t.reference) or at - search < 0:
        return None
    m = t.mask[at: at + window]
    comparable = int(m.sum())
    if comparable < (int(0.9 * window) if least is None else least):
        return None
    ref = t.reference[at: at + window] * m
    if np.dot(ref, ref) < 1e5 * comparable:  # quiet there
        return None
    seg = t.recording[at - search: at + window + search]
    size = 1 << int(np.ceil(np.log2(len(seg) + window)))
    # scores[j] = seg[j : j + window] . ref, for j in 0..2*search (np.correlate's "valid", by FFT)
    scores = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(ref, size)), size)[: 2 * search + 1]
    best = int(np.argmax(scores))
    rec = seg[best: best + window] * m
    den = np.sqrt(np.dot(rec, rec) * np.dot(ref, ref))
    return best - search, float(scores[best] / den) if den else 0.0


def _near(lags: dict[float, int], second: float) -> list[tuple[float, int]]:
    return [(t, lag) for t, lag in sorted(lags.items()) if abs(t - second) <= 1.5]


def _tenths(t: Track, second: float) -> list[tuple[float, Optional[int], Optional[float]]]:
    """A failing window's fit, a tenth of a second at a time (for the failure message)."""
    out: list[tuple[float, Optional[int], Optional[float]]] = []
    for i in range(-2, 6):
        at = int((second + i / 10) * SAMPLE_RATE)
        fit = local_fit(t, at, window=SAMPLE_RATE // 10)
        out.append((round(second + i / 10, 1), None if fit is None else fit[0],
                    None if fit is None else round(fit[1], 3)))
    return out


def _keep_for_study(run: Run, c: SpeakerCheck, *, failed: bool) -> None:
    """With ``CHUNKRECORDER_VOICE_DUMP=<folder>``, a failing speaker check saves its
    decoded file, reference, mask and gaps there (``..._ALL=1``: every check), so a
    failure seen once under load can be studied offline, a millisecond at a time."""
    folder = os.environ.get("CHUNKRECORDER_VOICE_DUMP")
    if not folder or not (failed or os.environ.get("CHUNKRECORDER_VOICE_DUMP_ALL")):
        return
    name = "".join(ch if ch.isalnum() else "_" for ch in run.scenario.name)[:40]
    np.savez(os.path.join(folder, f"{name}-{c.user_id}-{os.getpid()}-{time.time_ns()}.npz"),
             rec=c.track.recording, ref=c.track.reference, mask=c.track.mask, gaps=np.array(run.gaps))


def assert_faithful(run: Run, user_ids: Sequence[int], *, min_corr: float = 0.9) -> list[SpeakerCheck]:
    """Each file lasts the meeting, holds its speaker (and nobody else), in place."""
    result = run.result
    length = result.length_ms / 1000
    assert abs(length - (run.stopped_at or 0)) < 0.5, (run.scenario.name, length, run.stopped_at)
    checks = []
    for uid in user_ids:
        c = check_speaker(run, uid)
        name = run.scenario.name
        assert abs(len(c.track.recording) / SAMPLE_RATE - length) < 0.03, (name, uid, len(c.track.recording))
        worst = sorted(c.corrs.items(), key=lambda kv: kv[1])[:3]
        _keep_for_study(run, c, failed=c.corr <= min_corr)
        assert c.corr > min_corr, (f"{name}: user {uid}'s file does not hold what they said (r={c.corr:.3f}); "
                                   f"worst windows (second, r): {worst}; lags near the worst {_near(c.lags, worst[0][0])}; "
                                   f"its tenths (second, lag, r) {_tenths(c.track, worst[0][0])}; silent {c.silent_while_talking}; "
                                   f"gaps {run.gaps}; stats {[l.receiver.stats.as_dict() for l in run.links]}; "
                                   f"session {run.snapshot}; receive stalls {run.receive_stalls[:8]}; media thread late by up to "
                                   f"{run.server.media_lag_max_s * 1000:.0f} ms")
        off = {t: lag for t, lag in c.lags.items() if abs(lag) > ALIGN_TOLERANCE}
        assert not off, f"{name}: user {uid} misaligned (second -> samples): {off}"
        assert len(c.lags) >= 2, f"{name}: user {uid} audible at too few points to check alignment: {c.lags}"
        checks.append(c)
    stats = [l.receiver.stats for l in run.links]
    print(f"[{run.scenario.name}] length {length:.2f} s; " + "; ".join(
        f"user {c.user_id}: r>={c.corr:.3f}, lag {min(c.lags.values()) / 48:+.1f}..{max(c.lags.values()) / 48:+.1f} ms, "
        f"silent while talking {sum(b - a for a, b in c.silent_while_talking):.2f} s"
        + (f" ({c.stalls} machine stalls left out)" if c.stalls else "")
        + (f" (re-placed at {c.replaced} s)" if c.replaced else "") for c in checks)
        + f"; outages {[(round(a, 2), round(b, 2)) for a, b in run.gaps]}; events {[(round(t, 2), n, a) for t, n, a in run.all_events()]}"
        + f"; dave_failed {sum(x.dave_failed for x in stats)}, unknown_ssrc {sum(x.unknown_ssrc for x in stats)}, "
          f"bad_mac {sum(x.bad_mac for x in stats)}; media thread late by up to {run.server.media_lag_max_s * 1000:.0f} ms")
    return checks


def silent_in(spans: Sequence[tuple[float, float]], a: float, b: float) -> float:
    """Seconds of ``spans`` inside ``[a, b]``."""
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in spans)
