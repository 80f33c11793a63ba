"""The codec floor: the fastest shippable MP3 encoder and Opus decoder, each in a tight loop.

Shared by bench/engines.py (which prints every candidate) and bench/pipeline.py (which
measures the floor in the same run as the pipeline). "Shippable" means installable from
wheels on a machine with only Python 3.11, at the project's settings: 64 kb/s CBR mono,
48 kHz, LAME -q 7, same quality. CPU is counted with children (the ffmpeg binary is one).

MP3 candidates, each encoding one continuous track (no chunking, no priming, no files):

* ``lameenc`` -- LAME from the lameenc wheel through ctypes (what the pipeline uses);
* ``pyav`` -- PyAV's libmp3lame codec (FFmpeg's wrapper over the LAME in PyAV's wheel);
* ``ffmpeg-pipe`` -- imageio-ffmpeg's bundled binary, one long-lived process per track
  fed PCM through a pipe (process start included once per track);
* ``lameenc-api`` is printed by engines.py as a reference only: lameenc's own Python API
  cannot turn the bit reservoir off, so it cannot keep the gapless chunk join.

Opus candidates, each decoding the same 20 ms packets one call per packet (as the
receive thread does), each to mono and to stereo: ``libopus`` (PyAV's bundled libopus
through ctypes, s16, what the receiver uses, to the meeting's channel count) and
``ffmpeg-native`` (FFmpeg's own Opus decoder through PyAV, frames discarded: float
planar, no conversion, no FEC).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chunkrecorder.audio import lame, mp3  # noqa: E402

RATE = 48_000
FRAME = 960


def cpu_with_children() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def speech(seconds: float, seed: int) -> np.ndarray:
    """Speech-like mono int16 (gliding harmonics, syllable envelope)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE) // FRAME * FRAME
    knots = int(seconds * 8) + 2
    f0 = np.interp(np.arange(n), np.linspace(0, n, knots), rng.uniform(110, 250, knots))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase + rng.uniform(0, 6.28)) * rng.uniform(0.2, 1) / k for k in range(1, 7))
    env = np.interp(np.arange(n), np.linspace(0, n, int(seconds * 5) + 2),
                    rng.uniform(0.3, 1, int(seconds * 5) + 2))
    x = x * env
    return (x / np.abs(x).max() * 9000).astype(np.int16)


# ---------------------------------------------------------------------- MP3 encoders
def _lameenc(track: np.ndarray) -> int:
    lib = lame.load(sources=("lameenc",))
    assert lib is not None
    return len(lame.encode(track, samples=len(track), library=lib))


def _pyav(track: np.ndarray) -> int:
    import av

    ctx = mp3._open_encoder(RATE, 1, mp3.DEFAULT_BITRATE, mp3.DEFAULT_QUALITY)
    frame = av.AudioFrame.from_ndarray(track.reshape(1, -1), format="s16p", layout="mono")
    frame.sample_rate = RATE
    frame.pts = 0
    return sum(len(bytes(p)) for p in [*ctx.encode(frame), *ctx.encode(None)])


def ffmpeg_args(exe: str) -> list[str]:
    return [exe, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "48000", "-ac", "1",
            "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", "64k", "-reservoir", "0",
            "-compression_level", "7", "-write_xing", "0", "-id3v2_version", "0", "-f", "mp3", "pipe:1"]


def _ffmpeg_pipe(track: np.ndarray) -> int:
    import imageio_ffmpeg

    out = subprocess.run(ffmpeg_args(imageio_ffmpeg.get_ffmpeg_exe()), input=track.tobytes(),
                         capture_output=True, check=True)
    return len(out.stdout)


def mp3_candidates() -> dict[str, Callable[[np.ndarray], int]]:
    """The usable encoders found here (a missing one is left out)."""
    found: dict[str, Callable[[np.ndarray], int]] = {}
    if lame.load(sources=("lameenc",)) is not None:
        found["lameenc"] = _lameenc
    found["pyav"] = _pyav
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        found["ffmpeg-pipe"] = _ffmpeg_pipe
    except Exception:  # noqa: BLE001 - the bench extra is optional
        pass
    return found


def mp3_floor(tracks: list[np.ndarray], reps: int = 2) -> dict[str, float]:
    """CPU seconds each candidate needs to encode every track once (best of ``reps``, interleaved)."""
    cands = mp3_candidates()
    best: dict[str, float] = {}
    for _ in range(reps):
        for name, fn in cands.items():
            c0 = cpu_with_children()
            for t in tracks:
                fn(np.ascontiguousarray(t.reshape(-1)))
            best[name] = min(best.get(name, float("inf")), cpu_with_children() - c0)
    return best


# ---------------------------------------------------------------------- Opus decoders
def opus_packets(seconds: float, seed: int = 9) -> list[bytes]:
    """One speaker's 20 ms packets, encoded as the harness's clients send them."""
    from chunkrecorder.audio.opus import OpusEncoder

    x = speech(seconds, seed)
    st = np.repeat(x[:, None], 2, axis=1)
    enc = OpusEncoder(bitrate=64_000, complexity=5, application="audio")
    return [enc.encode(st[i : i + FRAME].tobytes()) for i in range(0, len(st), FRAME)]


def _libopus(channels: int) -> Callable[[list[bytes]], None]:
    def run(packets: list[bytes]) -> None:
        from chunkrecorder.audio.opus import OpusDecoder

        dec = OpusDecoder(channels)
        for p in packets:
            dec.decode(p)
    return run


def _ffmpeg_native(layout: str, *, s16: bool = False) -> Callable[[list[bytes]], None]:
    def run(packets: list[bytes]) -> None:
        import av

        ctx = av.CodecContext.create("opus", "r")
        ctx.sample_rate = RATE
        ctx.layout = layout
        for p in packets:
            for f in ctx.decode(av.Packet(p)):
                if s16:
                    (np.clip(f.to_ndarray().T, -1, 1) * 32767).astype("<i2").tobytes()
    return run


#: Every decode that yields a meeting's audio (a stereo decode holds a mono meeting's too):
#: the floor is the fastest of them. The receiver's own is ``OURS[channels]``.
OPUS_FLOOR = {
    "libopus mono": _libopus(1),
    "libopus stereo": _libopus(2),
    "ffmpeg-native mono": _ffmpeg_native("mono"),
    "ffmpeg-native stereo": _ffmpeg_native("stereo"),
}
OPUS_INFO = {"ffmpeg-native stereo + s16": _ffmpeg_native("stereo", s16=True)}
OURS = {1: "libopus mono", 2: "libopus stereo"}


def opus_floor(packets: list[bytes], reps: int = 3, extra: bool = False) -> dict[str, float]:
    """CPU seconds per candidate to decode ``packets`` (best of ``reps``, interleaved)."""
    cands = dict(OPUS_FLOOR, **(OPUS_INFO if extra else {}))
    best: dict[str, float] = {}
    for _ in range(reps):
        for name, fn in cands.items():
            c0 = time.process_time()
            fn(packets)
            best[name] = min(best.get(name, float("inf")), time.process_time() - c0)
    return best


def fastest(figures: dict[str, float], usable: Optional[set[str]] = None) -> tuple[str, float]:
    pool = {k: v for k, v in figures.items() if usable is None or k in usable}
    name = min(pool, key=pool.__getitem__)
    return name, pool[name]
