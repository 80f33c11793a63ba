"""The meeting's timeline: where chunks are cut, where each frame lands, and the buffers.

Everything here is plain, synchronous and driven by the session; tests drive it directly.

* :class:`Grid` cuts the timeline into windows on the MP3 frame grid, identical for
  every track, so chunk ``k`` of every speaker and of the mix covers the same samples.
* :class:`SpeakerClock` maps one SSRC's RTP timestamps onto the timeline. Within a
  talkspurt the RTP clock is trusted (it is sample-exact; arrival times carry network
  jitter), but it is re-anchored to arrival time whenever the two disagree by more
  than a tolerance, so a speaker's track can never drift from the wall clock by more
  than that, whatever their client's clock does.
* :class:`TrackBuffer` holds one speaker's audio for the windows not yet flushed, in
  window-sized blocks allocated only where audio lands: memory is bounded by the flush
  interval, and a speaker who is quiet or not yet present costs nothing.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..audio.mp3 import FRAME, PRIME_SAMPLES, TAIL_SAMPLES
from ..objects.frames import SAMPLE_RATE

__all__ = ["Grid", "SpeakerClock", "TrackBuffer"]

_WRAP = 1 << 32
_HALF = 1 << 31


@dataclass(frozen=True, slots=True)
class Grid:
    """Windows ``[B_k, B_{k+1})`` with ``B_k = k * chunk_samples`` on the 1152-sample grid."""

    chunk_samples: int
    prime: int = PRIME_SAMPLES
    tail: int = TAIL_SAMPLES
    sample_rate: int = SAMPLE_RATE

    @classmethod
    def for_interval(cls, flush_interval_s: float, sample_rate: int = SAMPLE_RATE) -> "Grid":
        frames = max(1, round(flush_interval_s * sample_rate / FRAME))
        return cls(chunk_samples=frames * FRAME, sample_rate=sample_rate)

    @property
    def chunk_frames(self) -> int:
        return self.chunk_samples // FRAME

    def start(self, k: int) -> int:
        return k * self.chunk_samples

    def window_of(self, sample: int) -> int:
        return sample // self.chunk_samples

    def windows_for(self, length: int) -> int:
        """How many windows a meeting of ``length`` samples has (the last may be partial)."""
        return -(-max(0, length) // self.chunk_samples)

    def body(self, k: int, length: Optional[int] = None) -> int:
        """Samples of window ``k`` that belong to the meeting (all of them until it ends)."""
        if length is None:
            return self.chunk_samples
        return max(0, min(self.chunk_samples, length - self.start(k)))

    def span(self, k: int, length: Optional[int] = None) -> tuple[int, int]:
        """Timeline range a chunk's PCM covers: prime before the window, tail after its body."""
        return self.start(k) - self.prime, self.start(k) + self.body(k, length) + self.tail

    def due_at(self, k: int) -> int:
        """First timeline sample at which window ``k`` has all its audio (body and tail)."""
        return self.start(k + 1) + self.tail

    def seconds(self, samples: int) -> float:
        return samples / self.sample_rate


class SpeakerClock:
    """Places one SSRC's frames on the timeline from RTP timestamps, anchored to arrival.

    ``heard`` is where arrival time puts a frame (its arrival minus its own length:
    a frame is sent once its 20 ms have been captured). The anchor ``A`` maps the
    unwrapped RTP timestamp ``ts`` to ``ts + A``. It is set by the first frame and
    set from the smallest delay among a stream's first frames (``anchor_on``: the
    session holds them briefly, because the first frame alone may carry a whole
    jitter's worth of delay and everything after would be recorded that late), or by
    the first frame when ``place`` comes first. It is moved only when arrival proves it
    wrong: at the start of a talkspurt by more than ``tolerance`` (the silence hides
    the jump), at once when a frame arrives more than ``early_tolerance`` before its
    place (network delay cannot make a frame early, so the anchor was late), or when
    every frame of a whole check period arrived late by more than ``tolerance`` and at
    the pace of their timestamps (the sender's clock is slow or its timestamps stood
    still; a backlog drained after the bot's process froze arrives faster, and stays
    where its timestamps put it). Jitter alone never moves it later.

    A talkspurt starts where the sender paused: both its RTP timestamp and the arrival
    time jumped by more than ``talkspurt_gap``. Arrival alone jumping is a delivery
    stall (a starved process reads its socket late, a reconnect replays what it held):
    those frames follow on from the ones before them, and moving the anchor on the
    first of them would leave a hole there and write the rest of the burst over itself
    as each one, arriving "early", pulled the anchor back. Timestamps that stood still
    over a silence look the same at first; the check period re-anchors them.

    Duplicates (a packet delivered twice) are recognised by their timestamp and, when
    the caller gives it, their RTP sequence number, among the last ``SEEN`` frames: a
    ring of keys and a set, O(1) per frame and bounded memory whatever the timestamps
    do (issue 8: rebuilding a set of every timestamp seen cost 1.2 ms per frame after
    20 minutes of a sender whose timestamp advanced by 1). A sender whose timestamp
    stands still, or advances by less than a frame's samples from one sequence number
    to the next, is not placed by it: its clock says nothing, so such a frame is placed
    by its arrival (``heard``) and counted in ``unusable``; its frames are kept, in the
    order and at the pace they came, instead of piling up on one instant.
    """

    #: How many recent frames duplicates are looked for among (~82 s of 20 ms frames).
    SEEN = 4096

    def __init__(
        self,
        *,
        tolerance: int = int(0.04 * SAMPLE_RATE),
        early_tolerance: int = int(0.002 * SAMPLE_RATE),
        talkspurt_gap: int = int(0.2 * SAMPLE_RATE),
        check_every: int = 50,
    ) -> None:
        self.tolerance = tolerance
        self.early_tolerance = early_tolerance
        self.talkspurt_gap = talkspurt_gap
        self.check_every = check_every
        self.anchor: Optional[int] = None
        self.reanchors = 0
        self._last_raw = 0
        self._top = 0
        self._last_heard: Optional[int] = None
        self._late_min: Optional[int] = None
        self._late_count = 0
        self._period_from = (0, 0)  # (ext, heard) of the check period's first frame
        self._seen: set[int] = set()
        self._seen_order: collections.deque[int] = collections.deque()
        self._prev: Optional[tuple[int, int]] = None  # (sequence, ext) of the last frame placed
        self.unusable = 0

    def _unwrap(self, timestamp: int) -> int:
        if self.anchor is None:
            self._last_raw, self._top = timestamp & 0xFFFFFFFF, 0
            return 0
        diff = (timestamp - self._last_raw) & 0xFFFFFFFF
        if diff >= _HALF:
            diff -= _WRAP
        ext = self._top + diff
        if diff > 0:
            self._last_raw, self._top = timestamp & 0xFFFFFFFF, ext
        return ext

    def anchor_on(self, frames: Sequence[tuple[int, int]]) -> None:
        """Anchor on the least-delayed of a stream's first ``(timestamp, heard)`` pairs.

        Their order does not matter: the first pair only fixes the unwrap's origin.
        """
        if self.anchor is not None or not frames:
            return
        self._last_raw, self._top = frames[0][0] & 0xFFFFFFFF, 0
        self.anchor = 0  # so _unwrap measures from the origin instead of resetting
        exts = [self._unwrap(ts) for ts, _ in frames]
        self.anchor = min(heard - ext for ext, (_, heard) in zip(exts, frames))
        self._last_heard = max(heard for _, heard in frames)

    def _remember(self, key: int) -> bool:
        """Record a frame's key; False if it was among the last ``SEEN`` (a duplicate)."""
        if key in self._seen:
            return False
        self._seen.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > self.SEEN:
            self._seen.discard(self._seen_order.popleft())
        return True

    def place(self, timestamp: int, heard: int, *, sequence: Optional[int] = None,
              samples: Optional[int] = None) -> Optional[int]:
        """Timeline sample where this frame starts, or None for a duplicate.

        ``sequence`` (the RTP sequence number) and ``samples`` (the frame's length) let
        a duplicate be told from a sender whose timestamp stands still (see the class).
        """
        top = self._top
        ext = self._unwrap(timestamp)
        # (ext, sequence) packed in one int: half the memory of a tuple (4,096 per speaker)
        key = ext * 0x20000 + (0x10000 if sequence is None else sequence & 0xFFFF)
        if self.anchor is None:
            self.anchor = heard - ext
            self._last_heard = heard
            self._remember(key)
            self._prev = None if sequence is None else (sequence & 0xFFFF, ext)
            return ext + self.anchor
        if not self._remember(key):
            return None
        if sequence is not None:
            prev, self._prev = self._prev, (sequence & 0xFFFF, ext)
            if (prev is not None and samples is not None and (sequence - prev[0]) & 0xFFFF == 1
                    and ext - prev[1] < samples):
                self.unusable += 1  # the timestamp did not move as the audio did
                self._last_heard = heard if self._last_heard is None else max(self._last_heard, heard)
                return heard
        d = heard - (ext + self.anchor)
        new_spurt = (self._last_heard is not None and heard - self._last_heard > self.talkspurt_gap
                     and ext - top > self.talkspurt_gap)
        self._last_heard = heard if self._last_heard is None else max(self._last_heard, heard)
        if (new_spurt and abs(d) > self.tolerance) or d < -self.early_tolerance:
            self._move(d)
        else:
            self._late_min = d if self._late_min is None else min(self._late_min, d)
            if self._late_count == 0:
                self._period_from = (ext, heard)
            self._late_count += 1
            if self._late_count >= self.check_every:
                if self._late_min > self.tolerance and self._kept_pace(ext, heard):
                    self._move(self._late_min)
                self._late_min, self._late_count = None, 0
        return ext + self.anchor

    def _kept_pace(self, ext: int, heard: int) -> bool:
        """Whether this check period's frames arrived at the pace their timestamps
        advanced (within ``tolerance``): a slow sender clock, or timestamps that stood
        still, give late frames at real-time pace. A backlog drained after a stall (the
        bot's process froze, then read its socket) arrives faster than that, late by
        less and less, and its frames belong at their timestamps."""
        ext0, heard0 = self._period_from
        return heard - heard0 >= ext - ext0 - self.tolerance

    def _move(self, by: int) -> None:
        assert self.anchor is not None
        self.anchor += by
        self.reanchors += 1
        self._late_min, self._late_count = None, 0


class TrackBuffer:
    """One speaker's not-yet-flushed audio in window-sized blocks (int16, (n, channels)).

    ``floor`` is the first sample still writable: everything before it has been
    flushed, and a frame arriving that late is dropped (counted by the caller) rather
    than written into a window whose chunk is already on disk.
    """

    def __init__(self, grid: Grid, channels: int, on_alloc: Optional[Callable[[int], None]] = None) -> None:
        self.grid = grid
        self.channels = channels
        self.floor = 0
        self._blocks: dict[int, np.ndarray] = {}
        #: told every block's bytes when it is allocated (+) and freed (-): the audio budget
        self._on_alloc = on_alloc
        self._block_bytes = grid.chunk_samples * channels * 2

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._blocks.values())

    def write(self, pos: int, pcm: np.ndarray) -> int:
        """Overwrite ``[pos, pos+len)``; returns how many samples fell below the floor."""
        n = len(pcm)
        dropped = 0
        if pos < self.floor:
            dropped = min(n, self.floor - pos)
            pcm = pcm[dropped:]
            pos += dropped
        size = self.grid.chunk_samples
        while len(pcm):
            b, off = divmod(pos, size)
            take = min(len(pcm), size - off)
            block = self._blocks.get(b)
            if block is None:
                block = self._blocks[b] = np.zeros((size, self.channels), dtype=np.int16)
                if self._on_alloc is not None:
                    self._on_alloc(self._block_bytes)
            block[off : off + take] = pcm[:take]
            pcm = pcm[take:]
            pos += take
        return dropped

    def read(self, start: int, end: int) -> Optional[np.ndarray]:
        """Samples ``[start, end)`` (zeros where nothing was heard), or None if all silent."""
        size = self.grid.chunk_samples
        first, last = max(0, start) // size, max(0, end - 1) // size
        if not any(b in self._blocks for b in range(first, last + 1)):
            return None
        out = np.zeros((end - start, self.channels), dtype=np.int16)
        for b in range(first, last + 1):
            block = self._blocks.get(b)
            if block is None:
                continue
            lo, hi = max(start, b * size), min(end, (b + 1) * size)
            if lo < hi:
                out[lo - start : hi - start] = block[lo - b * size : hi - b * size]
        if not out.any():
            return None
        return out

    def release_to(self, floor: int, keep_from: int) -> None:
        """Raise the writable floor to ``floor`` but keep blocks holding ``keep_from`` onwards."""
        self.floor = max(self.floor, floor)
        size = self.grid.chunk_samples
        for b in [b for b in self._blocks if (b + 1) * size <= keep_from]:
            del self._blocks[b]
            if self._on_alloc is not None:
                self._on_alloc(-self._block_bytes)

    def clear(self) -> None:
        """Free every block (the meeting ended, or the speaker's data was erased)."""
        if self._on_alloc is not None and self._blocks:
            self._on_alloc(-self._block_bytes * len(self._blocks))
        self._blocks.clear()

