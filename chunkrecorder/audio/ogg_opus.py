"""The compact format: a recording's MP3 re-encoded to Ogg Opus, sample-exact.

Speech at 32 kb/s Opus sounds better than 64 kb/s MP3 at half the size (about 14 MiB
per hour mono), which is what lets a one-hour speaker file fit Discord's 10 MiB
upload limit in two parts instead of three, or a browser download be quick.

Made from the stored MP3 (the one copy of the audio we keep), on first request, in
an encoder process (``pipeline/compact.py`` schedules it), streaming: an hour of audio
is never in memory, only a second of PCM and one page at a time.

Sample-exact, so the Opus file lines up with the MP3 and with the meeting:

* the MP3 decodes (FFmpeg, as every other check here) to exactly the meeting's
  timeline from t=0, and all of it is encoded;
* the OpusHead's pre-skip is the encoder's own look-ahead, so a decoder that drops
  pre-skip samples (every compliant one) puts input sample 0 at output sample 0;
* each page's granule position counts the samples of the packets it completes, and the
  last page's is cut to pre-skip + the MP3's samples, so the file ends where the MP3
  ends rather than on the next 20 ms frame (RFC 7845 §4).

Pages hold one second of packets: parts (``pipeline/parts.py``) are cut on page
boundaries, so that is their granularity.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..utils.atomic import writing
from . import flac, id3, ogg
from .opus import FRAME_SAMPLES, SAMPLE_RATE, OpusEncoder, ensure_opus

__all__ = ["COMPLEXITY", "CompactFile", "PAGE_PACKETS", "VENDOR", "bitrate_for", "mp3_to_ogg_opus", "read_comments"]

#: Packets (20 ms each) per page: one second, the granularity of a part's cut.
PAGE_PACKETS = 50
#: Written in OpusTags; also how a part's headers are recognised as ours.
VENDOR = "chunkrecorder"
#: libopus's encoder effort (0-10). Measured on an hour of speech-like audio (mono,
#: 32 kb/s): 5 costs about 30 CPU-seconds per hour of audio including the MP3 decode,
#: 10 about 80, for a file 6 % smaller; the conversion runs on demand, so 5.
COMPLEXITY = 5
#: Bytes of MP3 read at a time.
_READ = 256 * 1024


def bitrate_for(channels: int) -> int:
    """32 kb/s for a mono file, 48 kb/s for stereo: transparent enough for speech."""
    return 32_000 if channels == 1 else 48_000


@dataclass(frozen=True, slots=True)
class CompactFile:
    """What one conversion made."""

    path: str
    #: Samples per channel after pre-skip and end trimming: the MP3's own count.
    samples: int
    pre_skip: int
    channels: int
    size_bytes: int
    sha256: str

    @property
    def duration_ms(self) -> int:
        return round(self.samples * 1000 / SAMPLE_RATE)


def _decoded_blocks(mp3_path: Path) -> Iterator[np.ndarray]:
    """The MP3's decoded samples, int16 ``(n, channels)``, block by block (FFmpeg, untrimmed)."""
    import av  # in an encoder process: only this job needs it

    ctx = av.CodecContext.create("mp3", "r")
    resampler: Optional[Any] = None

    def convert(frames: list[Any]) -> Iterator[np.ndarray]:
        nonlocal resampler
        for frame in frames:
            # FFmpeg's "mp3" decoder is the fixed-point one: 16-bit samples already, taken
            # as they are (a resampler call per frame tripled the cost of the decode).
            name = frame.format.name
            if resampler is None and name == "s16p":
                yield frame.to_ndarray().T
                continue
            if resampler is None and name == "s16":
                yield frame.to_ndarray().reshape(-1, frame.layout.nb_channels)
                continue
            if resampler is None:
                layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
                resampler = av.AudioResampler(format="s16", layout=layout, rate=frame.sample_rate)
            for f in resampler.resample(frame):
                yield f.to_ndarray().reshape(-1, len(f.layout.channels))

    with open(mp3_path, "rb") as fh:
        fh.seek(id3.tag_length(fh.read(id3.HEADER_SIZE)))  # chapters or metadata: not audio
        while True:
            block = fh.read(_READ)
            if not block:
                break
            for packet in ctx.parse(block):
                yield from convert(ctx.decode(packet))
    yield from convert(ctx.decode(None))
    if resampler is not None:
        for f in resampler.resample(None):
            yield f.to_ndarray().reshape(-1, len(f.layout.channels))


def mp3_to_ogg_opus(mp3_path: str | Path, ogg_path: str | Path, *, bitrate: Optional[int] = None,
                    complexity: int = COMPLEXITY, comments: Sequence[str] = ()) -> CompactFile:
    """Encode ``mp3_path`` to ``ogg_path`` (written atomically); blocking, for a worker.

    The output has the MP3's channel count and exactly its decoded length.
    ``comments`` go into OpusTags (``KEY=value``, RFC 7845 §5.2).
    """
    ensure_opus(share=False)
    src, dst = Path(mp3_path), Path(ogg_path)
    digest = hashlib.sha256()
    size = 0
    serial = int.from_bytes(hashlib.sha256(str(dst.name).encode()).digest()[:4], "little")
    # a FLAC recording (issue 14) is decoded as FLAC; an MP3 as MP3
    blocks = flac.decoded_blocks(src) if src.suffix.lower() == ".flac" else _decoded_blocks(src)
    first = next(blocks, None)
    channels = 1 if first is None else int(first.shape[1])
    encoder = OpusEncoder(bitrate=bitrate or bitrate_for(channels), fec=False, packet_loss_percent=0,
                          application="audio", complexity=complexity, channels=channels)
    pre_skip = encoder.lookahead
    sequence = 0
    frame_bytes = FRAME_SAMPLES * channels * 2

    with writing(dst) as out:
        def emit(packets: list[bytes], granule: int, flags: int = 0) -> None:
            nonlocal sequence, size
            data = ogg.page(packets, granule=granule, serial=serial, sequence=sequence, flags=flags)
            sequence += 1
            out.write(data)
            digest.update(data)
            size += len(data)

        emit([ogg.opus_head(channels=channels, pre_skip=pre_skip)], 0, ogg.BOS)
        emit([ogg.opus_tags(VENDOR, comments)], 0)

        samples = 0  # real samples read from the MP3
        encoded = 0  # samples fed to the encoder (real and padding)
        pending = b""
        packets: list[bytes] = []

        def feed(pcm: bytes) -> None:
            nonlocal encoded, pending
            data = pending + pcm
            whole = len(data) // frame_bytes * frame_bytes
            for i in range(0, whole, frame_bytes):
                packets.append(encoder.encode(data[i : i + frame_bytes]))
                encoded += FRAME_SAMPLES
                if len(packets) > PAGE_PACKETS:
                    # A full page, written once the next packet exists: the last
                    # page must never be empty (it carries the end trimming).
                    emit(packets[:PAGE_PACKETS], encoded - FRAME_SAMPLES)
                    del packets[:PAGE_PACKETS]
            pending = data[whole:]

        # About a second of decoded PCM at a time: one conversion to bytes per second,
        # not one per MP3 frame.
        batch: list[np.ndarray] = []
        batched = 0
        for pcm in itertools.chain([] if first is None else [first], blocks):
            samples += len(pcm)
            batch.append(pcm)
            batched += len(pcm)
            if batched >= SAMPLE_RATE:
                feed(np.concatenate(batch).astype("<i2", copy=False).tobytes())
                batch, batched = [], 0
        if batch:
            feed(np.concatenate(batch).astype("<i2", copy=False).tobytes())
        # Flush the look-ahead: feed zeros until every real sample has come out of the
        # decoder (pre-skip + samples), in whole frames.
        need = pre_skip + samples
        total = -(-need // FRAME_SAMPLES) * FRAME_SAMPLES
        feed(bytes((total - encoded) * channels * 2 - len(pending)))
        assert not pending and encoded == total
        emit(packets, need, ogg.EOS)  # the end trimmed to the MP3's length
    return CompactFile(str(dst), samples, pre_skip, channels, size, digest.hexdigest())


def read_comments(ogg_path: str | Path) -> dict[str, str]:
    """The OpusTags comments of a file (``KEY`` upper-cased); blocking. ``OggError`` if broken."""
    with open(ogg_path, "rb") as fh:
        pages = ogg.read_pages(fh)
        next(pages, None)
        tags = next(pages, None)
    if tags is None or not tags.packets or not tags.packets[0].startswith(b"OpusTags"):
        raise ogg.OggError(f"{ogg_path} has no OpusTags")
    return ogg.parse_opus_tags(tags.packets[0])
