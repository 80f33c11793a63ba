"""One live meeting: frames in, one chunk per track and window out.

``feed`` runs on the voice receive thread, so it does nothing but a (thread-safe)
deque append: it can neither block that thread nor raise into it. Everything else
happens in ``advance`` on the event loop, which places the queued frames on the
timeline and flushes every window whose audio is complete (its body, its tail, and a
jitter margin for late and reordered frames). The heavy part of a flush (cutting,
mixing, writing files) runs in a thread.

A flush is ordered for crash safety: all of a window's chunk files are written
atomically first, then their rows are inserted (QUEUED), then the meeting's
``flushed_windows`` moves past the window. A crash before the rows leaves files that
recovery adopts; a crash before the counter leaves rows whose repeat insert is a
no-op. A window below ``flushed_windows`` with no row for a track is silence.

A failed write (disk full, permission denied, a store error) does not stop the
session: the window stays buffered and is retried on the next ``advance``; only if
the backlog exceeds ``max_backlog_windows`` is the oldest window given up, and that
is counted and reported in the snapshot (files of it that did reach disk are
adopted at promotion, so they are not lost either). Memory is therefore bounded by the flush interval (times
the backlog limit), never by the meeting's length.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..audio.mix import mix, to_channels
from ..objects.frames import FRAME_SAMPLES, MeetingSettings, VoiceFrame
from ..objects.records import MIX_USER_ID, Meeting
from ..objects.results import SessionSnapshot
from ..store.service import SqlRecordingService
from .blocking import run_blocking
from .errors import FlushError
from .paths import Layout, link_atomic, write_all_atomic
from .recovery import adopt_orphans
from .budget import AudioBudget, speaker_cost
from .timeline import Grid, SpeakerClock, TrackBuffer

__all__ = ["RecordingSession", "SessionSnapshot"]

#: Samples mixed at a time: the mix's wide intermediate sums stay a few MB whatever the
#: window (a whole 60 s window at once held ~60 MB of them while it was cut).
MIX_SLICE = 48_000


def _mix_in_slices(tracks: list[np.ndarray]) -> np.ndarray:
    """``mix(tracks)`` a second at a time: the same samples (the mix is sample by sample)."""
    out = np.empty_like(tracks[0])
    for lo in range(0, len(out), MIX_SLICE):
        out[lo : lo + MIX_SLICE] = mix([t[lo : lo + MIX_SLICE] for t in tracks])
    return out

#: A new stream's first frames are held until this many have come (or the first is
#: HOLD_S old), so its clock anchors on their smallest network delay.
HOLD_FRAMES = 10
HOLD_S = 0.2

log = logging.getLogger("red.chunkrecorder.pipeline.session")


@dataclass(slots=True)
class _Stats:
    """Counters. ``refused``, ``overflow`` and ``feed_errors`` are written only by ``feed``
    (the receive thread), the rest only on the event loop, so no increment is lost."""

    refused: int = 0
    overflow: int = 0
    feed_errors: int = 0
    received: int = 0
    erased: int = 0
    late: int = 0
    duplicate: int = 0
    invalid: int = 0
    flush_errors: int = 0
    windows_lost: int = 0
    chunks_written: int = 0
    over_budget: int = 0


class RecordingSession:
    """Frames of one meeting → chunk files, rows and jobs. Create through ``Recorder``."""

    #: Frames waiting in ``feed``'s queue before new ones are dropped (and counted):
    #: a stalled event loop must not turn into unbounded memory.
    MAX_INBOX = 50 * 60 * 25

    def __init__(
        self,
        *,
        meeting: Meeting,
        settings: MeetingSettings,
        store: SqlRecordingService,
        layout: Layout,
        clock: Callable[[], float],
        accept_user: Optional[Callable[[int], bool]] = None,
        on_flushed: Optional[Callable[[str], None]] = None,
        jitter_margin_s: float = 0.5,
        max_backlog_windows: int = 6,
        budget: Optional[AudioBudget] = None,
    ) -> None:
        self.meeting = meeting
        self.settings = settings
        self.grid = Grid.for_interval(settings.flush_interval_s)
        self._store = store
        self._layout = layout
        self._clock = clock
        self._accept = accept_user
        self._on_flushed = on_flushed
        self._margin = int(round(jitter_margin_s * self.grid.sample_rate))
        self._max_backlog = max(1, max_backlog_windows)
        self._max_len = int(settings.max_length_s * self.grid.sample_rate)
        #: where the meeting ends on its timeline: the maximum length until a stop pins it
        self._end = self._max_len
        self._end_pinned = False
        self.t0 = clock()
        self._now = self.t0
        self._inbox: collections.deque[VoiceFrame] = collections.deque()
        self._clocks: dict[tuple[int, int], SpeakerClock] = {}
        #: a new stream's first frames, waiting to anchor its clock (see _release_held)
        self._held: dict[tuple[int, int], list[tuple[VoiceFrame, int]]] = {}
        self._erased: set[int] = set()
        self._buffers: dict[int, TrackBuffer] = {}
        #: the bot-wide audio budget: each speaker's buffer is admitted with a reservation
        self._budget = budget
        self._cost = speaker_cost(settings.flush_interval_s, settings.channels)
        self._over_budget: set[int] = set()  # speakers refused for want of memory (so far)
        self._next = 0
        self._lock = asyncio.Lock()
        self._finished = False
        self._stats = _Stats()
        self._last_error: Optional[str] = None
        self._error_window: Optional[int] = None
        self._hole: Optional[int] = None
        self.length_samples: Optional[int] = None

    # ------------------------------------------------------------------ receive thread
    def feed(self, frame: VoiceFrame) -> None:
        """Queue one frame (thread-safe, O(1), never blocks, never raises).

        A user refused by ``accept_user`` (opt-out) is dropped here, before anything
        of theirs is buffered; ``accept_user`` must be cheap and thread-safe.
        """
        try:
            if self._finished:
                return
            if self._accept is not None and not self._accept(frame.user_id):
                self._stats.refused += 1
                return
            if len(self._inbox) >= self.MAX_INBOX:
                self._stats.overflow += 1
                return
            self._inbox.append(frame)
        except Exception:  # noqa: BLE001 - the receive thread must never see an error
            self._stats.feed_errors += 1

    # ------------------------------------------------------------------ event loop
    def sample_at(self, t: float) -> int:
        return int(round((t - self.t0) * self.grid.sample_rate))

    async def advance(self, now: Optional[float] = None) -> None:
        """Place queued frames and flush every window that is due (never raises on I/O)."""
        async with self._lock:
            if self._finished:
                return
            self._tick(now)
            now_s = min(self.sample_at(self._now), self._end)
            limit = self.grid.windows_for(self._max_len)
            while self._next < limit and self.grid.due_at(self._next) + self._margin <= now_s:
                if not await self._flush_or_hold(self._next, None):
                    break

    def end_here(self, now: Optional[float] = None) -> None:
        """The meeting ends at this moment: a stop was asked for.

        Leaving voice can take seconds (discord.py holds its voice lock through a
        reconnect, up to the 10 s the stop waits for it), and the files must not
        grow by that wait. Frames that arrive later but belong before this moment
        (the receiver's reorder buffer, a late packet) are still placed; nothing after
        it is, and no window past it is flushed. The first call wins.
        """
        if self._end_pinned or self._finished:
            return
        t = self._clock() if now is None else now
        self._end = min(max(0, self.sample_at(t)), self._max_len)
        self._end_pinned = True

    async def finish(self, now: Optional[float] = None) -> int:
        """Flush everything up to now as the meeting's end; returns its length in samples.

        Raises :class:`FlushError` (and stays live, holding the audio) if the last
        windows cannot be written, so the caller can report it and try again.
        """
        async with self._lock:
            if self._finished:
                assert self.length_samples is not None
                return self.length_samples
            self._tick(now, release_all=True)
            end = min(max(0, self.sample_at(self._now)), self._end)
            for k in range(self._next, self.grid.windows_for(end)):
                try:
                    await self._flush(k, end)
                except Exception as exc:  # noqa: BLE001
                    self._record_error(k, exc)
                    raise FlushError(
                        f"Could not write the last part of the recording ({self._last_error}). "
                        f"It is still held in memory; free space or fix permissions and stop again."
                    ) from exc
            if self._hole is not None:
                # rows for what reached disk of the given-up windows, before the counter
                # passes them (after it, a window without rows reads as silence)
                await adopt_orphans(self._store, self._layout, self.meeting)
            await self._store.set_flushed_windows(
                self.meeting.id, self.grid.windows_for(end), length_samples=end
            )
            self.length_samples = end
            self._finished = True
            self._inbox.clear()
            self._drop_buffers()  # their reservations go back to the budget
            self._clocks.clear()
            self._held.clear()
            return end

    def snapshot(self) -> SessionSnapshot:
        s = self._stats
        return SessionSnapshot(
            meeting_id=self.meeting.id,
            elapsed_s=max(0.0, self._now - self.t0),
            speakers=tuple(sorted(self._buffers)),
            buffered_bytes=sum(b.nbytes for b in self._buffers.values())
            + len(self._inbox) * FRAME_SAMPLES * 2 * self.settings.channels,  # (as the receiver decodes them)
            windows_flushed=self._next,
            chunks_written=s.chunks_written,
            frames_received=s.received,
            frames_late=s.late,
            frames_duplicate=s.duplicate,
            frames_refused=s.refused + s.erased,
            frames_invalid=s.invalid + s.overflow + s.feed_errors,
            flush_errors=s.flush_errors,
            windows_lost=s.windows_lost,
            last_error=self._last_error,
            limit_reached=self.sample_at(self._now) >= self._max_len,
            speakers_over_budget=tuple(sorted(self._over_budget - set(self._buffers))),
            frames_over_budget=s.over_budget,
        )

    @property
    def finished(self) -> bool:
        return self._finished

    def elapsed_s(self) -> float:
        """The meeting's time now: seconds from t=0 on the session's clock (where a note
        taken now belongs in every file of the meeting)."""
        return min(max(0.0, self._clock() - self.t0), self._end / self.grid.sample_rate)

    async def forget_user(self, user_id: int) -> None:
        """Erasure: drop what is buffered of a user and refuse their frames from now on.

        Waits for a flush in progress, so that every chunk of theirs written before
        the erasure already has its row when this returns (and the caller removes it),
        and none is written after.
        """
        async with self._lock:
            self._forget(user_id)

    def _forget(self, user_id: int) -> None:
        self._erased.add(user_id)
        self._drop_buffer(user_id)
        for key in [k for k in self._clocks if k[0] == user_id]:
            del self._clocks[key]
        for key in [k for k in self._held if k[0] == user_id]:
            del self._held[key]

    # ------------------------------------------------------------------ placing frames
    def _tick(self, now: Optional[float], *, release_all: bool = False) -> None:
        t = self._clock() if now is None else now
        self._now = max(self._now, t)
        self._drain(release_all=release_all)

    def _drain(self, *, release_all: bool = False) -> None:
        """Place every queued frame, then write them per speaker in contiguous runs.

        Placing is per frame (each moves its speaker's clock); writing is per run of
        frames that follow each other on a speaker's timeline, one conversion to the
        meeting's channels and one buffer write per run instead of per 20 ms frame
        (measured with bench/pipeline.py: the per-frame numpy calls were most of the
        event loop's CPU). Within a speaker the runs are written in arrival order, so
        a frame that overlaps an earlier one still wins, as it did frame by frame.
        """
        placed: dict[int, list[tuple[int, bytes, int]]] = {}
        while self._inbox:
            frame = self._inbox.popleft()
            self._stats.received += 1
            pcm = frame.pcm
            channels = frame.channels
            if (channels != 1 and channels != 2) or not pcm or len(pcm) % (2 * channels) \
                    or frame.user_id == MIX_USER_ID:
                self._stats.invalid += 1
                continue
            if frame.user_id in self._erased:
                self._stats.erased += 1
                continue
            heard = self.sample_at(frame.arrival) - len(pcm) // (2 * channels)
            key = (frame.user_id, frame.ssrc)
            clock = self._clocks.get(key)
            if clock is None:
                self._held.setdefault(key, []).append((frame, heard))
                continue
            self._place(clock, frame, heard, placed)
        self._release_held(placed, force=release_all)
        self._write(placed)

    def _release_held(self, placed: dict[int, list[tuple[int, bytes, int]]], *, force: bool) -> None:
        """Anchor a new stream on its first frames' smallest delay, then place them.

        A stream's first frames are held until ``HOLD_FRAMES`` have come or the first
        is ``HOLD_S`` old (well inside the flush margin): anchoring on the first frame
        alone would record the speaker late by that frame's network delay, for good.
        """
        now = self.sample_at(self._now)
        for key, items in list(self._held.items()):
            if not (force or len(items) >= HOLD_FRAMES or now - items[0][1] >= HOLD_S * self.grid.sample_rate):
                continue
            del self._held[key]
            # a user's new stream (a rejoin, a reconnect: a new SSRC) replaces their old
            # one's clock, so a member who reconnects all meeting long costs one clock
            for old in [k for k in self._clocks if k[0] == key[0]]:
                del self._clocks[old]
            clock = self._clocks[key] = SpeakerClock()
            clock.anchor_on([(frame.timestamp, heard) for frame, heard in items])
            for frame, heard in items:
                self._place(clock, frame, heard, placed)

    def _place(self, clock: SpeakerClock, frame: VoiceFrame, heard: int,
               placed: dict[int, list[tuple[int, bytes, int]]]) -> None:
        frame_bytes = 2 * frame.channels
        pcm = frame.pcm
        n = len(pcm) // frame_bytes
        pos = clock.place(frame.timestamp, heard, sequence=frame.sequence, samples=n)
        if pos is None:
            self._stats.duplicate += 1
            return
        if pos + n <= 0 or pos >= self._end:
            self._stats.late += 1
            return
        if pos < 0:
            pcm, pos = pcm[-pos * frame_bytes :], 0
        buf = self._buffers.get(frame.user_id)
        if buf is None:
            buf = self._new_buffer(frame.user_id)
            if buf is None:
                self._stats.over_budget += 1
                return
        if pos < buf.floor:
            self._stats.late += 1  # (its samples below the floor are dropped by the write)
        placed.setdefault(frame.user_id, []).append((pos, pcm, frame.channels))

    def _new_buffer(self, user_id: int) -> Optional[TrackBuffer]:
        """A speaker's buffer, if the bot-wide budget admits one more speaker (else None).

        A refused speaker is asked about again with each frame: once a meeting ends and
        its reservations are released, they are recorded from then on.
        """
        budget = self._budget
        if budget is None:
            buf = self._buffers[user_id] = TrackBuffer(self.grid, self.settings.channels)
            return buf
        if not budget.fits(self._cost):
            if user_id not in self._over_budget:
                self._over_budget.add(user_id)
                budget.refused += 1
                log.warning("Meeting %s: speaker %s is not recorded: the bot's audio budget (%d MiB) is full",
                            self.meeting.id, user_id, budget.limit >> 20)
            return None
        budget.reserve(self._cost)
        buf = self._buffers[user_id] = TrackBuffer(self.grid, self.settings.channels, on_alloc=budget.allocated)
        return buf

    def _drop_buffer(self, user_id: int) -> None:
        buf = self._buffers.pop(user_id, None)
        if buf is not None:
            buf.clear()
            if self._budget is not None:
                self._budget.release(self._cost)

    def _drop_buffers(self) -> None:
        for user_id in list(self._buffers):
            self._drop_buffer(user_id)

    def _write(self, placed: dict[int, list[tuple[int, bytes, int]]]) -> None:
        """Write each speaker's placed frames in runs that follow each other on the timeline.

        Frames already at the meeting's channel count (the receiver decodes to it) go
        into the buffer as they are; others are converted once per run.
        """
        want = self.settings.channels
        for user_id, items in placed.items():
            buf = self._buffers.get(user_id)
            if buf is None:
                continue
            i = 0
            while i < len(items):
                pos, pcm, channels = items[i]
                frame_bytes = 2 * channels
                end = pos + len(pcm) // frame_bytes
                j = i + 1
                while j < len(items) and items[j][0] == end and items[j][2] == channels:
                    end += len(items[j][1]) // frame_bytes
                    j += 1
                data = pcm if j == i + 1 else b"".join(p for _, p, _ in items[i:j])
                samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
                buf.write(pos, samples if channels == want else to_channels(samples, want))
                i = j

    # ------------------------------------------------------------------ flushing
    async def _flush_or_hold(self, k: int, length: Optional[int]) -> bool:
        try:
            await self._flush(k, length)
            return True
        except Exception as exc:  # noqa: BLE001 - I/O and store errors are reported, never raised
            self._record_error(k, exc)
            backlog = self.grid.window_of(max(0, self.sample_at(self._now))) - k
            if backlog <= self._max_backlog and not (self._budget is not None and self._budget.over):
                return False  # held in memory and retried (within the backlog and the budget)
            log.error("Meeting %s: giving up window %d after repeated errors: %s",
                      self.meeting.id, k, self._last_error)
            self._stats.windows_lost += 1
            # Some of its files may be on disk without rows (the store failed, not the
            # disk): the counter stops below it, so nothing stands in silence for them
            # before promotion adopts them.
            if self._hole is None:
                self._hole = k
            self._release(k)
            self._next = k + 1
            return True

    def _record_error(self, k: int, exc: BaseException) -> None:
        self._stats.flush_errors += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._error_window != k:
            log.warning("Meeting %s: window %d not written yet: %s", self.meeting.id, k, self._last_error)
            self._error_window = k

    async def _flush(self, k: int, length: Optional[int]) -> None:
        """Write window ``k`` (files, then rows, then the counter). Idempotent."""
        chunks = await run_blocking(self._write_window, k, length)
        body = self.grid.body(k, length)
        mid = self.meeting.id
        for user_id, path in chunks:
            await self._store.insert_temp_recording(
                meeting_id=mid,
                user_id=user_id,
                guild_id=self.meeting.guild_id,
                pcm_path=str(path),
                seq=k,
                start_sample=self.grid.start(k),
                sample_count=body,
                prime_samples=self.grid.prime,
                tail_samples=self.grid.tail,
            )
        if chunks:
            await self._store.ensure_tracks(mid, [u for u, _ in chunks])
        await self._store.set_flushed_windows(mid, k + 1 if self._hole is None else self._hole)
        self._stats.chunks_written += len(chunks)
        self._release(k)
        self._next = k + 1
        if self._error_window == k:
            self._error_window = None
        if self._on_flushed is not None:
            try:
                self._on_flushed(mid)
            except Exception:  # noqa: BLE001
                log.exception("on_flushed hook failed")

    def _write_window(self, k: int, length: Optional[int]) -> list[tuple[int, Path]]:
        """Cut every track's chunk ``k``, mix, and write the non-silent ones (worker thread).

        A chunk that is all zeros, prime and tail included, is not written: the
        assembler stands in a cached encoding of silence, which decodes to the same
        zeros. Quiet speakers and late joiners therefore cost no disk and no encoding.
        The mix of a window where one speaker alone was heard is that speaker's chunk
        (``mix`` of one track is the track): it gets its own name and row, but the same
        file, and one encode serves both (see ``encode_worker``).
        """
        start, end = self.grid.span(k, length)
        pieces: dict[int, np.ndarray] = {}
        for user_id, buf in self._buffers.items():
            pcm = buf.read(start, end)
            if pcm is not None and length is not None and length < end:
                pcm[max(0, length - start) :] = 0  # nothing after the meeting's end
                if not pcm.any():
                    pcm = None
            if pcm is not None:
                pieces[user_id] = pcm
        tracks: dict[int, np.ndarray] = {}
        strategy = self.settings.strategy
        if strategy.wants_per_user:
            tracks.update(pieces)
        # One speaker alone: the mix is their chunk, so it is that file under a second
        # name (a hard link), encoded once (the transcoder shares the MP3 the same way).
        solo = strategy.wants_mix and strategy.wants_per_user and len(pieces) == 1
        if strategy.wants_mix and pieces and not solo:
            mixed = _mix_in_slices(list(pieces.values()))
            if mixed.any():
                tracks[MIX_USER_ID] = mixed
        written: list[tuple[int, Path]] = []
        files: list[tuple[Path, np.ndarray]] = []
        for user_id, pcm in sorted(tracks.items()):
            path = self._layout.pcm_path(self.meeting.id, user_id, k)
            files.append((path, np.ascontiguousarray(pcm)))
            written.append((user_id, path))
        write_all_atomic(files)  # all durable before any row is inserted
        if solo:
            (speaker,) = pieces
            path = self._layout.pcm_path(self.meeting.id, MIX_USER_ID, k)
            link_atomic(self._layout.pcm_path(self.meeting.id, speaker, k), path)
            written.insert(0, (MIX_USER_ID, path))
        return written

    def _release(self, k: int) -> None:
        """After window ``k``: nothing may land before its tail end; keep the next prime."""
        nxt = self.grid.start(k + 1)
        for buf in self._buffers.values():
            buf.release_to(nxt + self.grid.tail, nxt - self.grid.prime)

