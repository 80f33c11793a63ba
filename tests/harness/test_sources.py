"""Harness sources: what fake speakers say must be exactly what tests later compare against."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from harness import sources
from harness.sources import FRAME_SAMPLES, SAMPLE_RATE, Activity, Source, SourceError


def _dominant_hz(x: np.ndarray) -> float:
    mono = x[:, 0].astype(np.float64)
    spec = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spec) * SAMPLE_RATE / len(mono))


def _write_audio(path: Path, pcm: np.ndarray, rate: int, codec: str) -> None:
    """Write mono int16 ``pcm`` at ``rate`` with PyAV (no ffmpeg binary here)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        fmt = "s16p" if codec == "libmp3lame" else "s16"
        if codec == "flac":
            fmt = "s16"
        stream.format = fmt
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format=fmt, layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_tone_is_the_asked_frequency_in_both_channels_at_the_asked_level() -> None:
    src = sources.tone(440, volume_db=-20)
    x = src.samples(0, SAMPLE_RATE)
    assert x.shape == (SAMPLE_RATE, 2) and x.dtype == np.int16
    assert abs(_dominant_hz(x) - 440) < 2
    assert np.array_equal(x[:, 0], x[:, 1])
    peak_db = 20 * np.log10(np.abs(x).max() / 32767)
    assert -20.5 < peak_db < -19.5


def test_sweep_correlates_with_itself_at_one_lag_only() -> None:
    # Alignment checks rely on this: a window of the chirp matches the source at its own
    # position and nowhere else within +-100 ms (a pure tone would match every period).
    src = sources.sweep(300, 900, period_s=1.0)
    ref = src.samples(0, 2 * SAMPLE_RATE)[:, 0].astype(np.float64)
    win = ref[24_000:28_800]
    scores = [float(np.dot(win, ref[24_000 + lag : 28_800 + lag])) for lag in range(-4800, 4801, 48)]
    best = int(np.argmax(scores))
    assert (best - 100) * 48 == 0
    second = sorted(scores)[-2]
    assert second < 0.8 * scores[best]


def test_synthetic_speakers_are_in_disjoint_bands() -> None:
    a = sources.synthetic_speaker(0, 5, talk_spurts=False).samples(0, SAMPLE_RATE)[:, 0].astype(float)
    b = sources.synthetic_speaker(1, 5, talk_spurts=False).samples(0, SAMPLE_RATE)[:, 0].astype(float)
    corr = abs(np.dot(a, b)) / np.sqrt(np.dot(a, a) * np.dot(b, b))
    assert corr < 0.02


def test_speechlike_activity_is_reproducible_and_really_pauses() -> None:
    a = Activity.speechlike(30, seed=5)
    assert a == Activity.speechlike(30, seed=5)
    assert a != Activity.speechlike(30, seed=6)
    spans = a.spans
    assert spans is not None and len(spans) >= 5
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
        assert e0 - s0 >= 15  # >= 0.3 s of talk
        assert s1 - e0 >= 10  # >= 0.2 s of quiet: a client really stops sending
    mask = a.mask(1500)
    assert 0.4 < mask.mean() < 0.9
    assert a.active(spans[0][0]) and not a.active(spans[0][1])


def test_noise_bursts_are_seeded_and_silent_between_spurts() -> None:
    one = sources.noise_bursts(10, seed=3)
    assert np.array_equal(one.frame(7), sources.noise_bursts(10, seed=3).frame(7))
    assert not np.array_equal(one.frame(7), sources.noise_bursts(10, seed=4).frame(7))
    expected = one.expected(10 * SAMPLE_RATE)
    mask = one.activity.mask(500)
    frames = expected.reshape(500, FRAME_SAMPLES, 2)
    assert not frames[~mask].any()
    assert all(f.any() for f in frames[mask])


def test_expected_silences_frames_that_were_not_delivered() -> None:
    src = sources.tone(1000)
    sent = np.ones(50, dtype=bool)
    sent[10] = False
    exp = src.expected(50 * FRAME_SAMPLES, sent=sent)
    assert not exp[10 * FRAME_SAMPLES : 11 * FRAME_SAMPLES].any()
    assert exp[9 * FRAME_SAMPLES : 10 * FRAME_SAMPLES].any()
    assert exp[11 * FRAME_SAMPLES : 12 * FRAME_SAMPLES].any()


@pytest.mark.parametrize("codec,suffix", [("pcm_s16le", "wav"), ("flac", "flac"), ("libmp3lame", "mp3")])
def test_files_are_decoded_in_process_and_resampled_to_48k_stereo(tmp_path: Path, codec: str, suffix: str) -> None:
    rate = 22_050 if codec != "libmp3lame" else 44_100
    t = np.arange(int(1.5 * rate)) / rate
    pcm = (np.sin(2 * np.pi * 700 * t) * 8000).astype(np.int16)
    path = tmp_path / f"voice.{suffix}"
    _write_audio(path, pcm, rate, codec)
    src = sources.from_file(path, name="alice")
    assert src.name == "alice" and not src.loop
    assert abs(len(src.audio) - 1.5 * SAMPLE_RATE) < 0.06 * SAMPLE_RATE  # MP3 adds codec padding
    assert src.audio.shape[1] == 2
    mid = src.audio[SAMPLE_RATE // 4 : SAMPLE_RATE // 4 + 9600]
    assert abs(_dominant_hz(mid) - 700) < 6
    # The file ends: the speaker stops, and the timeline past the end is silence.
    assert src.ended(src.length_frames or 0) and not src.talking(src.length_frames or 0)
    assert not src.samples(len(src.audio), 100).any()


def test_file_source_can_be_cut_to_the_meeting(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    _write_audio(path, np.zeros(3 * 8000, dtype=np.int16) + 100, 8000, "pcm_s16le")
    src = sources.from_file(path, max_seconds=1.0)
    assert len(src.audio) == SAMPLE_RATE


def test_bad_files_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="bob: no such file"):
        sources.from_file(tmp_path / "missing.wav", name="bob")
    junk = tmp_path / "notes.wav"
    junk.write_text("this is not audio at all")
    with pytest.raises(SourceError, match="carol: cannot decode"):
        sources.from_file(junk, name="carol")


def test_sources_refuse_unusable_audio() -> None:
    with pytest.raises(SourceError):
        Source("x", np.zeros((10, 1), dtype=np.int16))
    with pytest.raises(SourceError):
        Source("x", np.zeros((0, 2), dtype=np.int16))
    with pytest.raises(SourceError):
        sources.tone(5)
