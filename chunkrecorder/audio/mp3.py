"""Gapless, independently encodable MP3 chunks.

MP3 chunks encoded one by one and joined drift: every encode adds the encoder's
delay and end padding (about 28 ms per boundary here) and a header mid-stream.
Carrying one encoder across a speaker's chunks would fix the join but ties every
chunk to in-memory state a crash destroys, and forbids encoding chunks in parallel.

Instead each chunk is cut on the MP3 frame grid (1152 samples) and encoded by a fresh
LAME encoder that is fed a little audio from before the chunk (``prime``) and after it
(``tail``). Of its output we keep exactly the frames whose decoded samples are the
chunk's own, so frame ``j`` of a track always decodes to timeline samples
``[j*1152, (j+1)*1152)``: the chunks' bytes concatenate into one stream with no
header mid-stream and no drift, whatever the number of chunks. The bit reservoir is
off, so no kept frame refers to bytes of a frame we dropped. Measured (see
tests/pipeline/test_mp3.py): the SNR around joins equals the SNR mid-chunk and equals a
single continuous encode.

The encoder is LAME, called through ctypes (``audio.lame``: the ``lameenc`` wheel's
build, about a quarter of the CPU of PyAV's); where no LAME library can be loaded,
PyAV's ``libmp3lame`` codec does the same work with the same settings. Either way a
chunk is verified by walking its frame headers before it is written: the count must
be exactly the body's frames, the stream must end on a frame boundary and carry
nothing but MPEG-1 Layer III frames. A full decode used to follow; it cost 10 % of
the encode and caught nothing the walk does not (bench/engines.py tries truncated,
missing, repeated and corrupted frames: the decode passes every corruption the walk
passes, because an MP3 decoder turns any payload into 1152 samples).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..utils.atomic import writing
from . import id3, lame

if TYPE_CHECKING:
    import av
    import numpy as np

#: Samples per MPEG-1 Layer III frame.
FRAME = 1152
#: Decoded-output delay of libmp3lame + FFmpeg's decoder at 48 kHz, as LAME reports it
#: (576 encoder delay + 529 decoder delay). Checked against the codec at run time.
EXPECTED_DELAY = 1105
#: Priming samples a chunk's PCM carries before its body: the smallest amount of at
#: least one frame that puts the body's first sample on an output frame boundary.
PRIME_SAMPLES = (FRAME - EXPECTED_DELAY % FRAME) % FRAME + FRAME
#: Look-ahead samples after the body, so the last kept frame is encoded with the real
#: continuation instead of the zeros a flush would pad with.
TAIL_SAMPLES = 2 * FRAME

DEFAULT_BITRATE = 64_000
#: LAME's -q 7: half the CPU of the default at no audible cost for speech at 64 kb/s.
DEFAULT_QUALITY = 7


class EncodeError(RuntimeError):
    """An encode that produced something other than what was asked; nothing was written."""


@dataclass(frozen=True, slots=True)
class ChunkMp3:
    """What one encoded chunk is: its frames, their samples, and the file's identity."""

    frames: int
    samples: int
    duration_ms: int
    sha256: str
    size_bytes: int


def frames_for(samples: int) -> int:
    return -(-samples // FRAME)


def _layout(channels: int) -> str:
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, not {channels}")
    return "mono" if channels == 1 else "stereo"


def engine() -> str:
    """What encodes MP3 in this process: "lame <version> (<source>)" or "pyav"."""
    lib = lame.load()
    return f"lame {lib.version} ({lib.source})" if lib is not None else "pyav"


#: What the owner reads at load when the ``lameenc`` wheel's LAME is not there.
SLOW_ENGINE_NOTICE = (
    "chunkrecorder: the Python package `lameenc` (the fast MP3 encoder) is missing or unusable here, "
    "so MP3s are encoded with PyAV's LAME at about 4x the CPU; run `[p]cog reinstallreqs` or "
    '`pip install "lameenc>=1.9,<2"` and reload the cog.'
)


def engine_notice() -> Optional[str]:
    """One sentence for the bot owner if encoding runs on a slower engine than it should, else None."""
    lib = lame.load()
    return None if lib is not None and lib.source == "lameenc" else SLOW_ENGINE_NOTICE


def _open_encoder(sample_rate: int, channels: int, bitrate: int, quality: int) -> "av.AudioCodecContext":
    """PyAV's libmp3lame with the pipeline's settings: the fallback engine (and the tests' reference)."""
    import av

    ctx = av.CodecContext.create("libmp3lame", "w")
    ctx.sample_rate = sample_rate
    ctx.layout = _layout(channels)
    ctx.format = "s16p"  # LAME takes planar input; for mono it is the same bytes
    ctx.bit_rate = bitrate
    ctx.options = {"reservoir": "0", "compression_level": str(quality)}
    ctx.open()
    return ctx


@functools.lru_cache(maxsize=None)
def codec_delay(sample_rate: int = 48_000, channels: int = 1) -> int:
    """The engine's decoded-output delay, read off the codec once per process.

    LAME reports its encoder delay (plus the decoder's fixed 529); through PyAV it is
    the first packet's negative pts. The priming arithmetic depends on it, so it is
    measured rather than trusted.
    """
    if lame.load() is not None:
        return lame.encoder_delay(sample_rate=sample_rate, channels=channels)
    import av
    import numpy as np

    ctx = _open_encoder(sample_rate, channels, DEFAULT_BITRATE, DEFAULT_QUALITY)
    silence = av.AudioFrame.from_ndarray(
        np.zeros((channels, 4 * FRAME), dtype=np.int16), format="s16p", layout=_layout(channels)
    )
    silence.sample_rate = sample_rate
    silence.pts = 0
    packets = [*ctx.encode(silence), *ctx.encode(None)]
    if not packets or packets[0].pts is None or packets[0].pts > 0:
        return EXPECTED_DELAY
    return -int(packets[0].pts)


@dataclass(frozen=True, slots=True)
class _Cut:
    """Which input samples to encode and which output frames are the body's."""

    start: int  # first input sample handed to the encoder
    skip: int  # output frames before the body's first
    want: int  # the body's frames
    end: int  # input samples needed at least (zeros past the input's end); the tail follows


def _cut(length: int, prime: int, body: int, sample_rate: int, channels: int) -> _Cut:
    if prime + body > length:
        raise ValueError(f"pcm has {length} samples, fewer than prime {prime} + body {body}")
    delay = codec_delay(sample_rate, channels)
    # Use as much of the priming as keeps the body on the output frame grid.
    usable = prime - ((prime + delay) % FRAME)
    if usable < 0:
        raise EncodeError(f"prime {prime} is too short for an encoder delay of {delay}")
    want = frames_for(body)
    return _Cut(start=prime - usable, skip=(usable + delay) // FRAME, want=want, end=prime + want * FRAME)


def _encode_stream(pcm: Any, samples: int, *, offset: int, sample_rate: int, channels: int,
                   bitrate: int, quality: int) -> bytes:
    """Every frame the engine makes of ``samples`` interleaved s16le samples, flushed."""
    if lame.load() is not None:
        return lame.encode(pcm, offset=offset, samples=samples, sample_rate=sample_rate,
                           channels=channels, bitrate=bitrate, quality=quality)
    import av
    import numpy as np

    src = np.frombuffer(memoryview(pcm).cast("B"), dtype="<i2", count=samples * channels,
                        offset=offset).reshape(-1, channels)
    ctx = _open_encoder(sample_rate, channels, bitrate, quality)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(src.T), format="s16p", layout=_layout(channels))
    frame.sample_rate = sample_rate
    frame.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def _body_frames(stream: bytes, cut: _Cut) -> bytes:
    """The body's frames out of a chunk's whole stream, checked by walking every header."""
    offsets = frame_offsets(stream)
    if len(offsets) - 1 < cut.skip + cut.want:
        raise EncodeError(f"encoder gave {max(0, len(offsets) - 1 - cut.skip)} frames for the body, "
                          f"expected {cut.want}")
    return stream[offsets[cut.skip] : offsets[cut.skip + cut.want]]


def encode_frames(
    pcm: "np.ndarray",
    *,
    prime: int,
    body: int,
    sample_rate: int = 48_000,
    channels: int = 1,
    bitrate: int = DEFAULT_BITRATE,
    quality: int = DEFAULT_QUALITY,
) -> list[bytes]:
    """Encode ``pcm`` (int16, shape (n, channels)) and keep the frames of ``[prime, prime+body)``.

    ``body`` need not be a multiple of the frame: the last frame is completed with
    the tail (or zeros), which is how the final chunk of a meeting ends.
    """
    import numpy as np

    if pcm.ndim != 2 or pcm.shape[1] != channels or pcm.dtype != np.int16:
        raise ValueError(f"pcm must be int16 of shape (n, {channels}), got {pcm.dtype} {pcm.shape}")
    cut = _cut(len(pcm), prime, body, sample_rate, channels)
    # Everything from the usable prime on, tail included: the last kept frame's MDCT
    # overlaps into the next chunk's first samples, so it must see the real continuation.
    src = np.ascontiguousarray(pcm[cut.start :])
    if len(pcm) < cut.end:
        src = np.concatenate([src, np.zeros((cut.end - len(pcm), channels), dtype=np.int16)])
    stream = _encode_stream(src, len(src), offset=0, sample_rate=sample_rate, channels=channels,
                            bitrate=bitrate, quality=quality)
    data = _body_frames(stream, cut)
    step = len(data) // cut.want if cut.want else 0
    if step * cut.want == len(data):  # constant-size frames (always so at 48 kHz CBR)
        return [data[i : i + step] for i in range(0, len(data), step)]
    offsets = frame_offsets(data)
    return [data[a:b] for a, b in zip(offsets, offsets[1:])]


def decode(data: bytes, *, channels: Optional[int] = None) -> "np.ndarray":
    """Decode MP3 bytes to int16 (n, channels), no trimming: what a player hears.

    An ID3v2 tag in front (a finished file's metadata) is skipped, as players do.
    """
    import av
    import numpy as np

    data = data[id3.tag_length(data[: id3.HEADER_SIZE]) :]

    ctx = av.CodecContext.create("mp3", "r")
    out: list[np.ndarray] = []
    resampler: Optional[av.AudioResampler] = None

    def take(frames: list[Any]) -> None:
        nonlocal resampler
        for frame in frames:
            if resampler is None:
                layout = _layout(channels or frame.layout.nb_channels)
                resampler = av.AudioResampler(format="s16", layout=layout, rate=frame.sample_rate)
            for f in resampler.resample(frame):
                out.append(f.to_ndarray().reshape(-1, len(f.layout.channels)))

    for packet in ctx.parse(data):
        take(ctx.decode(packet))
    take(ctx.decode(None))
    if resampler is not None:
        for f in resampler.resample(None):
            out.append(f.to_ndarray().reshape(-1, len(f.layout.channels)))
    if not out:
        return np.zeros((0, channels or 1), dtype=np.int16)
    return np.concatenate(out)


def decoded_samples(data: bytes) -> int:
    """Samples FFmpeg's decoder gets out of ``data``: the full decode the chunks no longer get.

    Kept for bench/engines.py, which shows what it would catch beyond the frame walk
    (nothing) and what it would cost.
    """
    import av

    data = data[id3.tag_length(data[: id3.HEADER_SIZE]) :]  # a finished file's tag is not audio
    ctx = av.CodecContext.create("mp3", "r")
    n = 0
    for packet in ctx.parse(data):
        for frame in ctx.decode(packet):
            n += frame.samples
    for frame in ctx.decode(None):
        n += frame.samples
    return n


def frame_offsets(data: bytes) -> list[int]:
    """Byte offset of every MPEG-1 Layer III frame in ``data``, then its end.

    Raises :class:`EncodeError` unless ``data`` is nothing but whole frames.
    """
    fast = _constant_frames(data)
    if fast is not None:
        return fast
    offsets = []
    pos = 0
    size = len(data)
    while pos + 4 <= size:
        h = int.from_bytes(data[pos : pos + 4], "big")
        if (h >> 21) & 0x7FF != 0x7FF:
            raise EncodeError(f"no MP3 frame header at byte {pos}")
        bitrate_idx = (h >> 12) & 0xF
        rate_idx = (h >> 10) & 0x3
        padding = (h >> 9) & 0x1
        version = (h >> 19) & 0x3
        layer = (h >> 17) & 0x3
        if version != 3 or layer != 1 or bitrate_idx in (0, 15) or rate_idx == 3:
            raise EncodeError(f"unsupported MP3 frame header at byte {pos}")
        bitrate = _MPEG1_L3_KBPS[bitrate_idx] * 1000
        rate = (44_100, 48_000, 32_000)[rate_idx]
        offsets.append(pos)
        pos += 144 * bitrate // rate + padding
    if pos != size:
        raise EncodeError("MP3 stream ends inside a frame")
    offsets.append(pos)
    return offsets


def _constant_frames(data: bytes) -> Optional[list[int]]:
    """The walk's answer when every frame has the first one's header and size, else None.

    LAME's CBR frames at 48 kHz never carry a padding byte, so all of a mono chunk's
    headers are the same four bytes: a comparison at each frame's offset finds that in
    a tenth of the time the general walk takes (which still runs when this says no).
    """
    if len(data) < 4:
        return None
    h = int.from_bytes(data[:4], "big")
    if (h >> 21) & 0x7FF != 0x7FF or (h >> 19) & 0x3 != 3 or (h >> 17) & 0x3 != 1:
        return None
    bitrate_idx, rate_idx = (h >> 12) & 0xF, (h >> 10) & 0x3
    if bitrate_idx in (0, 15) or rate_idx == 3:
        return None
    size = 144 * _MPEG1_L3_KBPS[bitrate_idx] * 1000 // (44_100, 48_000, 32_000)[rate_idx] + ((h >> 9) & 1)
    if len(data) % size:
        return None
    head = data[:4]
    ends = range(0, len(data), size)
    if not all(data.startswith(head, i) for i in ends):
        return None
    return [*ends, len(data)]


def count_frames(data: bytes) -> int:
    """Frames in an MP3 byte stream, by walking headers: a cheap integrity check.

    An ID3v2 tag in front (a finished file's metadata) is not a frame and is skipped.
    """
    tag = id3.tag_length(data[: id3.HEADER_SIZE])
    return len(frame_offsets(data[tag:] if tag else data)) - 1


_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)


def existing_chunk(mp3_path: Path | str, *, body: int, sample_rate: int = 48_000) -> Optional[ChunkMp3]:
    """The chunk MP3 already at ``mp3_path`` if it is exactly ``body``'s frames, else None."""
    try:
        data = Path(mp3_path).read_bytes()
    except OSError:
        return None
    want = frames_for(body)
    try:
        if count_frames(data) != want:
            return None
    except EncodeError:
        return None
    samples = want * FRAME
    return ChunkMp3(
        frames=want,
        samples=samples,
        duration_ms=round(samples * 1000 / sample_rate),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename: a reader sees the old file or the whole new one."""
    with writing(path, tmp_suffix=".part") as fh:
        fh.write(data)


def encode_chunk_file(
    pcm_path: Path | str,
    mp3_path: Path | str,
    *,
    prime: int,
    body: int,
    sample_rate: int = 48_000,
    channels: int = 1,
    bitrate: int = DEFAULT_BITRATE,
    quality: int = DEFAULT_QUALITY,
    verify: bool = True,
) -> ChunkMp3:
    """Encode one PCM chunk file (s16le interleaved) to its MP3 chunk file.

    Runs in a worker process or thread: it touches no event loop and no database,
    and (with LAME loaded) imports neither numpy nor PyAV. The MP3 is verified (every
    frame header walked, exactly the body's frames, nothing else in the stream) before
    it is written, so a DONE row never points at a broken file. ``verify`` is kept for
    callers of the old signature; the walk is how the body is cut, so it always runs.
    """
    path = Path(pcm_path)
    with open(path, "rb") as fh:
        raw = bytearray(os.fstat(fh.fileno()).st_size)
        got = fh.readinto(raw)
    bytes_per_sample = 2 * channels
    if got != len(raw) or len(raw) % bytes_per_sample:
        raise EncodeError(f"{pcm_path} is {got} bytes, not whole {channels}-channel samples")
    cut = _cut(len(raw) // bytes_per_sample, prime, body, sample_rate, channels)
    end = cut.end * bytes_per_sample
    if end > len(raw):
        raw.extend(bytes(end - len(raw)))  # the meeting's last chunk: zeros after its end
    stream = _encode_stream(raw, len(raw) // bytes_per_sample - cut.start, offset=cut.start * bytes_per_sample,
                            sample_rate=sample_rate, channels=channels, bitrate=bitrate, quality=quality)
    data = _body_frames(stream, cut)  # walks every frame; exactly the body's count
    write_atomic(Path(mp3_path), data)
    samples = cut.want * FRAME
    return ChunkMp3(
        frames=cut.want,
        samples=samples,
        duration_ms=round(samples * 1000 / sample_rate),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )
