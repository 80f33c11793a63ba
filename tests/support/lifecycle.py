"""Checking promoted MP3s against what the harness's speakers said.

The reference for a user's recording is their source where the harness delivered
their frames intact (silence where they were quiet, absent, reconnecting, or their
packet was lost), shifted by the Opus encoder's look-ahead (6.5 ms, the same for
every speaker and unavoidable on Discord). Around frames that were lost or damaged
the receiver conceals or leaves a hole, and MP3 smears either over a frame, so those
stretches are masked out of every comparison.

Alignment is measured by cross-correlating short windows of a recording with the
reference over lags of +-50 ms: the lag of the peak is how far that part of the
recording sits from where it belongs. It is measured at t=0 and around every chunk
boundary, where a cutting or joining error would show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from chunkrecorder.audio import mp3
from chunkrecorder.audio.opus import CODEC_DELAY_SAMPLES
from chunkrecorder.pipeline.timeline import Grid
from harness.impairments import Fate
from harness.simulate import SimulationResult
from harness.sources import FRAME_SAMPLES, SAMPLE_RATE, Source

from .signals import SEARCH, TOLERANCE, WINDOW, boundaries, decode_file, lag_at, snr_db

__all__ = ["TOLERANCE", "SEARCH", "WINDOW", "Track", "Verdict", "alignment", "best_corr", "check_meeting",
           "decode_file", "meeting_boundaries", "reference", "snr_db", "source_reference", "track"]



def _mono(stereo: np.ndarray) -> np.ndarray:
    return stereo.astype(np.float64).mean(axis=1)


@dataclass
class Track:
    """One user's recording next to its reference and the mask of comparable samples."""

    user_id: int
    recording: np.ndarray
    reference: np.ndarray
    mask: np.ndarray

    def lag_at(self, at: int, *, window: int = WINDOW, search: int = SEARCH) -> Optional[int]:
        """Samples by which the recording trails its reference around ``at`` (None: quiet there)."""
        lag = lag_at(self.recording, self.reference, at, mask=self.mask, window=window, search=search)
        return None if lag is None else lag.samples

    def corr(self, other: Optional[np.ndarray] = None) -> float:
        ref = self.reference if other is None else other
        n = min(len(self.recording), len(ref))
        m = self.mask[:n]
        a, b = self.recording[:n][m], ref[:n][m]
        den = np.sqrt(np.dot(a, a) * np.dot(b, b))
        return float(np.dot(a, b) / den) if den else 0.0


def source_reference(source: Source, samples: int, sent: Optional[np.ndarray] = None) -> np.ndarray:
    """A source as a faithful mono recording of it: silent where not sent, codec-delayed."""
    frames = -(-samples // FRAME_SAMPLES) + 1
    expected = _mono(source.expected(frames * FRAME_SAMPLES, sent=sent))
    shifted = np.zeros(samples + CODEC_DELAY_SAMPLES)
    shifted[CODEC_DELAY_SAMPLES:] = expected[:samples]
    return shifted[:samples]


def reference(result: SimulationResult, user_id: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(expected mono signal, comparable-sample mask) for ``user_id`` over ``samples``."""
    net = result.network
    assert net is not None
    fates = net.fates(user_id)
    frames = -(-samples // FRAME_SAMPLES) + 1
    fates = np.concatenate([fates, np.zeros(max(0, frames - len(fates)), dtype=fates.dtype)])[:frames]
    plan = next(p for p in result.plans if p.user_id == user_id)
    shifted = source_reference(plan.source, samples, fates == Fate.DELIVERED)
    # Mask every frame the network lost or damaged, the next one (Opus's overlap with
    # the concealed frame) and an MP3 frame either side (the encoder smears over one).
    bad = (fates == Fate.LOST) | (fates == Fate.CORRUPT)
    mask = np.ones(samples, dtype=bool)
    for k in np.flatnonzero(bad):
        a = max(0, k * FRAME_SAMPLES + CODEC_DELAY_SAMPLES - mp3.FRAME)
        b = min(samples, (k + 2) * FRAME_SAMPLES + CODEC_DELAY_SAMPLES + mp3.FRAME)
        mask[a:b] = False
    return shifted, mask


def track(result: SimulationResult, user_id: int) -> Track:
    rec = decode_file(result.recording_for(user_id).path)
    ref, mask = reference(result, user_id, len(rec))
    return Track(user_id, rec, ref, mask)


def meeting_boundaries(result: SimulationResult, flush_interval_s: float) -> list[int]:
    """t=0 and every chunk boundary inside the simulated meeting, in samples."""
    return boundaries(Grid.for_interval(flush_interval_s), int(result.seconds * SAMPLE_RATE))


def alignment(tracks: Sequence[Track], points: Sequence[int]) -> dict[tuple[int, int], int]:
    """Lag of every track at every point where it is audible."""
    out = {}
    for t in tracks:
        for p in points:
            lag = t.lag_at(p)
            if lag is not None:
                out[(t.user_id, p)] = lag
    return out


# --------------------------------------------------------------------------- the checks
def best_corr(t: Track, other: Optional[np.ndarray] = None, *, search: int = TOLERANCE) -> float:
    """Masked correlation with a reference at the best lag within ``search`` samples.

    Waveform correlation of two signals a couple of samples apart falls fast at a few
    kHz (Opus's delay is 310, not exactly 312, samples at some frequencies), so
    content is compared at its best alignment; *where* that is, is the alignment
    check's job.
    """
    ref = t.reference if other is None else other
    n = min(len(t.recording), len(ref))
    m = t.mask[:n]
    b = np.where(m, ref[:n], 0.0)
    a = np.where(m, t.recording[:n], 0.0)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.concatenate([xc[: search + 1], xc[-search:]])  # lags 0..s, then -s..-1
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if not den:
        return 0.0
    best = lags[int(np.argmax(np.abs(lags)))]
    return float(best / den)


@dataclass
class Verdict:
    tracks: list[Track]
    lags: dict[tuple[int, int], int]
    points: list[int]
    mix_snr_db: Optional[float]


def check_meeting(result: SimulationResult, flush_interval_s: float, *, min_corr: float = 0.9,
                  users: Optional[Sequence[int]] = None, mix: bool = True) -> Verdict:
    """Everything a user would check in a promoted meeting's files; asserts as it goes."""
    assert result.status == "PROMOTED", result
    assert result.chunks.get("FAILED", 0) == 0, result.chunks
    assert result.failed_chunks == 0
    # The meeting lasts from start to stop: the sources' length, plus the time the harness
    # waited for delayed packets before stopping (a jittery network's last packets).
    length = int(round(result.length_ms * SAMPLE_RATE / 1000))
    assert 0 <= length - int(round(result.seconds * SAMPLE_RATE)) <= SAMPLE_RATE // 10, (
        result.length_ms, result.seconds)
    users = [p.user_id for p in result.plans] if users is None else list(users)
    kinds = sorted((r.kind, r.user_id) for r in result.recordings)
    expected_kinds = sorted([("per_user", u) for u in users] + ([("mixed", None)] if mix else []),
                            key=lambda x: (x[0], x[1] or 0))
    assert sorted(kinds, key=lambda x: (x[0], x[1] or 0)) == expected_kinds

    tracks = [track(result, u) for u in users]
    for t, info in zip(tracks, [result.recording_for(u) for u in users]):
        # Every track spans the whole meeting (silence where the speaker was not).
        assert abs(len(t.recording) - length) < mp3.FRAME, (t.user_id, len(t.recording), length)
        assert abs(info.duration_ms - len(t.recording) * 1000 / SAMPLE_RATE) <= 1
        assert Path(info.path).stat().st_size == info.size_bytes

    points = meeting_boundaries(result, flush_interval_s)
    lags = alignment(tracks, points)
    off = {k: v for k, v in lags.items() if abs(v) > TOLERANCE}
    assert not off, f"misaligned (user, sample) -> lag in samples: {off}"
    for p in points:
        assert any(pt == p for (_, pt) in lags), f"nobody audible around sample {p} to align"

    for t in tracks:
        own = best_corr(t)
        assert own > min_corr, (t.user_id, own)
        for other in tracks:
            if other is not t:
                cross = best_corr(t, other.reference)
                assert abs(cross) < 0.05, f"crosstalk: {t.user_id}'s file has {other.user_id} in it ({cross:.3f})"

    mix_snr = None
    if mix:
        mixed = decode_file(result.recording_for(None).path)
        assert abs(len(mixed) - length) < mp3.FRAME
        total = sum(t.recording for t in tracks)
        mix_snr = snr_db(mixed, total)
        assert mix_snr > 20.0, f"the mix is not the sum of the speakers ({mix_snr:.1f} dB)"
    return Verdict(tracks, lags, points, mix_snr)
