"""Test signals and the measurements every area uses to compare audio with its source.

One definition each of the things the voice, pipeline and lifecycle tests all need:
a speech-like source, 20 ms frames of it, decoding a promoted file, and the three
measurements a user's ear stands in for: where a stretch of audio sits (``lag_at``),
how much of it is the source (``correlation``, ``snr_db``), and where the chunk
joins are (``boundaries``), since a cutting or joining error shows there first.

Signals are speech-like (gliding pitch with harmonics, syllable envelope): never
periodic over more than a few ms, so a correlation peak can only sit at the true
alignment, and different seeds are uncorrelated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple, Optional, Sequence

import numpy as np

from chunkrecorder.audio import id3, mp3
from chunkrecorder.audio.opus import CODEC_DELAY_SAMPLES, FRAME_SAMPLES
from chunkrecorder.objects import VoiceFrame
from chunkrecorder.pipeline.timeline import Grid

RATE = 48_000
#: Alignment tolerance the issues ask for: 5 ms.
TOLERANCE = int(0.005 * RATE)
#: ``lag_at``'s correlation window and the lags it searches either side.
WINDOW = int(0.2 * RATE)
SEARCH = int(0.05 * RATE)


def speech_like(seconds: float, seed: int, *, peak: int = 12_000) -> np.ndarray:
    """Voiced-speech-like mono int16 of ``seconds`` at 48 kHz."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    knots = rng.uniform(110, 260, size=max(2, int(seconds * 8) + 2))
    f0 = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    amps = rng.uniform(0.2, 1.0, size=6) / np.arange(1, 7)
    x = sum(a * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps, start=1))
    m = int(seconds * 5) + 2
    env = np.interp(np.arange(n), np.linspace(0, n, m), rng.uniform(0.3, 1.0, m))
    x = x * env
    return (x / np.max(np.abs(x)) * peak).astype(np.int16)


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
        pcm = np.frombuffer(f.pcm, dtype=np.int16).reshape(-1, f.channels)[:, 0]
        end = min(length, pos + len(pcm))
        if pos < length:
            out[pos:end] = pcm[: end - pos]
    return out


def decode_file(path: str | Path, channels: int = 1) -> np.ndarray:
    """A promoted MP3 as float64 mono at 48 kHz (channels averaged), untrimmed: what a player hears
    (a player skips an ID3v2 tag before the first frame, as the mix's chapters)."""
    if str(path).endswith(".flac"):  # the lossless archive (issue 14): FFmpeg's binary, errors fatal
        return ffmpeg_decode_flac(path, channels).astype(np.float64).mean(axis=1)
    data = Path(path).read_bytes()
    pcm = mp3.decode(data[id3.tag_length(data[: id3.HEADER_SIZE]):], channels=channels)
    return pcm.astype(np.float64).mean(axis=1)


def ffmpeg_decode_flac(path: str | Path, channels: int = 1) -> np.ndarray:
    """A FLAC file decoded by the FFmpeg binary (CRCs checked, any error fails) to int16 ``(n, channels)``."""
    import subprocess

    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-err_detect", "crccheck", "-i", str(path),
                          "-f", "s16le", "-ac", str(channels), "-"], capture_output=True, timeout=50)
    assert out.returncode == 0 and not out.stderr, out.stderr.decode(errors="replace")
    return np.frombuffer(out.stdout, dtype="<i2").reshape(-1, channels)


def read_pcm(path: str | Path, channels: int = 1) -> np.ndarray:
    """A chunk's PCM file as int16 (n, channels)."""
    return np.frombuffer(Path(path).read_bytes(), dtype="<i2").reshape(-1, channels)


def boundaries(grid: Grid, length: int) -> list[int]:
    """t=0 and every chunk boundary inside a meeting of ``length`` samples."""
    return [grid.start(k) for k in range(grid.windows_for(length))]


class Lag(NamedTuple):
    """Where a stretch of a recording sits against its reference."""

    samples: int  # positive: the recording is late
    corr: float  # normalised correlation at that lag


def lag_at(recording: np.ndarray, reference: np.ndarray, at: int, *,
           mask: Optional[np.ndarray] = None, window: int = WINDOW, search: int = SEARCH) -> Optional[Lag]:
    """The lag of ``recording`` against ``reference`` around sample ``at``; None if quiet there.

    The window starts at ``at`` for t=0 and straddles it otherwise, so audio on both
    sides of a join must line up for the peak to be sharp and at zero. Samples where
    ``mask`` is False (frames lost or damaged on the way) are left out; where they leave
    less than half of the window to compare, it widens.
    """
    if mask is not None:
        while window < 4 * WINDOW:
            start = at if at == 0 else at - window // 2
            if mask[max(0, start) : max(0, start) + window].mean() >= 0.5:
                break
            window *= 2
    start = at if at == 0 else at - window // 2
    start = max(0, min(start, len(reference) - window - search))
    ref = reference[start : start + window].astype(np.float64)
    if mask is not None:
        ref = ref * mask[start : start + window]
    if np.dot(ref, ref) < 1e3 * len(ref):  # quiet there: nothing to align
        return None
    lo = max(0, start - search)
    hi = min(len(recording), start + window + search)
    seg = recording[lo:hi].astype(np.float64)
    if len(seg) < len(ref):
        return None
    scores = np.correlate(seg, ref, mode="valid")
    best = int(np.argmax(scores))
    hit = seg[best : best + len(ref)]
    corr = float(np.dot(hit, ref) / (np.sqrt(np.dot(hit, hit) * np.dot(ref, ref)) + 1e-9))
    return Lag(best + lo - start, corr)


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


def snr_db(signal: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """How much of ``signal`` is ``reference`` (dB), over the samples ``mask`` keeps."""
    n = min(len(signal), len(reference))
    a, b = signal[:n].astype(np.float64), reference[:n].astype(np.float64)
    if mask is not None:
        a, b = a[mask[:n]], b[mask[:n]]
    noise = a - b
    return float(10 * np.log10(max(np.dot(b, b), 1e-9) / max(np.dot(noise, noise), 1e-9)))
