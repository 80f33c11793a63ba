"""Shared by the pipeline tests (``tests/pipeline/``).

Speakers are fed to the session as ``VoiceFrame``s directly (the receive layer has
its own tests): a frame's ``arrival`` is the instant its 20 ms were complete, so
with no jitter it lands exactly where its source sample sits on the timeline, and
the expected track is the source shifted by the speaker's start.

Signals are speech-like (gliding pitch with harmonics, syllable envelope): never
periodic over more than a few ms, so a cross-correlation peak can only sit at the
true alignment, and different seeds are uncorrelated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional, Sequence

import numpy as np

from chunkrecorder.audio import mp3
from chunkrecorder.objects import VoiceFrame
from chunkrecorder.pipeline.session import RecordingSession
from chunkrecorder.pipeline.timeline import Grid

from .signals import RATE, TOLERANCE, speech_like

FRAME = 960


class Clock:
    """A settable clock: the session reads it, the test moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


@dataclass
class Speaker:
    """One user's frames: ``signal`` (mono int16) starting at timeline second ``start_s``."""

    user_id: int
    signal: np.ndarray
    start_s: float = 0.0
    ssrc: int = 0
    first_timestamp: int = 123_456
    first_sequence: int = 100
    #: what its frames carry: 2 (Discord's stereo) or 1 (what the receiver decodes for a mono meeting)
    channels: int = 2

    def __post_init__(self) -> None:
        if not self.ssrc:
            self.ssrc = 7000 + self.user_id
        self.signal = self.signal[: len(self.signal) // FRAME * FRAME]

    @property
    def n_frames(self) -> int:
        return len(self.signal) // FRAME

    @property
    def start_sample(self) -> int:
        return int(round(self.start_s * RATE))

    def frame(self, i: int, t0: float, *, arrival_delay: float = 0.0) -> VoiceFrame:
        x = self.signal[i * FRAME : (i + 1) * FRAME]
        pcm = np.repeat(x[:, None], self.channels, axis=1)
        return VoiceFrame(
            user_id=self.user_id,
            ssrc=self.ssrc,
            sequence=(self.first_sequence + i) & 0xFFFF,
            timestamp=(self.first_timestamp + i * FRAME) & 0xFFFFFFFF,
            arrival=t0 + self.start_s + (i + 1) * FRAME / RATE + arrival_delay,
            pcm=pcm.tobytes(),
            channels=self.channels,
        )

    def expected(self, length: int) -> np.ndarray:
        """This speaker's track on the timeline (int16, zeros where absent)."""
        out = np.zeros(length, dtype=np.int16)
        s = self.start_sample
        n = max(0, min(len(self.signal), length - s))
        out[s : s + n] = self.signal[:n]
        return out


async def play(
    session: RecordingSession,
    clock: Clock,
    speakers: Sequence[Speaker],
    *,
    until_s: float,
    step_s: float = 0.1,
    skip: Optional[dict[int, set[int]]] = None,
    advance: bool = True,
    tick: Optional[Callable[[], Awaitable[None]]] = None,
) -> None:
    """Deliver every speaker's frames at their arrival times, advancing the session.

    ``skip`` maps a user to frame indices that never arrive (lost packets). ``tick``
    is how the owner advances (``recorder.tick`` for a session the recorder made, as
    the cog and the harness do); by default the session alone is advanced.
    """
    t0 = session.t0
    events: list[tuple[float, VoiceFrame]] = []
    for sp in speakers:
        for i in range(sp.n_frames):
            if skip and i in skip.get(sp.user_id, set()):
                continue
            f = sp.frame(i, t0)
            events.append((f.arrival, f))
    events.sort(key=lambda e: e[0])
    j = 0
    t = t0
    while t < t0 + until_s - 1e-9:
        t = min(t0 + until_s, t + step_s)
        while j < len(events) and events[j][0] <= t + 1e-9:
            session.feed(events[j][1])
            j += 1
        clock.t = t
        if advance:
            await (tick() if tick is not None else session.advance())


async def wait_for(predicate, timeout_s: float = 20.0, step_s: float = 0.02) -> None:
    """Poll an async or sync predicate until true (for background work in tests)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step_s)


def encode_but_die_once(job):
    """An encoder whose process dies the first time (a segfault or OOM kill stand-in).

    Lives here, not in a test module, because a worker process imports it by name.
    """
    import os

    from chunkrecorder.pipeline.encode_worker import encode

    marker = Path(job.pcm_path).with_suffix(".died")
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)
    return encode(job)


async def queued_chunks(store, layout, *, seconds: float = 2.5, users=(1,), flush_interval_s: float = 1.0,
                        strategy=None):
    """A finished session's chunks, QUEUED in the store: the transcoder's input."""
    from chunkrecorder.objects import MeetingSettings, Strategy

    settings = MeetingSettings(flush_interval_s=flush_interval_s, strategy=strategy or Strategy.PER_USER)
    meeting = await store.create_meeting(guild_id=1, channel_id=2, started_by=3, strategy=settings.strategy,
                                         flush_interval_s=settings.flush_interval_s)
    clock = Clock()
    session = RecordingSession(meeting=meeting, settings=settings, store=store, layout=layout, clock=clock)
    speakers = [Speaker(u, speech_like(seconds, seed=u)) for u in users]
    await play(session, clock, speakers, until_s=seconds)
    length = await session.finish()
    return session, speakers, length


async def kill(recorder) -> None:
    """Simulate the process dying: every task of the recorder stops where it is.

    Nothing is flushed, finished or marked: sessions keep their unflushed audio in
    memory (and lose it), rows stay as they are (ACTIVE meetings, IN_PROGRESS chunks),
    files stay half-assembled. The old recorder is not used again; a new one is
    opened on the same database file and data directory.
    """
    tasks = list(recorder._tasks)  # the workers, assembly and background promotions
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pool = recorder.transcoder._pool
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
    for s in recorder.sessions():
        s._finished = True  # its memory is gone with the process
    recorder.folder_lock.release()  # the OS drops a dead process's lock
    await recorder.store.close()
