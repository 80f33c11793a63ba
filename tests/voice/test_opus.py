"""The bundled libopus: found without a system copy, shared with discord.py, clear when absent."""

from __future__ import annotations

import ctypes.util
from pathlib import Path
from typing import Iterator

import discord.opus
import numpy as np
import pytest

from chunkrecorder.audio import opus
from tests.support.signals import best_lag, correlation, frames_of, speech_like


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget what was loaded (ours and discord.py's), restore it afterwards."""
    saved_discord = discord.opus._lib
    opus._reset_for_tests()
    monkeypatch.setattr(discord.opus, "_lib", None)
    yield
    opus._reset_for_tests()  # the next user loads it again, lazily
    discord.opus._lib = saved_discord


def test_pyav_wheel_ships_a_libopus() -> None:
    paths = opus.bundled_libopus_candidates()
    assert paths and all(p.exists() for p in paths)
    assert any("opus" in p.name for p in paths)


def test_without_a_system_libopus_the_bundled_one_is_used_by_us_and_discordpy(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    info = opus.ensure_opus()
    assert info.source == "bundled" and Path(info.path) in opus.bundled_libopus_candidates()
    assert info.version.startswith("libopus")
    assert discord.opus.is_loaded()  # discord.py can now encode/decode with it too
    assert discord.opus.Encoder().encode(bytes(3840), 960)


def test_no_opus_anywhere_is_one_clear_sentence(fresh_loader: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(opus, "bundled_libopus_candidates", lambda: [])
    with pytest.raises(opus.OpusUnavailable) as info:
        opus.ensure_opus()
    message = str(info.value)
    assert message == opus.UNAVAILABLE_MESSAGE
    assert message.endswith(".") and "\n" not in message and "libopus" in message


def test_an_unloadable_candidate_is_skipped(fresh_loader: None, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    broken = tmp_path / "libopus.so.0"
    broken.write_bytes(b"not a shared library")
    real = opus.bundled_libopus_candidates()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: str(broken))
    info = opus.ensure_opus()
    assert info.source == "bundled" and Path(info.path) in real


def test_round_trip_keeps_the_waveform_and_the_look_ahead_is_what_we_say() -> None:
    src = speech_like(2.0, seed=5)
    enc, dec = opus.OpusEncoder(application="audio"), opus.OpusDecoder()
    assert enc.lookahead == opus.CODEC_DELAY_SAMPLES
    out = np.frombuffer(b"".join(dec.decode(enc.encode(f)) for f in frames_of(src)), np.int16)
    left = out.reshape(-1, 2)[:, 0].astype(float)
    assert abs(best_lag(src, left) - opus.CODEC_DELAY_SAMPLES) <= 4
    assert correlation(src, left) > 0.98


@pytest.mark.parametrize("packet", [b"", b"\x03\x00abc", bytes([0xFB, 0x00]), b"\xff" * 5])
def test_invalid_packets_raise_decode_error(packet: bytes) -> None:
    with pytest.raises(opus.OpusDecodeError):
        opus.OpusDecoder().decode(packet)


def test_concealment_and_fec_produce_a_frame() -> None:
    enc, dec = opus.OpusEncoder(), opus.OpusDecoder()
    packets = [enc.encode(f) for f in frames_of(speech_like(0.2, seed=2))]
    dec.decode(packets[0])
    assert len(dec.conceal()) == 3840
    assert len(dec.recover(packets[2])) == 3840
    assert len(dec.decode(packets[2])) == 3840


def test_a_mono_decoder_gives_the_mean_of_the_stereo_decode_and_conceals() -> None:
    src = speech_like(2.0, seed=6)
    enc = opus.OpusEncoder(application="audio")
    packets = [enc.encode(f) for f in frames_of(src)]
    stereo, mono = opus.OpusDecoder(), opus.OpusDecoder(channels=1)
    both = np.frombuffer(b"".join(stereo.decode(p) for p in packets), np.int16).reshape(-1, 2)
    one = np.frombuffer(b"".join(mono.decode(p) for p in packets), np.int16).astype(float)
    assert len(one) == len(both)
    mean = both.astype(float).mean(axis=1)
    assert abs(best_lag(mean, one)) <= 1
    assert correlation(mean, one, delay=0) > 0.99
    assert abs(best_lag(src, one) - opus.CODEC_DELAY_SAMPLES) <= 4
    assert len(mono.conceal()) == 1920
    assert len(mono.recover(packets[3])) == 1920
    with pytest.raises(ValueError):
        opus.OpusDecoder(channels=3)


def test_encoder_wants_exactly_one_frame() -> None:
    with pytest.raises(ValueError):
        opus.OpusEncoder().encode(bytes(100))
