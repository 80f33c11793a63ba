"""ID3v2.4 tags at the head of an MP3: built here, written without touching the frames.

A recording's MP3 is one gapless stream of frames. A tag is metadata *before* the first
frame: players and FFmpeg read its size from the 10-byte header and skip it, so the
frames (and the stream's sample-exact timing) are untouched and nothing is re-encoded.
Writing a tag therefore means writing ``tag + frames`` to a new file; the file's sha256
and size are those of the tagged file.

Only what chunkrecorder writes is here: chapters (``CHAP`` frames listed by one ``CTOC``
table of contents, the ID3v2 Chapter Frame Addendum that podcast players read) with a
``TIT2`` title each, and plain text frames. Issue 14 adds tags to every recording by
adding frames to :func:`build_tag`'s list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = [
    "Chapter",
    "HEADER_SIZE",
    "MAX_CHAPTERS",
    "build_tag",
    "chapter_frames",
    "frame",
    "tag_length",
    "text_frame",
    "write_with_tag",
]

#: The fixed header every ID3v2 tag starts with ("ID3", version, flags, size).
HEADER_SIZE = 10
#: A table of contents counts its entries in one byte.
MAX_CHAPTERS = 255
#: "No byte offset": the chapter is located by its times only.
_NO_OFFSET = 0xFFFFFFFF
#: UTF-8, the text encoding byte of ID3v2.4.
_UTF8 = b"\x03"
#: The largest size a syncsafe integer holds (28 bits).
_MAX_SYNCSAFE = (1 << 28) - 1


@dataclass(frozen=True, slots=True)
class Chapter:
    """A stretch of the file, from ``start_ms`` to ``end_ms``, with a title."""

    start_ms: int
    end_ms: int
    title: str


def _syncsafe(n: int) -> bytes:
    """An ID3v2 size: four bytes of seven bits each (no byte looks like an MPEG sync)."""
    if not 0 <= n <= _MAX_SYNCSAFE:
        raise ValueError(f"an ID3v2 size must be between 0 and {_MAX_SYNCSAFE}, not {n}")
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def _read_syncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def frame(frame_id: str, body: bytes) -> bytes:
    """One ID3v2.4 frame: its four-letter id, syncsafe size, no flags, then ``body``."""
    fid = frame_id.encode("ascii")
    if len(fid) != 4 or not fid.isalnum() or fid.upper() != fid:
        raise ValueError(f"{frame_id!r} is not an ID3v2 frame id")
    return fid + _syncsafe(len(body)) + b"\x00\x00" + body


def text_frame(frame_id: str, text: str) -> bytes:
    """A text frame (``TIT2``, ``TPE1``, ...) in UTF-8."""
    return frame(frame_id, _UTF8 + text.encode("utf-8"))


def _element_id(index: int) -> bytes:
    return f"ch{index}".encode("ascii")


def chapter_frames(chapters: Sequence[Chapter], *, toc_title: str = "") -> list[bytes]:
    """``CTOC`` (top-level, ordered) then one ``CHAP`` per chapter, each titled by a ``TIT2``.

    At most :data:`MAX_CHAPTERS` (the table counts in one byte); times are milliseconds
    from the first frame, byte offsets "unused" as players locate chapters by time.
    """
    if len(chapters) > MAX_CHAPTERS:
        raise ValueError(f"at most {MAX_CHAPTERS} chapters fit one table of contents, not {len(chapters)}")
    if not chapters:
        return []
    children = b"".join(_element_id(i) + b"\x00" for i in range(len(chapters)))
    toc_body = b"toc\x00" + bytes((0x03, len(chapters))) + children
    if toc_title:
        toc_body += text_frame("TIT2", toc_title)
    out = [frame("CTOC", toc_body)]
    for i, ch in enumerate(chapters):
        if not 0 <= ch.start_ms <= ch.end_ms <= 0xFFFFFFFE:
            raise ValueError(f"chapter {i} runs from {ch.start_ms} to {ch.end_ms} ms")
        body = (_element_id(i) + b"\x00" + ch.start_ms.to_bytes(4, "big") + ch.end_ms.to_bytes(4, "big")
                + _NO_OFFSET.to_bytes(4, "big") + _NO_OFFSET.to_bytes(4, "big") + text_frame("TIT2", ch.title))
        out.append(frame("CHAP", body))
    return out


def build_tag(frames: Sequence[bytes]) -> bytes:
    """An ID3v2.4 tag holding ``frames``; empty bytes when there is nothing to say
    (an untagged file stays exactly as the assembler made it)."""
    body = b"".join(frames)
    if not body:
        return b""
    return b"ID3\x04\x00\x00" + _syncsafe(len(body)) + body


def tag_length(head: bytes) -> int:
    """Bytes of the ID3v2 tag ``head`` starts with (header, body and any footer); 0 if none.

    ``head`` needs only the first :data:`HEADER_SIZE` bytes of a file. This is how a
    reader of our files finds the first MP3 frame.
    """
    if len(head) < HEADER_SIZE or head[:3] != b"ID3" or head[3] == 0xFF or head[4] == 0xFF:
        return 0
    if any(b & 0x80 for b in head[6:10]):
        return 0
    footer = HEADER_SIZE if head[5] & 0x10 else 0
    return HEADER_SIZE + _read_syncsafe(head[6:10]) + footer


def write_with_tag(dst: Path, tag: bytes, src: Path, *, offset: int, length: int) -> int:
    """Write ``tag`` then ``length`` bytes of ``src`` from ``offset`` to ``dst``, atomically
    (temp file, fsync, rename). Returns the new file's size (blocking: run it in a thread).

    ``src`` may be ``dst`` itself (re-tagging a finished file): the frames are read from
    the old file while the new one is written beside it.
    """
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            fout.write(tag)
            fin.seek(offset)
            remaining = length
            while remaining:
                block = fin.read(min(remaining, 1 << 20))
                if not block:
                    raise OSError(f"{src.name} ended {remaining} bytes early")
                fout.write(block)
                remaining -= len(block)
            fout.flush()
            os.fsync(fout.fileno())
            size = fout.tell()
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return size
