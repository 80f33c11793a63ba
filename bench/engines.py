"""Which MP3 encoder and which Opus decoder: every shippable candidate, measured in one run.

MP3, at the project's settings (64 kb/s CBR mono, 48 kHz, LAME -q 7, bit reservoir
off), on the same speech-like PCM, CPU including child processes:

* per 10 s chunk, as the pipeline encodes (a fresh encoder per chunk; for the ffmpeg
  binary one process per chunk, start included);
* per track-hour, one continuous encode (the floor's definition; for the binary one
  long-lived process fed through a pipe);
* the quality each gives (SNR of the decoded output against the input).

Then what verifying a chunk costs and catches: the frame walk against the full decode
the chunks used to get, on truncated, missing, repeated and corrupted frames.

Opus: each candidate decodes the same packets, one call per packet, as the receive
thread does; what FFmpeg's native decoder lacks (in-band FEC) is printed with it.

    python bench/engines.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codec_floor as floor  # noqa: E402
from chunkrecorder.audio import lame, mp3  # noqa: E402

CHUNK = 417 * mp3.FRAME


def _chunk_pcm(x: np.ndarray) -> np.ndarray:
    n = mp3.PRIME_SAMPLES + CHUNK + mp3.TAIL_SAMPLES
    return np.ascontiguousarray(np.resize(x, n).reshape(-1, 1))


def _per_chunk(engine: str, pcm: np.ndarray, exe: str | None) -> None:
    if engine == "ffmpeg-pipe":
        assert exe is not None
        subprocess.run(floor.ffmpeg_args(exe), input=pcm.tobytes(), capture_output=True, check=True)
        return
    saved = lame._loaded
    try:
        if engine == "lameenc":
            lib = lame.load(sources=("lameenc",))
            assert lib is not None
            lame._loaded = (lib, lame._lib(lib))
        else:
            lame._loaded = None
            lame._tried = True
        mp3.codec_delay.cache_clear()
        mp3.encode_frames(pcm, prime=mp3.PRIME_SAMPLES, body=CHUNK)
    finally:
        lame._loaded = saved
        mp3.codec_delay.cache_clear()


def _snr(ref: np.ndarray, out: np.ndarray) -> float:
    ref = ref.astype(float)
    err = ref - out.astype(float)
    return float(10 * np.log10((ref**2).sum() / max((err**2).sum(), 1e-9)))


def mp3_section(seconds: float) -> None:
    x = floor.speech(seconds, seed=1)
    try:
        import imageio_ffmpeg

        exe: str | None = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001
        exe = None
    cands = floor.mp3_candidates()
    print(f"MP3: {seconds:.0f} s of speech-like mono, 64 kb/s CBR 48 kHz -q7, reservoir off; CPU with children; "
          f"LAME here: {lame.load()}")
    cont = floor.mp3_floor([x], reps=3)
    pcm = _chunk_pcm(x)
    chunk: dict[str, float] = {}
    for _ in range(3):
        for name in cands:
            c0 = floor.cpu_with_children()
            for _ in range(3):
                _per_chunk(name, pcm, exe)
            chunk[name] = min(chunk.get(name, float("inf")), (floor.cpu_with_children() - c0) / 3)
    # the lameenc wheel's own API, as a reference: it cannot turn the reservoir off
    import lameenc

    c0 = floor.cpu_with_children()
    enc = lameenc.Encoder()
    enc.set_bit_rate(64)
    enc.set_in_sample_rate(48_000)
    enc.set_channels(1)
    enc.set_quality(7)
    enc.silence()
    enc.encode(x.tobytes())
    enc.flush()
    api = floor.cpu_with_children() - c0
    best_name, best = floor.fastest(cont)
    print(f"  {'engine':14s} {'per 10 s chunk':>15s} {'per track-hour':>15s} {'vs fastest':>10s}  SNR")
    for name in cands:
        per_h = cont[name] * 3600 / seconds
        stream = floor.mp3_candidates()[name]  # noqa: F841 - quality below
        print(f"  {name:14s} {chunk[name] * 1000:12.1f} ms {per_h:12.1f} s {cont[name] / best:9.2f}x  "
              f"{_quality(name, x, exe):5.1f} dB")
    print(f"  {'lameenc-api':14s} {'':>15s} {api * 3600 / seconds:12.1f} s {api / best:9.2f}x  "
          f"(reference only: no way to turn the bit reservoir off)")
    print(f"  floor: {best_name}, {best * 3600 / seconds:.1f} CPU-s per track-hour")


def _quality(name: str, x: np.ndarray, exe: str | None) -> float:
    """SNR of the decoded continuous encode, aligned by the codec delay."""
    pcm = np.concatenate([np.zeros(mp3.PRIME_SAMPLES, np.int16), x, np.zeros(mp3.TAIL_SAMPLES, np.int16)])
    if name == "ffmpeg-pipe":
        assert exe is not None
        data = subprocess.run(floor.ffmpeg_args(exe), input=pcm.tobytes(), capture_output=True, check=True).stdout
    elif name == "lameenc":
        lib = lame.load(sources=("lameenc",))
        data = lame.encode(pcm, samples=len(pcm), library=lib)
    else:
        import av

        ctx = mp3._open_encoder(48_000, 1, 64_000, 7)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16p", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = 0
        data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    skip = (mp3.PRIME_SAMPLES + mp3.EXPECTED_DELAY) // mp3.FRAME
    offsets = mp3.frame_offsets(data)
    decoded = mp3.decode(data[offsets[skip] :], channels=1)[: len(x), 0]
    return _snr(x[: len(decoded)], decoded)


def verification_section() -> None:
    x = floor.speech(11.0, seed=1)
    frames = mp3.encode_frames(_chunk_pcm(x), prime=mp3.PRIME_SAMPLES, body=CHUNK)
    good = b"".join(frames)
    want, size = len(frames), len(frames[0])
    reps = 20
    c0 = floor.cpu_with_children()
    for _ in range(reps):
        mp3.count_frames(good)
    walk = (floor.cpu_with_children() - c0) / reps
    c0 = floor.cpu_with_children()
    for _ in range(reps):
        mp3.decoded_samples(good)
    dec = (floor.cpu_with_children() - c0) / reps
    c0 = floor.cpu_with_children()
    for _ in range(3):
        mp3.encode_frames(_chunk_pcm(x), prime=mp3.PRIME_SAMPLES, body=CHUNK)
    enc = (floor.cpu_with_children() - c0) / 3
    print(f"\nVerifying a 10 s chunk: frame walk {walk * 1000:.2f} ms, full decode {dec * 1000:.2f} ms "
          f"({dec / enc * 100:.0f} % of the {enc * 1000:.1f} ms encode)")
    rng = np.random.default_rng(1)

    def flip(data: bytes, frame: int, count: int) -> bytes:
        b = bytearray(data)
        for _ in range(count):
            b[frame * size + 4 + int(rng.integers(0, size - 4))] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)

    def zero(data: bytes, frame: int) -> bytes:
        b = bytearray(data)
        b[frame * size + 4 : (frame + 1) * size] = bytes(size - 4)
        return bytes(b)

    cases = {
        "truncated by 10 bytes": good[:-10],
        "one frame missing": good[: 5 * size] + good[6 * size :],
        "one frame repeated": good[: 6 * size] + good[5 * size :],
        "a header zeroed": bytes(4) + good[4:],
        "40 bits flipped in a frame's data": flip(good, 9, 40),
        "a frame's data all zeros": zero(good, 3),
        "main_data_begin (side info) = 255": good[: 3 * size + 4] + b"\xff" + good[3 * size + 5 :],
    }
    print(f"  {'damage':36s} {'frame walk':>10s} {'decode':>8s}")
    for name, data in cases.items():
        try:
            walk_ok = mp3.count_frames(data) == want
        except mp3.EncodeError:
            walk_ok = False
        try:
            dec_ok = mp3.decoded_samples(data) == want * mp3.FRAME
        except Exception:  # noqa: BLE001 - the decoder refusing is a catch
            dec_ok = False
        print(f"  {name:36s} {'passes' if walk_ok else 'CAUGHT':>10s} {'passes' if dec_ok else 'CAUGHT':>8s}")
    print("  the decode catches nothing the walk does not: it is dropped (an MP3 decoder turns any payload "
          "into 1152 samples)")


def opus_section(seconds: float) -> None:
    packets = floor.opus_packets(min(seconds, 30.0))
    figures = floor.opus_floor(packets, reps=3, extra=True)
    n = len(packets)
    best_name, best = floor.fastest(figures, set(floor.OPUS_FLOOR))
    print(f"\nOpus: {n} packets of 20 ms (64 kb/s, complexity 5, CELT), one decode call per packet")
    for name, cpu in figures.items():
        note = {
            "libopus mono": "what the receiver uses for a mono meeting (the default): s16, FEC and PLC",
            "libopus stereo": "what the receiver uses for a stereo meeting",
            "ffmpeg-native mono": "fltp frames, not converted; no in-band FEC",
            "ffmpeg-native stereo": "fltp frames, not converted; no in-band FEC",
            "ffmpeg-native stereo + s16": "converted to s16 stereo",
        }[name]
        print(f"  {name:22s} {cpu / n * 1e6:6.1f} us/packet  {cpu / n * 50 * 3600:6.1f} CPU-s per speaker-hour  "
              f"{cpu / best:5.2f}x  ({note})")
    print(f"  floor: {best_name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per MP3 candidate (default 60)")
    args = ap.parse_args()
    mp3_section(args.seconds)
    verification_section()
    opus_section(args.seconds)


if __name__ == "__main__":
    main()
