"""The lossless archive: which FLAC encoder, how much CPU and disk per speaker-hour.

Two ways to get FLAC frames from a chunk's PCM, both FFmpeg's ``flac`` encoder at its
default settings (compression level 5, 4608-sample blocks):

* **PyAV** in the encoder process (what ``audio.flac`` uses), plus what the pipeline
  adds: renumbering every frame (header, CRC-8, CRC-16 update) and the check that the
  frames decode back to the chunk's PCM;
* **the FFmpeg binary** (``imageio-ffmpeg``), one process per chunk fed through a pipe,
  renumbering not included (it would cost the same).

CPU is ``time.process_time`` of this process plus ``RUSAGE_CHILDREN`` of the
binaries, per hour of one speaker's audio (10 s chunks). Sizes per hour are measured
on two mono signals, with MP3 64 kb/s (the default archive) and the Opus copy beside:

* ``speech``: the tests' speech-like signal (harmonics on a gliding pitch, syllable
  envelope), talking the whole time: noiseless, so FLAC's best case;
* ``real-ish``: that voice as Discord delivers it: talk spurts (silence between them
  is digital zero: clients send nothing), a -50 dBFS room/mic noise floor while
  talking, and the whole thing through Opus at 64 kb/s and back (the receive path
  decodes Opus: the archive stores Opus's output, whose fine structure is not speech's).

    python bench/flac.py [--minutes 5]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

from chunkrecorder.audio import flac, mp3  # noqa: E402
from chunkrecorder.audio.ogg_opus import mp3_to_ogg_opus  # noqa: E402
from chunkrecorder.audio.opus import OpusDecoder, OpusEncoder  # noqa: E402
from harness.sources import Activity  # noqa: E402
from tests.support.signals import speech_like  # noqa: E402

RATE = 48_000
CHUNK = 417 * mp3.FRAME  # 10 s windows, as the pipeline's default


def realish(seconds: float, seed: int) -> np.ndarray:
    x = speech_like(seconds, seed=seed, peak=9_000).astype(np.float64)
    rng = np.random.default_rng(seed)
    x += rng.normal(0, 32768 * 10 ** (-50 / 20), len(x))
    spans = Activity.speechlike(seconds, seed=seed).spans or ()
    talking = np.zeros(len(x), dtype=bool)
    for a, b in spans:
        talking[a * 960 : b * 960] = True
    pcm = np.clip(x, -32768, 32767).astype(np.int16)
    enc, dec = OpusEncoder(channels=1, fec=False, application="voip", bitrate=64_000), OpusDecoder(channels=1)
    out = np.zeros_like(pcm)
    for i in range(0, len(pcm) - 959, 960):
        if talking[i]:
            out[i : i + 960] = np.frombuffer(dec.decode(enc.encode(pcm[i : i + 960].tobytes())), dtype=np.int16)
    return out


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pyav_chunks(x: np.ndarray) -> tuple[float, float, int]:
    """CPU of encoding (renumbering included), CPU of the worker's decode check, bytes."""
    encode_s = check_s = 0.0
    size = 0
    for start in range(0, len(x), CHUNK):
        pcm = np.ascontiguousarray(x[start : start + CHUNK, None])
        t0 = time.process_time()
        frames = flac.encode_frames(pcm, first_sample=start, sample_rate=RATE, channels=1)
        t1 = time.process_time()
        data = flac.build_header(flac.StreamInfo(16, flac.BLOCK, 0, 0, RATE, 1, 16, len(pcm), bytes(16))) + \
            b"".join(frames)
        assert np.array_equal(flac.decode_pcm(data), pcm)  # the worker's check
        encode_s += t1 - t0
        check_s += time.process_time() - t1
        size += sum(len(f) for f in frames)
    return encode_s, check_s, size


def binary_chunks(x: np.ndarray) -> tuple[float, int]:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    t0, c0 = time.process_time(), cpu_children()
    size = 0
    for start in range(0, len(x), CHUNK):
        pcm = x[start : start + CHUNK].astype("<i2").tobytes()
        out = subprocess.run([exe, "-v", "error", "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "-",
                              "-c:a", "flac", "-f", "flac", "-"], input=pcm, capture_output=True, check=True)
        size += len(out.stdout) - flac.metadata_end(out.stdout)
    return time.process_time() - t0 + cpu_children() - c0, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    seconds = args.minutes * 60
    per_hour = 3600 / seconds
    signals = {"speech": speech_like(seconds, seed=5), "real-ish": realish(seconds, seed=5)}
    print(f"{args.minutes:g} minutes per signal, mono, 10 s chunks; per hour of one speaker:")
    for name, x in signals.items():
        av_cpu, check_cpu, av_size = pyav_chunks(x)
        bin_cpu, bin_size = binary_chunks(x)
        with tempfile.TemporaryDirectory(prefix="chunkrecorder-flac-") as tmp:
            folder = Path(tmp)
            body = len(x) // mp3.FRAME * mp3.FRAME
            pcm = np.zeros((mp3.PRIME_SAMPLES + body + mp3.TAIL_SAMPLES, 1), np.int16)
            pcm[mp3.PRIME_SAMPLES : mp3.PRIME_SAMPLES + body, 0] = x[:body]
            (folder / "t.pcm").write_bytes(pcm.tobytes())
            t0 = time.process_time()
            made = mp3.encode_chunk_file(folder / "t.pcm", folder / "t.mp3", prime=mp3.PRIME_SAMPLES, body=body)
            mp3_cpu = time.process_time() - t0
            opus = mp3_to_ogg_opus(folder / "t.mp3", folder / "t.opus")
            # the finished file: header measured by decoding every frame (stop's share)
            frames = b"".join(flac.encode_frames(np.ascontiguousarray(x[:, None]), first_sample=0,
                                                 sample_rate=RATE, channels=1))
            (folder / "t.flac.part").write_bytes(frames)
            t0 = time.process_time()
            _sha, flac_size, samples = flac.finish_track(folder / "t.flac.part", folder / "t.flac",
                                                        length=len(frames), sample_rate=RATE, channels=1)
            finish_cpu = time.process_time() - t0
            assert samples == len(x)
            info = flac.read_stream_info((folder / "t.flac").read_bytes())
            assert info.md5 == hashlib.md5(x.astype("<i2").tobytes()).digest()
        mib = 2**20
        print(f"  {name}:")
        print(f"    FLAC, PyAV in-process (used)  {av_cpu * per_hour:6.1f} CPU-s   {av_size * per_hour / mib:6.1f} MiB"
              f"   (+{check_cpu * per_hour:.1f} CPU-s: the decode check)")
        print(f"    FLAC, ffmpeg binary per chunk {bin_cpu * per_hour:6.1f} CPU-s   {bin_size * per_hour / mib:6.1f} MiB"
              f"   ({bin_cpu / av_cpu:.1f}x the CPU)")
        print(f"    FLAC measure (MD5, by decode) {finish_cpu * per_hour:6.1f} CPU-s   "
              f"{flac_size * per_hour / mib:6.1f} MiB finished file")
        print(f"    MP3 64 kb/s (default archive) {mp3_cpu * per_hour:6.1f} CPU-s   "
              f"{made.size_bytes * per_hour / mib:6.1f} MiB   (FLAC is {flac_size / made.size_bytes:.1f}x)")
        print(f"    Opus copy 32 kb/s                            {opus.size_bytes * per_hour / mib:6.1f} MiB")


if __name__ == "__main__":
    main()
