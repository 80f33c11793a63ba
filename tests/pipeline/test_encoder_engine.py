"""Which LAME encodes, that it encodes what FFmpeg's wrapper did, and what guards each chunk.

The engine is LAME through ctypes (``audio.lame``): the ``lameenc`` wheel's build, else
PyAV's bundled one, else PyAV's codec. These tests hold the engines to one another
(same settings, same quality, same alignment) and hold a chunk's verification to the
failures it must catch before a file is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from chunkrecorder.audio import lame, mp3
from chunkrecorder.pipeline.transcoder import Transcoder
from tests.pipeline.test_mp3 import CHUNK, SR, _chunk_pcm, _encode_in_chunks, _snr, _speechy


@pytest.fixture
def pyav_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as one where no LAME library loads: PyAV's codec encodes."""
    monkeypatch.setattr(lame, "load", lambda **_: None)
    mp3.codec_delay.cache_clear()
    yield
    mp3.codec_delay.cache_clear()


def _stream_with(library: lame.LameLibrary, pcm: np.ndarray, channels: int) -> bytes:
    return lame.encode(np.ascontiguousarray(pcm), samples=len(pcm), channels=channels, library=library)


def _pyav_stream(pcm: np.ndarray, channels: int) -> bytes:
    import av

    ctx = mp3._open_encoder(SR, channels, 64_000, 7)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T), format="s16p",
                                       layout="mono" if channels == 1 else "stereo")
    frame.sample_rate = SR
    frame.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def test_the_fast_lame_from_the_lameenc_wheel_is_the_engine() -> None:
    lib = lame.load()
    assert lib is not None and lib.source == "lameenc", lib
    assert mp3.engine().startswith("lame ")
    assert mp3.engine_notice() is None


@pytest.mark.parametrize("channels", [1, 2])
def test_our_lame_settings_are_ffmpegs_byte_for_byte(channels: int) -> None:
    """The same LAME build (PyAV's) through our ctypes calls gives exactly PyAV's bytes."""
    av_lame = lame.load(sources=("av",))
    if av_lame is None:
        pytest.skip("this PyAV wheel bundles no loadable libmp3lame")
    x = _speechy(3 * SR)
    pcm = x if channels == 1 else np.concatenate([x, (x // 3).astype(np.int16)], axis=1)
    assert _stream_with(av_lame, pcm, channels) == _pyav_stream(pcm, channels)


def test_lameenc_decodes_to_the_same_quality_and_alignment_as_pyavs_lame() -> None:
    fast, av_lame = lame.load(sources=("lameenc",)), lame.load(sources=("av",))
    if fast is None or av_lame is None:
        pytest.skip("needs both LAME builds")
    x = _speechy(4 * SR)
    pcm = np.concatenate([np.zeros((mp3.PRIME_SAMPLES, 1), np.int16), x, np.zeros((mp3.TAIL_SAMPLES, 1), np.int16)])
    snrs = {}
    for lib in (fast, av_lame):
        stream = _stream_with(lib, pcm, 1)
        assert lame.encoder_delay(library=lib) == mp3.EXPECTED_DELAY
        skip = (mp3.PRIME_SAMPLES + mp3.EXPECTED_DELAY) // mp3.FRAME
        decoded = mp3.decode(stream[skip * 192 :], channels=1)[: len(x), 0]
        lags = {lag: _snr(x[100:-100, 0], decoded[100 + lag : len(x) - 100 + lag]) for lag in range(-4, 5)}
        assert max(lags, key=lags.__getitem__) == 0  # in place, not a sample off
        snrs[lib.source] = lags[0]
    assert snrs["lameenc"] > 20
    assert abs(snrs["lameenc"] - snrs["av"]) < 0.5, snrs


def test_the_pyav_fallback_keeps_the_gapless_join(pyav_only: None) -> None:
    assert mp3.engine() == "pyav"
    assert mp3.codec_delay(SR, 1) == mp3.EXPECTED_DELAY
    x = _speechy(3 * CHUNK)
    decoded = mp3.decode(_encode_in_chunks(x, CHUNK), channels=1)
    assert len(decoded) == len(x)
    whole = _snr(x[:, 0], decoded[:, 0])
    for k in (1, 2):
        w = slice(k * CHUNK - 2400, k * CHUNK + 2400)
        assert _snr(x[w, 0], decoded[w, 0]) > whole - 2, f"join {k}"


async def test_the_owner_is_told_in_one_sentence_when_encoding_runs_slow(
        pyav_only: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="red.chunkrecorder")
    tc = Transcoder(store=None, workers=1, executor="thread")  # type: ignore[arg-type]
    await tc.start()
    await tc.close()
    notes = [r.getMessage() for r in caplog.records if "lameenc" in r.getMessage()]
    assert notes == [mp3.SLOW_ENGINE_NOTICE]
    assert notes[0].count(". ") == 0 and notes[0].endswith(".")


# ------------------------------------------------------------------ what guards a chunk
def _chunk_file(tmp_path: Path) -> Path:
    pcm = tmp_path / "c.pcm"
    pcm.write_bytes(_chunk_pcm(_speechy(CHUNK), 0, CHUNK).tobytes())
    return pcm


@pytest.mark.parametrize("damage", ["one frame short", "a broken header", "cut inside a frame", "a tag in front"])
def test_an_encode_that_is_not_exactly_the_bodys_frames_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    real = mp3._encode_stream

    def broken(*args: object, **kwargs: object) -> bytes:
        stream = real(*args, **kwargs)  # type: ignore[arg-type]
        skip = (mp3.PRIME_SAMPLES + mp3.EXPECTED_DELAY) // mp3.FRAME
        body = stream[skip * 192 : (skip + 417) * 192]
        return stream[: skip * 192] + {
            "one frame short": body[:-192],
            "a broken header": body[:192 * 200] + b"\x00" + body[192 * 200 + 1 :],
            "cut inside a frame": body[:-10],
            "a tag in front": b"ID3\x04\x00" + body,
        }[damage]

    monkeypatch.setattr(mp3, "_encode_stream", broken)
    out = tmp_path / "c.mp3"
    with pytest.raises(mp3.EncodeError):
        mp3.encode_chunk_file(_chunk_file(tmp_path), out, prime=mp3.PRIME_SAMPLES, body=CHUNK)
    assert not out.exists() and not (tmp_path / "c.mp3.part").exists()


def test_a_chunk_file_is_exactly_its_bodys_frames(tmp_path: Path) -> None:
    out = tmp_path / "c.mp3"
    info = mp3.encode_chunk_file(_chunk_file(tmp_path), out, prime=mp3.PRIME_SAMPLES, body=CHUNK)
    data = out.read_bytes()
    assert mp3.count_frames(data) == info.frames == 417
    assert mp3.frame_offsets(data) == list(range(0, 418 * 192, 192))
    # every frame stands alone: main_data_begin (the reservoir back-pointer) is 0 in each
    assert all(((data[i + 4] << 1) | (data[i + 5] >> 7)) == 0 for i in range(0, len(data), 192))
