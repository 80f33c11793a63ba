"""An MP3 for quick listening made from a FLAC recording (``[p]recordings get <id> mp3``).

A FLAC archive is about five times the size of the 64 kb/s MP3 a meeting would
otherwise have been, too big to play from a Discord attachment on a phone. So the
MP3 is made on request, once, in an encoder process (``pipeline/compact.py``), with
the same gapless chunk encoder the pipeline uses (``audio.mp3``): the FLAC is decoded
block by block and encoded in windows of 417 frames, each with its prime and tail, so
memory stays at a few windows whatever the length, and the MP3 lines up with the FLAC
from t=0 (its decoded length is the FLAC's rounded up to whole 1152-sample frames).

The copy names the FLAC it was made from (its sha256, in an ID3v2 ``TXXX`` frame
before the first MP3 frame), so a recording repaired or re-tagged since gets a new one.
It carries the FLAC's tags too (title, artist, album, date, track, comment) and its
notes as an ID3 chapter table, so a phone's player shows the same names either way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..utils.atomic import writing
from . import flac, id3, mp3, vorbis
from .tags import CHAPTERS_TITLE, TrackTags

__all__ = ["ListenFile", "SOURCE_DESCRIPTION", "flac_to_mp3", "source_of"]

#: The ``TXXX`` description naming the source FLAC's sha256.
SOURCE_DESCRIPTION = "CHUNKRECORDER_SOURCE_SHA256"
#: Frames per encoded window (about 10 s, as the pipeline's chunks).
_WINDOW = 417 * mp3.FRAME


@dataclass(frozen=True, slots=True)
class ListenFile:
    size_bytes: int
    sha256: str
    samples: int


def _listen_tag(source_sha256: str, comments: list[tuple[str, str]], length_ms: int) -> bytes:
    """The copy's ID3v2.4 tag: the FLAC's tags and notes as ID3 frames, then its source."""
    frames: list[bytes] = []
    tags = TrackTags.from_vorbis({k.upper(): v for k, v in comments})
    if tags is not None:
        frames += tags.id3_frames()
    chapters = id3.chapters_from(vorbis.read_chapter_comments(comments), length_ms)
    frames += id3.chapter_frames(chapters, toc_title=CHAPTERS_TITLE)
    body = b"\x03" + SOURCE_DESCRIPTION.encode("ascii") + b"\x00" + source_sha256.encode("ascii")
    return id3.build_tag([*frames, id3.frame("TXXX", body)])


def source_of(mp3_path: str | Path) -> Optional[str]:
    """The source sha256 a listening copy names, or None (blocking)."""
    try:
        with open(mp3_path, "rb") as fh:
            head = fh.read(id3.HEADER_SIZE)
            tag = head + fh.read(max(0, id3.tag_length(head) - len(head)))
    except OSError:
        return None
    marker = SOURCE_DESCRIPTION.encode("ascii") + b"\x00"
    at = tag.find(marker)
    if at < 0:
        return None
    value = tag[at + len(marker) : at + len(marker) + 64]
    return value.decode("ascii", "replace") if len(value) == 64 else None


def flac_to_mp3(flac_path: str | Path, mp3_path: str | Path, *, source_sha256: str,
                bitrate: int = mp3.DEFAULT_BITRATE, quality: int = mp3.DEFAULT_QUALITY) -> ListenFile:
    """Encode ``flac_path`` to ``mp3_path`` (written atomically); blocking, for an encoder process."""
    src, dst = Path(flac_path), Path(mp3_path)
    info = flac.read_stream_info(flac._read_head(src))
    channels = info.channels
    prime, tail = mp3.PRIME_SAMPLES, mp3.TAIL_SAMPLES
    digest = hashlib.sha256()
    size = samples = 0

    def encode(fh: "object", pcm: np.ndarray, body: int) -> None:
        nonlocal size
        data = b"".join(mp3.encode_frames(pcm, prime=prime, body=body, sample_rate=info.sample_rate,
                                          channels=channels, bitrate=bitrate, quality=quality))
        fh.write(data)  # type: ignore[attr-defined]
        digest.update(data)
        size += len(data)

    with writing(dst) as fh:
        tag = _listen_tag(source_sha256, flac.read_comments(src),
                          info.total_samples * 1000 // max(1, info.sample_rate))
        fh.write(tag)
        digest.update(tag)
        size = len(tag)
        buf = np.zeros((prime, channels), dtype=np.int16)  # the audio before t=0: silence
        for block in flac.decoded_blocks(src):
            samples += len(block)
            buf = np.concatenate([buf, block])
            while len(buf) >= prime + _WINDOW + tail:
                encode(fh, buf[: prime + _WINDOW + tail], _WINDOW)
                buf = buf[_WINDOW:]
        if len(buf) > prime:
            encode(fh, buf, len(buf) - prime)  # the last window: zeros after the end
    if samples != info.total_samples:
        os.unlink(dst)
        raise flac.FlacError(f"{src.name} decoded to {samples} samples, its STREAMINFO says {info.total_samples}")
    return ListenFile(size, digest.hexdigest(), samples)
