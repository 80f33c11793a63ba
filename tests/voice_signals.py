"""Signals and measurements shared by the voice-wire tests (tests/test_voice_*.py)."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from chunkrecorder.audio.opus import CODEC_DELAY_SAMPLES, FRAME_SAMPLES
from chunkrecorder.objects import VoiceFrame

RATE = 48_000


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Voiced-speech-like mono int16: a gliding pitch with harmonics and syllable envelope.

    Not periodic over more than a few ms, so a correlation peak can only be at the
    true alignment, and different seeds give uncorrelated signals.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    knots = rng.uniform(110, 260, size=max(2, int(seconds * 8) + 2))
    f0 = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    amps = rng.uniform(0.2, 1.0, size=6) / np.arange(1, 7)
    x = sum(a * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps, start=1))
    syll = np.interp(np.arange(n), np.linspace(0, n, int(seconds * 5) + 2), rng.uniform(0.3, 1.0, int(seconds * 5) + 2))
    x = x * syll
    return (x / np.max(np.abs(x)) * 12000).astype(np.int16)


def frames_of(mono: np.ndarray) -> list[bytes]:
    """20 ms frames of 48 kHz stereo s16le (the same signal on both channels)."""
    usable = len(mono) // FRAME_SAMPLES * FRAME_SAMPLES
    stereo = np.repeat(mono[:usable, None], 2, axis=1)
    return [stereo[i : i + FRAME_SAMPLES].tobytes() for i in range(0, usable, FRAME_SAMPLES)]


def assemble(frames: Iterable[VoiceFrame], *, first_timestamp: int, length: int) -> np.ndarray:
    """One user's frames placed by RTP timestamp (left channel, float), zeros elsewhere."""
    out = np.zeros(length, dtype=np.float64)
    for f in frames:
        pos = (f.timestamp - first_timestamp) % (1 << 32)
        pcm = np.frombuffer(f.pcm, dtype=np.int16).reshape(-1, 2)[:, 0]
        end = min(length, pos + len(pcm))
        if pos < length:
            out[pos:end] = pcm[: end - pos]
    return out


def correlation(source: np.ndarray, decoded: np.ndarray, *, delay: int = CODEC_DELAY_SAMPLES,
                mask: Sequence[bool] | None = None) -> float:
    """Pearson correlation of ``source`` with ``decoded`` shifted back by the codec delay.

    ``mask`` (per 20 ms frame of the source, True = compare) leaves out frames that were
    not delivered intact. The first 20 ms is skipped: the decoder is still warming up.
    """
    n = min(len(source), len(decoded) - delay)
    s = source[:n].astype(np.float64)
    d = decoded[delay : delay + n]
    keep = np.ones(n, dtype=bool)
    keep[:FRAME_SAMPLES] = False
    if mask is not None:
        per_sample = np.repeat(np.asarray(mask, dtype=bool), FRAME_SAMPLES)[:n]
        keep[: len(per_sample)] &= per_sample
        keep[len(per_sample):] = False
    if keep.sum() < FRAME_SAMPLES:
        raise AssertionError("nothing left to compare")
    return float(np.corrcoef(s[keep], d[keep])[0, 1])


def best_lag(source: np.ndarray, decoded: np.ndarray, max_lag: int = 2000) -> int:
    """The shift (in samples) at which ``decoded`` best matches ``source``."""
    n = min(len(source), len(decoded)) - max_lag
    s = source[:n].astype(np.float64)
    scores = [float(np.dot(s, decoded[lag : lag + n])) for lag in range(max_lag)]
    return int(np.argmax(scores))
