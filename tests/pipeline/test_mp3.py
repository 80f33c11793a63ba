"""The gapless chunk encoder: chunks encoded apart join into one stream with no drift."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from chunkrecorder.audio import mp3

SR = 48_000
CHUNK = 417 * mp3.FRAME  # the default 10 s interval on the frame grid


def _speechy(n: int, seed: int = 1) -> np.ndarray:
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    voiced = (np.sin(2 * np.pi * 0.9 * t) > -0.2).astype(float)
    x = 0.35 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1333 * t + 1)
    x += 0.02 * rng.standard_normal(n)
    return (x * voiced * 26_000).astype(np.int16).reshape(-1, 1)


def _chunk_pcm(x: np.ndarray, start: int, end: int) -> np.ndarray:
    """What the flush writes: prime before, body, tail after (zeros beyond the signal)."""
    lo = start - mp3.PRIME_SAMPLES
    hi = end + mp3.TAIL_SAMPLES
    out = np.zeros((hi - lo, x.shape[1]), dtype=np.int16)
    src_lo, src_hi = max(lo, 0), min(hi, len(x))
    out[src_lo - lo : src_hi - lo] = x[src_lo:src_hi]
    return out


def _encode_in_chunks(x: np.ndarray, chunk: int) -> bytes:
    frames: list[bytes] = []
    for start in range(0, len(x), chunk):
        end = min(start + chunk, len(x))
        frames += mp3.encode_frames(_chunk_pcm(x, start, end), prime=mp3.PRIME_SAMPLES, body=end - start)
    return b"".join(frames)


def _snr(ref: np.ndarray, out: np.ndarray) -> float:
    ref = ref.astype(float)
    err = ref - out.astype(float)
    return 10 * np.log10((ref**2).sum() / max((err**2).sum(), 1e-9))


def test_codec_delay_is_what_the_priming_assumes() -> None:
    """If an FFmpeg/LAME upgrade changes the delay, this fails before any audio drifts."""
    assert mp3.codec_delay(SR, 1) == mp3.EXPECTED_DELAY
    assert mp3.codec_delay(SR, 2) == mp3.EXPECTED_DELAY
    assert (mp3.PRIME_SAMPLES + mp3.EXPECTED_DELAY) % mp3.FRAME == 0


def test_six_chunks_decode_to_exactly_the_input_length_and_line_up() -> None:
    x = _speechy(6 * CHUNK)
    data = _encode_in_chunks(x, CHUNK)
    decoded = mp3.decode(data, channels=1)
    assert len(decoded) == len(x)  # 60.048 s in, 60.048 s out: no 28 ms per join
    assert mp3.count_frames(data) == 6 * 417
    whole = _snr(x[:, 0], decoded[:, 0])
    assert whole > 20
    # Around every join the audio is as good as anywhere else: no click, no shift.
    for k in range(1, 6):
        w = slice(k * CHUNK - 2400, k * CHUNK + 2400)
        assert _snr(x[w, 0], decoded[w, 0]) > whole - 2, f"join {k}"


def test_a_shift_of_one_millisecond_would_be_caught() -> None:
    """The alignment check above is sharp: the same audio 48 samples late fails it."""
    x = _speechy(2 * CHUNK)
    decoded = mp3.decode(_encode_in_chunks(x, CHUNK), channels=1)
    shifted = np.concatenate([np.zeros((48, 1), np.int16), decoded[:-48]])
    assert _snr(x[:, 0], shifted[:, 0]) < 5


def test_naive_independent_chunks_drift_as_measured() -> None:
    """The problem being solved: plain per-chunk encodes add ~28 ms per join."""
    x = _speechy(3 * CHUNK)
    joined = b""
    for start in range(0, len(x), CHUNK):
        ctx = mp3._open_encoder(SR, 1, 64_000, 7)
        frame = av.AudioFrame.from_ndarray(x[start : start + CHUNK].T.copy(), format="s16p", layout="mono")
        frame.sample_rate = SR
        joined += b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    extra_ms = (len(mp3.decode(joined, channels=1)) - len(x)) / SR * 1000
    assert extra_ms > 3 * 20  # tens of ms per chunk, where ours adds zero


def test_final_partial_chunk_is_completed_to_a_whole_frame() -> None:
    x = _speechy(CHUNK + 5000)
    decoded = mp3.decode(_encode_in_chunks(x, CHUNK), channels=1)
    assert len(decoded) == mp3.frames_for(len(x)) * mp3.FRAME
    assert len(decoded) - len(x) < mp3.FRAME
    assert _snr(x[:, 0], decoded[: len(x), 0]) > 20


def test_stereo_chunks_keep_their_channels() -> None:
    left = _speechy(2 * CHUNK, seed=1)[:, 0]
    right = (left // 4).astype(np.int16)
    x = np.stack([left, right], axis=1)
    frames: list[bytes] = []
    for start in (0, CHUNK):
        frames += mp3.encode_frames(
            _chunk_pcm(x, start, start + CHUNK), prime=mp3.PRIME_SAMPLES, body=CHUNK, channels=2
        )
    decoded = mp3.decode(b"".join(frames), channels=2)
    assert decoded.shape == (2 * CHUNK, 2)
    assert np.abs(decoded[:, 1]).mean() < np.abs(decoded[:, 0]).mean() / 2


def test_encode_chunk_file_writes_a_verified_file_and_reports_it(tmp_path: Path) -> None:
    x = _speechy(CHUNK)
    pcm_path = tmp_path / "c.pcm"
    pcm_path.write_bytes(_chunk_pcm(x, 0, CHUNK).tobytes())
    out = tmp_path / "c.mp3"
    info = mp3.encode_chunk_file(pcm_path, out, prime=mp3.PRIME_SAMPLES, body=CHUNK)
    data = out.read_bytes()
    assert info.frames == 417 and info.samples == CHUNK and info.duration_ms == 10_008
    assert info.size_bytes == len(data) == 417 * 192  # 64 kb/s at 48 kHz: 192-byte frames
    import hashlib

    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "c.mp3.part").exists()


def test_a_torn_pcm_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    pcm_path = tmp_path / "torn.pcm"
    pcm_path.write_bytes(b"\x00" * 1001)  # not whole 16-bit samples
    out = tmp_path / "torn.mp3"
    with pytest.raises(mp3.EncodeError, match="not whole"):
        mp3.encode_chunk_file(pcm_path, out, prime=mp3.PRIME_SAMPLES, body=100)
    assert not out.exists()


def test_frame_walk_rejects_garbage_and_truncation() -> None:
    x = _speechy(mp3.FRAME * 20)
    data = b"".join(mp3.encode_frames(_chunk_pcm(x, 0, len(x)), prime=mp3.PRIME_SAMPLES, body=len(x)))
    assert mp3.count_frames(data) == 20
    with pytest.raises(mp3.EncodeError):
        mp3.count_frames(data[:-10])
    with pytest.raises(mp3.EncodeError):
        mp3.count_frames(b"ID3" + data)
