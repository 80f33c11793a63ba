"""What each fake speaker says: synthetic signals or any audio file, as 48 kHz stereo.

A source is indexed by the *meeting's* timeline (frame ``i`` is meeting time
``i * 20 ms``), so a test can say what a per-user recording should contain at any
instant without replaying the harness: :meth:`Source.expected` is that answer.

Synthetic signals are rendered with pydub's generators (Sine, and SignalGenerator
subclasses for sweeps and seeded noise) once per distinct signal and looped, because
pydub renders sample by sample in Python: rendering an hour for each of a hundred
speakers would cost more than the meeting. Files are decoded in-process with PyAV
(no ffmpeg binary is assumed), never through pydub's ffmpeg subprocess.

Talk spurts (:class:`Activity`) say which frames a speaker sends at all: a Discord
client sends nothing while its user is quiet, and the recording must still put the
next spurt at the right place.
"""

from __future__ import annotations

import functools
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

with warnings.catch_warnings():
    # pydub warns at import when no ffmpeg binary is on PATH; its generators and
    # AudioSegment arithmetic do not need one, and we never let it spawn ffmpeg.
    warnings.simplefilter("ignore", RuntimeWarning)
    from pydub import AudioSegment
    from pydub.generators import SignalGenerator, Sine

__all__ = [
    "Activity",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Source",
    "SourceError",
    "Sweep",
    "SeededNoise",
    "from_file",
    "noise_bursts",
    "sweep",
    "synthetic_speaker",
    "tone",
]

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
CHANNELS = 2


class SourceError(ValueError):
    """A source that cannot be used; the message names the file and the reason."""


# --------------------------------------------------------------------------- activity
@dataclass(frozen=True)
class Activity:
    """Talk spurts as half-open frame spans ``[start, end)``, sorted and disjoint.

    ``None`` spans means "always talking" (music, a reading, a test tone).
    """

    spans: Optional[tuple[tuple[int, int], ...]] = None

    @classmethod
    def always(cls) -> "Activity":
        return cls(None)

    @classmethod
    def from_seconds(cls, spans: Sequence[tuple[float, float]]) -> "Activity":
        frames = tuple(
            (round(a / FRAME_S), round(b / FRAME_S)) for a, b in sorted(spans) if b > a
        )
        return cls(_merge(frames))

    @classmethod
    def speechlike(
        cls,
        seconds: float,
        *,
        seed: int,
        mean_talk_s: float = 1.6,
        mean_pause_s: float = 0.7,
        min_talk_s: float = 0.3,
        min_pause_s: float = 0.2,
        start_talking: bool = True,
    ) -> "Activity":
        """Alternating talk spurts and pauses with exponential lengths (Brady's on/off model).

        The floors keep spurts long enough to correlate against and pauses long
        enough that a client really stops sending (Discord's VAD hangs over ~200 ms).
        """
        rng = random.Random(seed)
        total = math.ceil(seconds / FRAME_S)
        spans: list[tuple[int, int]] = []
        t = 0 if start_talking else round(max(min_pause_s, rng.expovariate(1 / mean_pause_s)) / FRAME_S)
        while t < total:
            talk = max(min_talk_s, rng.expovariate(1 / mean_talk_s))
            end = min(total, t + max(1, round(talk / FRAME_S)))
            spans.append((t, end))
            pause = max(min_pause_s, rng.expovariate(1 / mean_pause_s))
            t = end + max(1, round(pause / FRAME_S))
        return cls(tuple(spans))

    def active(self, frame: int) -> bool:
        if self.spans is None:
            return True
        return _in_spans(self.spans, frame)

    def mask(self, frames: int) -> np.ndarray:
        """Boolean per frame for ``frames`` frames from t=0."""
        if self.spans is None:
            return np.ones(frames, dtype=bool)
        out = np.zeros(frames, dtype=bool)
        for a, b in self.spans:
            if a >= frames:
                break
            out[a : min(b, frames)] = True
        return out


def _merge(spans: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return tuple(merged)


def _in_spans(spans: tuple[tuple[int, int], ...], frame: int) -> bool:
    lo, hi = 0, len(spans)
    while lo < hi:
        mid = (lo + hi) // 2
        a, b = spans[mid]
        if frame < a:
            hi = mid
        elif frame >= b:
            lo = mid + 1
        else:
            return True
    return False


# --------------------------------------------------------------------------- source
@dataclass
class Source:
    """A speaker's audio on the meeting timeline.

    ``audio`` is int16 ``(n, 2)`` at 48 kHz. With ``loop`` it repeats forever
    (synthetic signals); otherwise the source ends after ``len(audio)`` samples and
    the speaker stops sending, as a file that ran out would.
    """

    name: str
    audio: np.ndarray
    loop: bool = False
    activity: Activity = field(default_factory=Activity.always)
    description: str = ""

    def __post_init__(self) -> None:
        if self.audio.ndim != 2 or self.audio.shape[1] != CHANNELS or self.audio.dtype != np.int16:
            raise SourceError(f"{self.name}: audio must be int16 (n, 2), got {self.audio.dtype} {self.audio.shape}")
        if len(self.audio) == 0:
            raise SourceError(f"{self.name}: the source has no audio")
        self.audio = np.ascontiguousarray(self.audio)

    @property
    def length_frames(self) -> Optional[int]:
        """Frames until the source ends, or None if it loops."""
        if self.loop:
            return None
        return -(-len(self.audio) // FRAME_SAMPLES)

    def ended(self, frame: int) -> bool:
        n = self.length_frames
        return n is not None and frame >= n

    def talking(self, frame: int) -> bool:
        """Whether the speaker sends a packet for this frame (not ended, in a spurt)."""
        return not self.ended(frame) and self.activity.active(frame)

    def frame(self, index: int) -> np.ndarray:
        """The 960 stereo samples of frame ``index`` (zeros past a file's end)."""
        return self.samples(index * FRAME_SAMPLES, FRAME_SAMPLES)

    def samples(self, start: int, count: int) -> np.ndarray:
        """Raw audio ``[start, start+count)`` of the meeting timeline, ignoring activity."""
        n = len(self.audio)
        if self.loop:
            idx = (np.arange(start, start + count) % n) if count > 0 else np.zeros(0, dtype=int)
            looped: np.ndarray = self.audio[idx]
            return looped
        out = np.zeros((count, CHANNELS), dtype=np.int16)
        a, b = max(0, start), min(n, start + count)
        if b > a:
            out[a - start : b - start] = self.audio[a:b]
        return out

    def expected(self, samples: int, *, sent: Optional[np.ndarray] = None) -> np.ndarray:
        """What a faithful recording of this speaker holds for the first ``samples`` samples.

        Frames the speaker did not send (quiet, not yet joined, gone, or ``sent`` False)
        are silence; ``sent`` is a per-frame boolean mask from the harness's log.
        """
        frames = -(-samples // FRAME_SAMPLES)
        mask = self.activity.mask(frames)
        if self.length_frames is not None:
            mask[self.length_frames :] = False
        if sent is not None:
            m = np.zeros(frames, dtype=bool)
            m[: min(frames, len(sent))] = sent[:frames]
            mask &= m
        audio = self.samples(0, frames * FRAME_SAMPLES)
        audio[~np.repeat(mask, FRAME_SAMPLES)] = 0
        return audio[:samples]


# --------------------------------------------------------------------------- generators
class Sweep(SignalGenerator):  # type: ignore[misc]  # pydub ships no types
    """A linear chirp from ``f0`` to ``f1`` over ``period`` seconds, repeating.

    Used instead of a pure tone wherever alignment is measured: a tone correlates
    with itself every period (a few ms), a 1 s chirp only once per second.
    """

    def __init__(self, f0: float, f1: float, period: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.f0, self.f1, self.period = float(f0), float(f1), float(period)

    def generate(self) -> Iterator[float]:
        n_period = round(self.period * self.sample_rate)
        k = (self.f1 - self.f0) / self.period
        n = 0
        while True:
            t = (n % n_period) / self.sample_rate
            yield math.sin(2 * math.pi * (self.f0 * t + 0.5 * k * t * t))
            n += 1


class SeededNoise(SignalGenerator):  # type: ignore[misc]  # pydub ships no types
    """pydub's WhiteNoise draws from the global ``random``; this one is reproducible."""

    def __init__(self, seed: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.seed = seed

    def generate(self) -> Iterator[float]:
        rng = random.Random(self.seed)
        while True:
            yield rng.random() * 2 - 1.0


def _segment_to_stereo(seg: AudioSegment) -> np.ndarray:
    if seg.frame_rate != SAMPLE_RATE or seg.sample_width != 2:
        raise SourceError("generator must render 16-bit 48 kHz audio")
    mono = np.frombuffer(seg.raw_data, dtype="<i2").astype(np.int16)
    if seg.channels == 2:
        return mono.reshape(-1, 2).copy()
    return np.repeat(mono[:, None], 2, axis=1)


@functools.lru_cache(maxsize=64)
def _render(kind: str, params: tuple[float, ...], seconds: float, volume_db: float) -> np.ndarray:
    if kind == "sine":
        gen: SignalGenerator = Sine(params[0], sample_rate=SAMPLE_RATE)
    elif kind == "sweep":
        gen = Sweep(*params, sample_rate=SAMPLE_RATE)
    elif kind == "noise":
        gen = SeededNoise(int(params[0]), sample_rate=SAMPLE_RATE)  # the seed, kept whole by the caller
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    audio = _segment_to_stereo(gen.to_audio_segment(duration=seconds * 1000.0, volume=volume_db))
    audio.setflags(write=False)
    return audio


def tone(freq: float, *, volume_db: float = -18.0, name: Optional[str] = None,
         activity: Optional[Activity] = None) -> Source:
    """A looping sine at ``freq`` Hz (rendered for one second: whole cycles for integer Hz)."""
    if not 20 <= freq <= 20_000:
        raise SourceError(f"tone frequency {freq} Hz is outside 20 Hz-20 kHz")
    audio = _render("sine", (float(freq),), 1.0, volume_db)
    return Source(name or f"tone{freq:g}", audio, loop=True,
                  activity=activity or Activity.always(), description=f"{freq:g} Hz tone")


def sweep(f0: float, f1: float, *, period_s: float = 1.0, volume_db: float = -18.0,
          name: Optional[str] = None, activity: Optional[Activity] = None) -> Source:
    """A looping chirp ``f0``→``f1`` Hz, one chirp per ``period_s``."""
    for f in (f0, f1):
        if not 20 <= f <= 20_000:
            raise SourceError(f"sweep frequency {f} Hz is outside 20 Hz-20 kHz")
    n = period_s * SAMPLE_RATE
    if abs(n - round(n)) > 1e-6 or round(n) % FRAME_SAMPLES or n <= 0:
        raise SourceError("the sweep period must be a whole number of 20 ms frames")
    audio = _render("sweep", (float(f0), float(f1), float(period_s)), period_s, volume_db)
    return Source(name or f"sweep{f0:g}-{f1:g}", audio, loop=True,
                  activity=activity or Activity.always(),
                  description=f"{f0:g}-{f1:g} Hz sweep every {period_s:g} s")


def noise_bursts(seconds: float, *, seed: int, volume_db: float = -24.0,
                 name: Optional[str] = None, loop_s: float = 3.0) -> Source:
    """Seeded white noise in speech-like talk spurts (nothing is sent between them)."""
    audio = _render("noise", (int(seed),), loop_s, volume_db)
    return Source(name or f"noise{seed}", audio, loop=True,
                  activity=Activity.speechlike(seconds, seed=seed),
                  description="noise bursts in talk spurts")


#: Bands of the default synthetic speakers: disjoint, so no speaker's file can
#: correlate with another's source, and inside the MP3 encoder's passband.
_BANDS: tuple[tuple[float, float], ...] = (
    (220.0, 520.0), (600.0, 950.0), (1050.0, 1450.0), (1550.0, 2000.0),
    (2100.0, 2600.0), (2700.0, 3300.0), (3400.0, 4100.0), (4200.0, 5000.0),
)


def synthetic_speaker(index: int, seconds: float, *, seed: int = 0, talk_spurts: bool = True,
                      volume_db: float = -18.0) -> Source:
    """The ``index``-th default speaker: a chirp in its own band, talking in spurts.

    A chirp sweeps its whole band every 0.2-0.36 s, so any 0.2 s of it has a few
    hundred Hz of bandwidth: its correlation peak is a couple of ms wide and the
    next one is a period away, which is what lets a test measure alignment to well
    under 5 ms. Speakers beyond the distinct bands reuse a band with another period.
    """
    f0, f1 = _BANDS[index % len(_BANDS)]
    period = (0.2, 0.24, 0.28, 0.32, 0.36)[(index // len(_BANDS)) % 5]
    activity = (Activity.speechlike(seconds, seed=seed * 1_000_003 + index)
                if talk_spurts else Activity.always())
    return sweep(f0, f1, period_s=period, volume_db=volume_db, name=f"speaker{index + 1}",
                 activity=activity)


# --------------------------------------------------------------------------- files
def from_file(path: Path | str, *, name: Optional[str] = None,
              max_seconds: Optional[float] = None) -> Source:
    """Decode any audio file PyAV can read and resample it to 48 kHz stereo s16."""
    import av  # imported here: only file sources need it, and it is heavy

    p = Path(path)
    label = name or p.stem
    if not p.is_file():
        raise SourceError(f"{label}: no such file: {p}")
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    have = 0
    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                raise SourceError(f"{label}: {p} has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)

            def take(frames: list[av.AudioFrame]) -> None:
                nonlocal have
                for f in frames:
                    arr = f.to_ndarray().reshape(-1, CHANNELS)
                    parts.append(arr)
                    have += len(arr)

            for frame in container.decode(stream):
                take(resampler.resample(frame))
                if limit is not None and have >= limit:
                    break
            else:
                take(resampler.resample(None))
    except SourceError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SourceError(f"{label}: cannot decode {p}: {exc}") from None
    if not parts:
        raise SourceError(f"{label}: {p} decodes to no audio")
    audio = np.concatenate(parts).astype(np.int16, copy=False)
    if limit is not None:
        audio = audio[:limit]
    return Source(label, audio, loop=False, activity=Activity.always(), description=str(p))
