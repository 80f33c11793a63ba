"""The lossless archive: FLAC chunks that join into one stream, and the file around them.

FLAC frames are independent (no state crosses a frame), so unlike MP3 a chunk needs
no priming and no look-ahead: its body is encoded on its own, and the chunks' frames
of one track, laid end to end, are the track. What does cross frames is their
*numbering*: every frame header carries its position (a frame number in a
fixed-blocksize stream, the number of its first sample in a variable-blocksize one),
protected by a CRC-8 over the header and a CRC-16 over the whole frame. An encoder
that starts on a chunk numbers its frames from 0, and in a fixed-blocksize stream only
the last frame may be short, which a chunk's last frame usually is.

So each chunk's frames are renumbered *in the encoder process*, right after FFmpeg
(PyAV's bundled ``flac`` encoder, in-process: ``bench/flac.py`` measures it against the
FFmpeg binary behind a pipe) made them: the header becomes variable-blocksize with the
timeline sample its frame starts at (any chunk length is then legal), its CRC-8 is
recomputed (a few bytes), and its CRC-16 is *updated* rather than recomputed: the
FLAC CRC-16 is linear with a zero start, so ``crc(H' + R) = crc(R) ^ shift(crc(H'), |R|)``
and ``crc(R)`` follows from the old CRC and old header the same way; ``shift`` is a
multiplication by ``x^(8|R|)`` mod the polynomial (16 steps), so a frame costs the same
whatever its size, where a byte loop in Python would cost more than the encode. The
assembler then only appends bytes, as for MP3, and silence is made here directly as
CONSTANT-subframe frames numbered for its window.

A chunk file (``chunks/<meeting>/<user>_<seq>.flac``) is a complete little FLAC file:
``fLaC``, a STREAMINFO (its body's samples and MD5) and the renumbered frames. That is
what makes it checkable without decoding (total samples, first frame at its window's
sample) and playable on its own; the assembler appends only the frames
(:func:`chunk_frames`). Before a chunk is written, it is decoded and compared with the
PCM it came from: lossless means identical, so the check is exact.

The finished file is ``fLaC``, STREAMINFO (min/max block and frame sizes, total
samples, MD5 of the decoded audio), a SEEKTABLE (a point every 10 s: where parts are cut
and players seek), a VORBIS_COMMENT (the tags: :func:`set_comments`) and then the
frames, byte for byte the ``.part``'s. The STREAMINFO is measured on the frames
themselves by decoding them at finish (:func:`scan`), so it stays right whatever
happened to the file before: a crash, a recovery, a repair that splices frames in.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence

from ..utils.atomic import copy_range, writing
from . import vorbis

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "MAGIC", "BLOCK", "FlacError", "StreamInfo", "ChunkFlac", "encode_frames", "encode_chunk_file",
    "existing_chunk", "chunk_frames", "silence", "scan", "build_header", "finish_track",
    "set_comments", "read_stream_info", "metadata_end", "seek_offsets", "decode_pcm", "renumber",
]

MAGIC = b"fLaC"
#: Samples per frame: FFmpeg's choice at 48 kHz, the largest the FLAC subset allows there.
BLOCK = 4608
#: Seek points (and places parts may be cut): one every this many seconds.
SEEK_EVERY_S = 10
VENDOR = "chunkrecorder"

_STREAMINFO, _PADDING, _SEEKTABLE, _VORBIS_COMMENT = 0, 1, 3, 4


class FlacError(RuntimeError):
    """Bytes that are not the FLAC this module wrote or expected; nothing was written."""


# ---------------------------------------------------------------------- CRCs
def _table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    out = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & top else (crc << 1)
        out.append(crc & mask)
    return out


_CRC8 = _table(0x07, 8)
_CRC16 = _table(0x8005, 16)


def crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def crc16(data: bytes) -> int:
    """FLAC's frame CRC (poly 0x8005, zero start, no reflection); a byte loop: small inputs only."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _mulmod(a: int, b: int) -> int:
    """``a * b`` mod the CRC-16 polynomial, over GF(2)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a <<= 1
        if a & 0x10000:
            a ^= 0x18005
    return out


def _shift(crc: int, nbytes: int) -> int:
    """The CRC of ``data + nbytes zeros`` from the CRC of ``data``: ``crc * x^(8 nbytes)`` mod P."""
    power, base, e = 1, 1 << 8, nbytes  # x^8 per byte
    while e:
        if e & 1:
            power = _mulmod(power, base)
        base = _mulmod(base, base)
        e >>= 1
    return _mulmod(crc, power)


# ---------------------------------------------------------------------- frame headers
def _utf8(n: int) -> bytes:
    """FLAC's extended UTF-8 coding of a frame or sample number (up to 36 bits)."""
    if n < 0x80:
        return bytes([n])
    for length, limit in ((2, 1 << 11), (3, 1 << 16), (4, 1 << 21), (5, 1 << 26), (6, 1 << 31), (7, 1 << 36)):
        if n < limit:
            break
    else:
        raise FlacError(f"sample number {n} is out of range")
    out = []
    for _ in range(length - 1):
        out.append(0x80 | (n & 0x3F))
        n >>= 6
    lead = (0xFF << (8 - length)) & 0xFF if length < 7 else 0xFE
    out.append(lead | n)
    return bytes(reversed(out))


def _read_utf8(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    length = 0
    while length < 8 and first & (0x80 >> length):
        length += 1
    if length < 2 or length > 7:
        raise FlacError("bad coded number in a frame header")
    value = first & (0x7F >> length) if length < 7 else 0
    for i in range(1, length):
        b = data[pos + i]
        if b & 0xC0 != 0x80:
            raise FlacError("bad coded number in a frame header")
        value = (value << 6) | (b & 0x3F)
    return value, pos + length


_BLOCK_CODES = {1: 192, 2: 576, 3: 1152, 4: 2304, 5: 4608, 8: 256, 9: 512, 10: 1024, 11: 2048,
                12: 4096, 13: 8192, 14: 16384, 15: 32768}


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """A parsed frame header: ``size`` bytes including its CRC-8."""

    size: int
    block_size: int
    number: int
    variable: bool
    number_end: int  # where the coded number ends (the block size / rate extras follow)


def parse_frame_header(data: bytes, pos: int = 0) -> FrameHeader:
    """The frame header at ``pos``, its CRC-8 checked; raises :class:`FlacError` otherwise."""
    try:
        if data[pos] != 0xFF or data[pos + 1] & 0xFE != 0xF8:
            raise FlacError(f"no FLAC frame at byte {pos}")
        variable = bool(data[pos + 1] & 1)
        bs_code, sr_code = data[pos + 2] >> 4, data[pos + 2] & 0xF
        number, p = _read_utf8(data, pos + 4)
        number_end = p
        if bs_code == 6:
            block = data[p] + 1
            p += 1
        elif bs_code == 7:
            block = int.from_bytes(data[p : p + 2], "big") + 1
            p += 2
        elif bs_code in _BLOCK_CODES:
            block = _BLOCK_CODES[bs_code]
        else:
            raise FlacError(f"reserved block size in the frame at byte {pos}")
        p += {12: 1, 13: 2, 14: 2}.get(sr_code, 0)
        if crc8(data[pos:p]) != data[p]:
            raise FlacError(f"frame header CRC mismatch at byte {pos}")
    except IndexError:
        raise FlacError(f"truncated frame header at byte {pos}") from None
    return FrameHeader(p + 1 - pos, block, number, variable, number_end - pos)


def renumber(frame: bytes, first_sample: int) -> bytes:
    """The same frame as a variable-blocksize frame starting at ``first_sample`` (CRCs made right)."""
    h = parse_frame_header(frame)
    old_head = frame[: h.size]
    extras = frame[h.number_end : h.size - 1]
    head = bytes([0xFF, 0xF9, frame[2], frame[3]]) + _utf8(first_sample) + extras
    head += bytes([crc8(head)])
    rest_len = len(frame) - h.size - 2
    crc_rest = int.from_bytes(frame[-2:], "big") ^ _shift(crc16(old_head), rest_len)
    crc = crc_rest ^ _shift(crc16(head), rest_len)
    return head + frame[h.size : -2] + crc.to_bytes(2, "big")


def _sample_rate_code(sample_rate: int) -> int:
    return {88_200: 1, 176_400: 2, 192_000: 3, 8_000: 4, 16_000: 5, 22_050: 6, 24_000: 7,
            32_000: 8, 44_100: 9, 48_000: 10, 96_000: 11}.get(sample_rate, 0)


def _silent_frame(first_sample: int, block: int, channels: int, sample_rate: int) -> bytes:
    head = bytes([0xFF, 0xF9, 0x70 | _sample_rate_code(sample_rate), ((channels - 1) << 4) | (4 << 1)])
    head += _utf8(first_sample) + (block - 1).to_bytes(2, "big")
    head += bytes([crc8(head)])
    body = head + b"\x00\x00\x00" * channels  # per channel: CONSTANT subframe, value 0 (16 bits)
    return body + crc16(body).to_bytes(2, "big")


def silence(first_sample: int, samples: int, *, channels: int, sample_rate: int = 48_000) -> bytes:
    """Frames of digital silence for ``samples`` samples from timeline sample ``first_sample``."""
    out = bytearray()
    pos = 0
    while pos < samples:
        block = min(BLOCK, samples - pos)
        out += _silent_frame(first_sample + pos, block, channels, sample_rate)
        pos += block
    return bytes(out)


# ---------------------------------------------------------------------- metadata
@dataclass(frozen=True, slots=True)
class StreamInfo:
    min_block: int
    max_block: int
    min_frame: int
    max_frame: int
    sample_rate: int
    channels: int
    bits: int
    total_samples: int
    md5: bytes

    def pack(self) -> bytes:
        v = (self.sample_rate << 44) | ((self.channels - 1) << 41) | ((self.bits - 1) << 36) | self.total_samples
        return (struct.pack(">HH", self.min_block, self.max_block) + self.min_frame.to_bytes(3, "big")
                + self.max_frame.to_bytes(3, "big") + v.to_bytes(8, "big") + self.md5)

    @classmethod
    def unpack(cls, data: bytes) -> "StreamInfo":
        if len(data) != 34:
            raise FlacError("STREAMINFO is not 34 bytes")
        min_block, max_block = struct.unpack(">HH", data[:4])
        v = int.from_bytes(data[10:18], "big")
        return cls(min_block, max_block, int.from_bytes(data[4:7], "big"), int.from_bytes(data[7:10], "big"),
                   v >> 44, ((v >> 41) & 7) + 1, ((v >> 36) & 31) + 1, v & ((1 << 36) - 1), data[18:34])


def _block(kind: int, payload: bytes, last: bool) -> bytes:
    if len(payload) >= 1 << 24:
        raise FlacError("metadata block too large")
    return bytes([(0x80 if last else 0) | kind]) + len(payload).to_bytes(3, "big") + payload


def _blocks(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(kind, payload start, payload end)`` of each metadata block of a FLAC file's head."""
    if data[:4] != MAGIC:
        raise FlacError("not a FLAC file (no fLaC marker)")
    pos = 4
    while True:
        if pos + 4 > len(data):
            raise FlacError("truncated FLAC metadata")
        head = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + 4 + size > len(data):
            raise FlacError("truncated FLAC metadata")
        yield head & 0x7F, pos + 4, pos + 4 + size
        pos += 4 + size
        if head & 0x80:
            return


def _read_head(path: Path) -> bytes:
    """Enough of a FLAC file to hold its metadata (blocking)."""
    with open(path, "rb") as fh:
        data = fh.read(1 << 16)
        while True:
            try:
                metadata_end(data)
                return data
            except FlacError:
                more = fh.read(1 << 20)
                if not more:
                    raise
                data += more


def metadata_end(data: bytes) -> int:
    """Where the first frame starts: after the last metadata block."""
    end = 4
    for _, _, end in _blocks(data):
        pass
    return end


def read_stream_info(data: bytes) -> StreamInfo:
    kind, start, end = next(_blocks(data))
    if kind != _STREAMINFO:
        raise FlacError("the first metadata block is not STREAMINFO")
    return StreamInfo.unpack(data[start:end])


def seek_offsets(data: bytes) -> list[int]:
    """Frame offsets (from the first frame) the SEEKTABLE names, ascending, placeholders skipped."""
    out: list[int] = []
    for kind, start, end in _blocks(data):
        if kind == _SEEKTABLE:
            for p in range(start, end - 17, 18):
                sample, offset, _ = struct.unpack(">QQH", data[p : p + 18])
                if sample != 0xFFFFFFFFFFFFFFFF:
                    out.append(offset)
    return sorted(set(out))


def _comment_body(vendor: str, comments: Sequence[tuple[str, str]]) -> bytes:
    """The VORBIS_COMMENT block's payload: the structure OpusTags shares (``audio.vorbis``)."""
    return vorbis.comment_packet_body(vendor, comments)


def build_header(info: StreamInfo, *, seekpoints: Sequence[tuple[int, int, int]] = (),
                 comments: Sequence[tuple[str, str]] = (), vendor: str = VENDOR) -> bytes:
    """``fLaC``, STREAMINFO, SEEKTABLE (``(sample, offset, samples)`` points), VORBIS_COMMENT."""
    blocks = [(_STREAMINFO, info.pack())]
    if seekpoints:
        blocks.append((_SEEKTABLE, b"".join(struct.pack(">QQH", *p) for p in seekpoints)))
    blocks.append((_VORBIS_COMMENT, _comment_body(vendor, comments)))
    return MAGIC + b"".join(_block(k, p, i == len(blocks) - 1) for i, (k, p) in enumerate(blocks))


# ---------------------------------------------------------------------- encoding
@dataclass(frozen=True, slots=True)
class ChunkFlac:
    """One encoded chunk (the same fields as ``mp3.ChunkMp3``, so the transcoder treats both alike)."""

    frames: int
    samples: int
    duration_ms: int
    sha256: str
    size_bytes: int


def encode_frames(pcm: "np.ndarray", *, first_sample: int, sample_rate: int, channels: int) -> list[bytes]:
    """FLAC frames of ``pcm`` (int16, ``(samples, channels)``), numbered from timeline sample ``first_sample``."""
    import av

    ctx = av.CodecContext.create("flac", "w")
    ctx.sample_rate = sample_rate
    ctx.layout = "mono" if channels == 1 else "stereo"
    ctx.format = "s16"
    ctx.open()
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=ctx.layout)
    frame.sample_rate = sample_rate
    packets = [*ctx.encode(frame), *ctx.encode(None)]
    out = []
    pos = first_sample
    for packet in packets:
        data = bytes(packet)
        if not data:
            continue  # the encoder's final STREAMINFO update, not a frame
        out.append(renumber(data, pos))
        pos += parse_frame_header(data).block_size
    if pos - first_sample != len(pcm):
        raise FlacError(f"the encoder gave {pos - first_sample} samples for {len(pcm)}")
    return out


def decode_pcm(data: bytes) -> "np.ndarray":
    """Decode a FLAC file's bytes to int16 ``(samples, channels)`` (FFmpeg, strict)."""
    import av
    import numpy as np

    parts = []
    with av.open(io.BytesIO(data), mode="r", format="flac") as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            if frame.format.is_planar:
                arr = arr.T
            else:
                arr = arr.reshape(-1, channels)
            parts.append(arr.astype(np.int16, copy=False))
    if not parts:
        return np.zeros((0, 1), dtype=np.int16)
    return np.concatenate(parts)


def _chunk_info(frames: Sequence[bytes], samples: int, pcm_md5: bytes, sample_rate: int, channels: int) -> StreamInfo:
    sizes = [len(f) for f in frames]
    return StreamInfo(16, BLOCK, min(sizes), max(sizes), sample_rate, channels, 16, samples, pcm_md5)


def encode_chunk_file(pcm_path: Path | str, flac_path: Path | str, *, prime: int, body: int, first_sample: int,
                      sample_rate: int = 48_000, channels: int = 1) -> ChunkFlac:
    """Encode one chunk's body (s16le PCM file: prime, body, tail) to its FLAC chunk file, verified.

    Runs in an encoder process. The file is written (atomically) only after its
    frames decoded back to exactly the body's samples.
    """
    import numpy as np

    raw = np.fromfile(str(pcm_path), dtype="<i2")
    if raw.size % channels:
        raise FlacError(f"{pcm_path} is not whole {channels}-channel samples")
    pcm = raw.reshape(-1, channels)[prime : prime + body]
    if len(pcm) < body:  # the meeting's last chunk may end early: zeros after its end
        pcm = np.concatenate([pcm, np.zeros((body - len(pcm), channels), dtype=np.int16)])
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    frames = encode_frames(pcm, first_sample=first_sample, sample_rate=sample_rate, channels=channels)
    info = _chunk_info(frames, body, hashlib.md5(pcm.tobytes()).digest(), sample_rate, channels)
    data = build_header(info) + b"".join(frames)
    back = decode_pcm(data)
    if back.shape != pcm.shape or not np.array_equal(back, pcm):
        raise FlacError(f"the FLAC of {pcm_path} does not decode to its PCM")
    _write_atomic(Path(flac_path), data)
    return _describe(data, body, sample_rate)


def _describe(data: bytes, body: int, sample_rate: int) -> ChunkFlac:
    return ChunkFlac(frames=-(-body // BLOCK), samples=body, duration_ms=round(body * 1000 / sample_rate),
                     sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def chunk_frames(data: bytes, *, body: int, first_sample: int) -> bytes:
    """The frames of a chunk file, checked to be ``body`` samples from ``first_sample``; else FlacError."""
    info = read_stream_info(data)
    start = metadata_end(data)
    if info.total_samples != body:
        raise FlacError(f"the chunk holds {info.total_samples} samples, not {body}")
    if start >= len(data):
        raise FlacError("the chunk has no frames")
    head = parse_frame_header(data, start)
    if not head.variable or head.number != first_sample:
        raise FlacError(f"the chunk's first frame is not at sample {first_sample}")
    return data[start:]


def existing_chunk(flac_path: Path | str, *, body: int, first_sample: int, sample_rate: int = 48_000) -> Optional[ChunkFlac]:
    """The chunk file already at ``flac_path`` if it is this chunk, else None."""
    try:
        data = Path(flac_path).read_bytes()
        chunk_frames(data, body=body, first_sample=first_sample)
    except (OSError, FlacError):
        return None
    return _describe(data, body, sample_rate)


def _write_atomic(path: Path, data: bytes) -> None:
    with writing(path) as fh:
        fh.write(data)


# ---------------------------------------------------------------------- the finished file
@dataclass(frozen=True, slots=True)
class Scan:
    """What decoding a track's frames found: its STREAMINFO and where its seek points go."""

    info: StreamInfo
    seekpoints: list[tuple[int, int, int]]


class Measure:
    """A running measurement of a track's frames, fed in order (``feed``): what the
    STREAMINFO and SEEKTABLE need. The assembler keeps one per track and feeds each
    chunk as it appends it, so finishing a track decodes nothing (see ``finish_track``).
    Not picklable and only valid in this process (the MD5 state): after a restart the
    finish measures the whole ``.part`` once instead.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sample_rate, self.channels = sample_rate, channels
        self.md5 = hashlib.md5()
        self.total = 0
        self.bytes = 0
        self.blocks: tuple[int, int, int] = (1 << 16, 0, 0)  # min (but the last), max, the last
        self.frames: tuple[int, int] = (1 << 24, 0)
        self.seekpoints: list[tuple[int, int, int]] = []

    def copy(self) -> "Measure":
        other = Measure(self.sample_rate, self.channels)
        other.md5, other.total, other.bytes = self.md5.copy(), self.total, self.bytes
        other.blocks, other.frames, other.seekpoints = self.blocks, self.frames, list(self.seekpoints)
        return other

    def feed(self, frames: bytes) -> None:
        """Decode whole frames that follow what was fed (FFmpeg, errors fatal) and count them in."""
        import av

        if not frames:
            return
        provisional = StreamInfo(16, 65535, 0, 0, self.sample_rate, self.channels, 16, 0, bytes(16))
        head = build_header(provisional)
        every = SEEK_EVERY_S * self.sample_rate
        expect = 0
        try:
            with av.open(io.BytesIO(head + frames), mode="r", format="flac") as container:
                stream = container.streams.audio[0]
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    pos = (packet.pos or 0) - len(head)
                    if pos != expect:
                        raise FlacError(f"the frames do not tile their bytes (byte {pos}, not {expect})")
                    got = 0
                    for frame in packet.decode():
                        arr = frame.to_ndarray()
                        if frame.format.is_planar:
                            arr = arr.T
                        self.md5.update(arr.astype("<i2", copy=False).tobytes())
                        got += frame.samples
                    if not self.seekpoints or self.total >= (self.seekpoints[-1][0] // every + 1) * every:
                        self.seekpoints.append((self.total, self.bytes + pos, got))
                    lo, hi, last = self.blocks
                    self.blocks = (min(lo, last) if self.total else lo, max(hi, got), got)
                    self.frames = (min(self.frames[0], packet.size), max(self.frames[1], packet.size))
                    self.total += got
                    expect = pos + packet.size
        except FlacError:
            raise
        except Exception as exc:  # noqa: BLE001 - FFmpeg's own errors: not valid frames
            raise FlacError(f"the frames do not decode ({type(exc).__name__}: {exc})") from None
        if expect != len(frames):
            raise FlacError(f"{len(frames) - expect} bytes after the last whole frame")
        self.bytes += len(frames)

    def result(self) -> Scan:
        if not self.total:
            raise FlacError("no frames")
        lo, hi, last = self.blocks
        info = StreamInfo(lo if lo < (1 << 16) else last, hi, self.frames[0], self.frames[1], self.sample_rate,
                          self.channels, 16, self.total, self.md5.digest())
        return Scan(info, list(self.seekpoints))


def scan(frames_path: Path, *, offset: int, length: int, sample_rate: int, channels: int,
         step: int = 4 << 20) -> Scan:
    """Decode ``length`` bytes of frames at ``offset`` of a file: the true STREAMINFO (blocking).

    Every frame is decoded (FFmpeg, errors are fatal): total samples and the MD5 of the
    decoded s16le samples are the decoder's, block and frame sizes the demuxer's
    packets, which must tile the bytes exactly. Read and decoded a few MiB at a time,
    cut at frame starts (the sample number each window's first frame carries).
    """
    m = Measure(sample_rate, channels)
    with open(frames_path, "rb") as fh:
        fh.seek(offset)
        frames = fh.read(length)
    if len(frames) != length:
        raise FlacError(f"{frames_path.name} ended before its {length} bytes of frames")
    pos = 0
    while pos < length:
        search = pos + step
        while True:
            nxt = _next_frame(frames, search) if search < length else None
            cut = nxt if nxt is not None else length
            trial = m.copy()
            try:
                trial.feed(frames[pos:cut])
                break
            except FlacError:
                if cut == length:
                    raise
                search = cut + 1  # audio bytes that looked like a frame header: the next one
        m, pos = trial, cut
    return m.result()


def _next_frame(frames: bytes, at: int) -> Optional[int]:
    """Offset of the first frame header (sync code and CRC-8 right) at or after ``at``."""
    pos = at
    while True:
        pos = frames.find(b"\xff\xf9", pos)
        if pos < 0:
            return None
        try:
            parse_frame_header(frames, pos)
            return pos
        except FlacError:
            pos += 1


def finish_track(part: Path, final: Path, *, length: int, sample_rate: int, channels: int,
                 measured: Optional[Measure] = None) -> tuple[str, int, int]:
    """``final`` = FLAC header measured on the ``.part``'s first ``length`` bytes, then those bytes.

    Idempotent (blocking): with the ``.part`` gone, a finished file whose frames are
    ``length`` bytes is checked and described instead. Returns ``(sha256, size, samples)``.
    """
    if part.exists():
        if part.stat().st_size < length:
            raise FlacError(f"{part.name} has fewer than the {length} bytes assembled")
        if measured is not None and measured.bytes == length:
            found = measured.result()  # fed chunk by chunk as they were appended
        else:
            found = scan(part, offset=0, length=length, sample_rate=sample_rate, channels=channels)
        header = build_header(found.info, seekpoints=found.seekpoints)
        _write_with_header(final, header, part, offset=0, length=length)
        part.unlink()
    head = _read_head(final)
    start = metadata_end(head)
    info = read_stream_info(head)
    size = final.stat().st_size
    if size - start != length:
        raise FlacError(f"{final.name} is missing or not the {length} bytes assembled")
    h = hashlib.sha256()
    with open(final, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), size, info.total_samples


def refresh_header(path: Path) -> tuple[str, int, int]:
    """Re-measure a finished file's STREAMINFO (and seek points) after its frames changed (repair)."""
    head = _read_head(path)
    start = metadata_end(head)
    old = read_stream_info(head)
    comments = _comments(head)
    size = path.stat().st_size
    found = scan(path, offset=start, length=size - start, sample_rate=old.sample_rate, channels=old.channels)
    vendor, pairs = comments if comments else (VENDOR, [])
    header = build_header(found.info, seekpoints=found.seekpoints, comments=pairs, vendor=vendor)
    _write_with_header(path, header, path, offset=start, length=size - start)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), path.stat().st_size, found.info.total_samples


def _comments(head: bytes) -> Optional[tuple[str, list[tuple[str, str]]]]:
    """``(vendor, comments)`` of the VORBIS_COMMENT block, or None if there is none."""
    for kind, start, end in _blocks(head):
        if kind == _VORBIS_COMMENT:
            return vorbis.parse_comment_body(head[start:end])
    return None


def read_comments(path: Path) -> list[tuple[str, str]]:
    """The Vorbis comments of a FLAC file (empty when it has none)."""
    found = _comments(_read_head(path))
    return found[1] if found else []


def set_comments(path: Path, comments: Sequence[tuple[str, str]], vendor: str = VENDOR) -> None:
    """Replace the file's Vorbis comments (blocking; atomic: temp file and ``os.replace``).

    STREAMINFO stays first and untouched, other blocks (the SEEKTABLE) are kept, the one
    VORBIS_COMMENT is replaced or added, PADDING is dropped; the frames are not touched.
    """
    head = _read_head(path)
    start = metadata_end(head)
    kept = [(kind, head[s:e]) for kind, s, e in _blocks(head) if kind not in (_VORBIS_COMMENT, _PADDING)]
    if not kept or kept[0][0] != _STREAMINFO:
        raise FlacError(f"{path.name} does not start with STREAMINFO")
    kept.append((_VORBIS_COMMENT, _comment_body(vendor, comments)))
    header = MAGIC + b"".join(_block(k, p, i == len(kept) - 1) for i, (k, p) in enumerate(kept))
    size = path.stat().st_size
    _write_with_header(path, header, path, offset=start, length=size - start)


def _write_with_header(dst: Path, header: bytes, src: Path, *, offset: int, length: int) -> None:
    """``header`` then ``length`` bytes of ``src`` from ``offset``, to ``dst`` atomically (``src`` may be ``dst``)."""
    with open(src, "rb") as fin, writing(dst, sync_dir=True) as fout:
        fout.write(header)
        missing = copy_range(fin, fout, offset=offset, length=length)
        if missing:
            raise FlacError(f"{src.name} ended {missing} bytes early")


def window_offsets(frames: bytes, starts: Iterable[int]) -> list[int]:
    """Byte offsets in ``frames`` of the frames starting at each timeline sample of ``starts``, in
    order, as far as they are found (a lost database's ``.part``: where its windows begin).

    A frame is recognised by its sync code, its CRC-8 and the exact sample number it
    must carry, so audio bytes that happen to look like a sync code are passed over.
    """
    out: list[int] = []
    pos = 0
    for sample in starts:
        found = _find_frame(frames, pos, sample)
        if found is None:
            return out
        pos = found[0]
        out.append(pos)
        pos += 1
    return out


def _find_frame(frames: bytes, pos: int, number: int) -> Optional[tuple[int, FrameHeader]]:
    """The first frame at or after ``pos`` that starts at sample ``number``: a sync code,
    a header whose CRC-8 is right, variable blocking and that number (audio bytes that
    happen to look like a sync code are passed over); None if there is none."""
    while True:
        pos = frames.find(b"\xff\xf9", pos)
        if pos < 0:
            return None
        try:
            head = parse_frame_header(frames, pos)
            if head.variable and head.number == number:
                return pos, head
        except FlacError:
            pass
        pos += 1


def samples_in(path: Path, *, offset: int, length: int, sample_rate: int, channels: int) -> Optional[int]:
    """Samples in ``length`` bytes of whole frames at ``offset`` of a file, or None if they are not that."""
    try:
        return scan(path, offset=offset, length=length, sample_rate=sample_rate, channels=channels).info.total_samples
    except (FlacError, OSError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - FFmpeg's errors (av.error.*): not whole frames
        return None


def splice(path: Path, pieces: Sequence[tuple[int, int, bytes]]) -> tuple[int, str]:
    """Replace windows of a finished FLAC in place (a repair): each piece is ``(first sample,
    end sample, frames)``, the frames numbered for that window (blocking).

    The window's frames (silence that stood in) are found by their sample numbers and
    replaced; the STREAMINFO (MD5: the audio changed) and seek points are measured
    again on the result, the Vorbis comments kept; the length must not change. Written
    to a temp file and renamed (atomic). Returns the new size and sha256.
    """
    whole = path.read_bytes()
    start = metadata_end(whole)
    old = read_stream_info(whole)
    found = _comments(whole[:start])
    frames = whole[start:]
    out = bytearray()
    pos = 0
    for first, end, chunk in sorted(pieces):
        offsets = window_offsets(frames, [first] + ([end] if end < old.total_samples else []))
        if not offsets or (end < old.total_samples and len(offsets) < 2):
            raise FlacError(f"{path.name} has no window at samples {first}..{end}")
        a = offsets[0]
        b = offsets[1] if end < old.total_samples else len(frames)
        if a < pos:
            raise FlacError(f"the pieces for {path.name} overlap")
        out += frames[pos:a] + chunk
        pos = b
    out += frames[pos:]
    tmp = path.with_name(path.name + ".frames.tmp")
    try:
        _write_atomic(tmp, bytes(out))
        measured = scan(tmp, offset=0, length=len(out), sample_rate=old.sample_rate, channels=old.channels)
        if measured.info.total_samples != old.total_samples:
            raise FlacError(f"the repaired {path.name} would not keep its length")
        vendor, pairs = found if found else (VENDOR, [])
        header = build_header(measured.info, seekpoints=measured.seekpoints, comments=pairs, vendor=vendor)
        _write_with_header(path, header, tmp, offset=0, length=len(out))
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return len(header) + len(out), h.hexdigest()


def decoded_blocks(path: str | Path) -> Iterator["np.ndarray"]:
    """A FLAC file's decoded samples, int16 ``(n, channels)``, block by block (FFmpeg; blocking)."""
    import av
    import numpy as np

    with av.open(str(path), mode="r", format="flac") as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            arr = arr.T if frame.format.is_planar else arr.reshape(-1, channels)
            yield np.ascontiguousarray(arr, dtype=np.int16)


def frame_offsets(frames: bytes) -> list[int]:
    """Offset of every frame in a stream of frames numbered by sample (ours), then its end.

    Each frame is found where the one before says it must start: a sync code, a right
    CRC-8 and exactly the next sample number; raises :class:`FlacError` if the walk does
    not reach the end.
    """
    if not frames:
        return [0]
    out = [0]
    head = parse_frame_header(frames, 0)
    pos = 0
    while True:
        found = _find_frame(frames, pos + head.size, head.number + head.block_size)
        if found is None:
            break
        pos, head = found
        out.append(pos)
    out.append(len(frames))
    return out
