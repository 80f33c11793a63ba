"""PyAV in-process vs imageio-ffmpeg's bundled binary: what one 10 s chunk costs each.

The choice of FFmpeg engine was made by this measurement. Both encode the same PCM
with libmp3lame at 64 kb/s mono 48 kHz (bit reservoir off, -q 7, as the pipeline
does). Prints CPU (including child processes) and wall time per chunk and the ratio.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chunkrecorder.audio import mp3  # noqa: E402

CHUNK = 417 * mp3.FRAME


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _pcm() -> np.ndarray:
    t = np.arange(CHUNK + mp3.PRIME_SAMPLES + mp3.TAIL_SAMPLES) / 48_000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    return (x * 26_000).astype(np.int16).reshape(-1, 1)


def pyav(pcm: np.ndarray) -> int:
    return len(b"".join(mp3.encode_frames(pcm, prime=mp3.PRIME_SAMPLES, body=CHUNK)))


def ffmpeg_binary(pcm: np.ndarray, exe: str) -> int:
    out = subprocess.run(
        [exe, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "48000", "-ac", "1",
         "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", "64k", "-reservoir", "0",
         "-compression_level", "7", "-f", "mp3", "pipe:1"],
        input=pcm.tobytes(), capture_output=True, check=True,
    )
    return len(out.stdout)


def measure(fn, *args, runs: int) -> tuple[float, float]:
    fn(*args)  # warm
    c0, w0 = _cpu(), time.perf_counter()
    for _ in range(runs):
        fn(*args)
    return (_cpu() - c0) / runs, (time.perf_counter() - w0) / runs


def main() -> None:
    runs = int(os.environ.get("RUNS", "10"))
    pcm = _pcm()
    av_cpu, av_wall = measure(pyav, pcm, runs=runs)
    print(f"engines: one 10.008 s mono chunk, libmp3lame 64 kb/s -q7, {runs} runs each")
    print(f"  PyAV in-process        cpu {av_cpu * 1000:7.1f} ms  wall {av_wall * 1000:7.1f} ms")
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # the bench extra is optional
        print(f"  imageio-ffmpeg unavailable: {exc}")
        return
    bin_cpu, bin_wall = measure(ffmpeg_binary, pcm, exe, runs=runs)
    print(f"  imageio-ffmpeg binary  cpu {bin_cpu * 1000:7.1f} ms  wall {bin_wall * 1000:7.1f} ms")
    print(f"  ratio binary/PyAV      cpu {bin_cpu / av_cpu:5.2f}×      wall {bin_wall / av_wall:5.2f}×")
    print("  (PyAV also gives frame-level control, which the gapless join needs, and Opus in one wheel)")


if __name__ == "__main__":
    main()
