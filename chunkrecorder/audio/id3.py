"""ID3v2.4 tags at the head of an MP3: built here, written without touching the frames.

A recording's MP3 is one gapless stream of frames. A tag is metadata *before* the first
frame: players and FFmpeg read its size from the 10-byte header and skip it, so the
frames (and the stream's sample-exact timing) are untouched and nothing is re-encoded.
Writing a tag therefore means writing ``tag + frames`` to a new file; the file's sha256
and size are those of the tagged file.

Only what chunkrecorder writes is here: chapters (``CHAP`` frames listed by one ``CTOC``
table of contents, the ID3v2 Chapter Frame Addendum that podcast players read) with a
``TIT2`` title each, plain text frames and a comment (``COMM``): a track's metadata
(issue 14, ``audio/tags.py``) is frames added to :func:`build_tag`'s list.

Also the reverse, for the same frames only: :func:`read_frames` walks a tag's frames
(so a re-tag keeps what it does not replace, and the Ogg Opus copy of a file carries
its MP3's tags), :func:`read_text_tags` and :func:`read_chapters` decode them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..utils.atomic import copy_range, writing

__all__ = [
    "Chapter",
    "HEADER_SIZE",
    "MAX_CHAPTERS",
    "build_tag",
    "chapter_frames",
    "chapters_from",
    "comment_frame",
    "frame",
    "read_chapters",
    "read_frames",
    "read_text_tags",
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


def chapters_from(points: Sequence[tuple[int, str]], length_ms: int) -> list[Chapter]:
    """Chapters from ``(start_ms, title)`` points: the first :data:`MAX_CHAPTERS` in time
    order, each running to the next one's start (the last to ``length_ms``), every time
    kept within the file."""
    kept = sorted(points, key=lambda p: p[0])[:MAX_CHAPTERS]
    starts = [min(max(0, start), length_ms) for start, _title in kept]
    out = []
    for i, (_start, title) in enumerate(kept):
        end = starts[i + 1] if i + 1 < len(kept) else length_ms
        out.append(Chapter(starts[i], max(starts[i], end), title))
    return out


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


def comment_frame(text: str, *, lang: str = "eng", description: str = "") -> bytes:
    """A ``COMM`` frame in UTF-8: language, a (usually empty) description, then the text."""
    code = lang.encode("ascii")
    if len(code) != 3:
        raise ValueError(f"{lang!r} is not a three-letter language code")
    return frame("COMM", _UTF8 + code + description.encode("utf-8") + b"\x00" + text.encode("utf-8"))


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
    with open(src, "rb") as fin, writing(dst) as fout:
        fout.write(tag)
        missing = copy_range(fin, fout, offset=offset, length=length)
        if missing:
            raise OSError(f"{src.name} ended {missing} bytes early")
        size = fout.tell()
    return size


def read_frames(tag: bytes) -> list[tuple[str, bytes]]:
    """``(frame id, body)`` of every frame of the ID3v2.3/2.4 tag ``tag`` starts with.

    Stops at padding or at a frame that does not fit; an extended header is skipped.
    Unsynchronised or compressed frames are returned as they are (we write none).
    """
    length = tag_length(tag[:HEADER_SIZE])
    if not length or tag[3] not in (3, 4):
        return []
    end = min(len(tag), length - (HEADER_SIZE if tag[5] & 0x10 else 0))
    pos = HEADER_SIZE
    if tag[5] & 0x40 and pos + 4 <= end:  # extended header
        ext = tag[pos : pos + 4]
        pos += _read_syncsafe(ext) if tag[3] == 4 else 4 + int.from_bytes(ext, "big")
    out: list[tuple[str, bytes]] = []
    while pos + 10 <= end:
        raw_id = tag[pos : pos + 4]
        if not raw_id.isalnum():
            break  # padding (zeros) or garbage
        size_bytes = tag[pos + 4 : pos + 8]
        size = _read_syncsafe(size_bytes) if tag[3] == 4 else int.from_bytes(size_bytes, "big")
        body = tag[pos + 10 : pos + 10 + size]
        if len(body) != size:
            break
        out.append((raw_id.decode("ascii"), body))
        pos += 10 + size
    return out


def _decode(encoding: int, raw: bytes) -> str:
    codec = {0: "latin-1", 1: "utf-16", 2: "utf-16-be", 3: "utf-8"}.get(encoding, "utf-8")
    return raw.decode(codec, "replace")


def _split_terminated(encoding: int, raw: bytes) -> tuple[bytes, bytes]:
    """``raw`` cut at its first string terminator (two zero bytes, aligned, in UTF-16)."""
    if encoding in (1, 2):
        for i in range(0, len(raw) - 1, 2):
            if raw[i : i + 2] == b"\x00\x00":
                return raw[:i], raw[i + 2 :]
        return raw, b""
    head, _sep, rest = raw.partition(b"\x00")
    return head, rest


def _text(body: bytes) -> str:
    if not body:
        return ""
    values = _decode(body[0], body[1:]).split("\x00")
    return " / ".join(v for v in values if v)


_VORBIS_KEYS = {"TIT2": "TITLE", "TPE1": "ARTIST", "TALB": "ALBUM", "TDRC": "DATE"}


def read_text_tags(tag: bytes) -> dict[str, str]:
    """A tag's title, artist, album, date, track and comment under their Vorbis names.

    ``TRCK`` ``n/total`` gives ``TRACKNUMBER`` and ``TRACKTOTAL``; ``TDRC``, which has no
    zone (UTC by definition), gets its ``Z`` back when it has a time of day.
    """
    out: dict[str, str] = {}
    for fid, body in read_frames(tag):
        if fid in _VORBIS_KEYS:
            out[_VORBIS_KEYS[fid]] = _text(body)
        elif fid == "TRCK":
            number, _sep, total = _text(body).partition("/")
            out["TRACKNUMBER"] = number
            if total:
                out["TRACKTOTAL"] = total
        elif fid == "COMM" and len(body) >= 4 and "COMMENT" not in out:
            _desc, text = _split_terminated(body[0], body[4:])
            out["COMMENT"] = _decode(body[0], text).rstrip("\x00")
    date = out.get("DATE")
    if date and "T" in date and not date.endswith("Z"):
        out["DATE"] = date + "Z"
    return out


def read_chapters(tag: bytes) -> list[Chapter]:
    """The ``CHAP`` frames of a tag, in time order, titled by their ``TIT2`` (or empty)."""
    out: list[Chapter] = []
    for fid, body in read_frames(tag):
        if fid != "CHAP":
            continue
        _element, rest = body.split(b"\x00", 1) if b"\x00" in body else (body, b"")
        if len(rest) < 16:
            continue
        start, end = int.from_bytes(rest[0:4], "big"), int.from_bytes(rest[4:8], "big")
        sub = b"ID3\x04\x00\x00" + _syncsafe(len(rest) - 16) + rest[16:]
        title = next((_text(b) for f, b in read_frames(sub) if f == "TIT2"), "")
        out.append(Chapter(start, end, title))
    return sorted(out, key=lambda c: c.start_ms)
