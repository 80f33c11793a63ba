"""The Vorbis comment structure: the metadata of Ogg Opus (OpusTags) and FLAC (VORBIS_COMMENT).

Both formats carry the same body: a vendor string, then ``KEY=value`` comments, each
preceded by its length as a 32-bit little-endian integer (RFC 7845 §5.2, the Vorbis I
specification §5). Only the framing differs: OpusTags puts the magic ``OpusTags`` in
front; FLAC puts it in a metadata block (and, unlike Vorbis itself, no framing bit
after it). So this module writes and reads the body alone, and each format frames it.

Also here: chapters as comments (``CHAPTER001=00:00:00.000`` and ``CHAPTER001NAME=``),
the convention FFmpeg and most players read from Ogg and FLAC files.
"""

from __future__ import annotations

import struct
from typing import Sequence

__all__ = ["chapter_comments", "comment_packet_body", "parse_comment_body"]


class VorbisCommentError(ValueError):
    """A comment body that is cut short or does not parse."""


def comment_packet_body(vendor: str, comments: Sequence[tuple[str, str]]) -> bytes:
    """Vendor and comments, little-endian lengths, no framing byte.

    Keys must be printable ASCII other than ``=`` (the specification's field names);
    values are any text, stored as UTF-8.
    """
    v = vendor.encode("utf-8")
    out = [struct.pack("<I", len(v)), v, struct.pack("<I", len(comments))]
    for key, value in comments:
        if not key or not all(0x20 <= ord(c) <= 0x7D and c != "=" for c in key):
            raise ValueError(f"{key!r} is not a Vorbis comment field name")
        raw = key.encode("ascii") + b"=" + value.encode("utf-8")
        out += [struct.pack("<I", len(raw)), raw]
    return b"".join(out)


def parse_comment_body(body: bytes) -> tuple[str, list[tuple[str, str]]]:
    """``(vendor, [(KEY, value), ...])`` of a comment body (keys upper-cased, order kept)."""
    try:
        (vlen,) = struct.unpack_from("<I", body, 0)
        pos = 4 + vlen
        if pos > len(body):
            raise VorbisCommentError("the vendor string is cut short")
        vendor = body[4:pos].decode("utf-8", "replace")
        (count,) = struct.unpack_from("<I", body, pos)
        pos += 4
        out: list[tuple[str, str]] = []
        for _ in range(count):
            (n,) = struct.unpack_from("<I", body, pos)
            pos += 4
            if pos + n > len(body):
                raise VorbisCommentError("a comment is cut short")
            key, _eq, value = body[pos : pos + n].decode("utf-8", "replace").partition("=")
            out.append((key.upper(), value))
            pos += n
    except struct.error:
        raise VorbisCommentError("the comment body is cut short") from None
    return vendor, out


def _timestamp(ms: int) -> str:
    h, rest = divmod(max(0, ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{milli:03d}"


#: Bytes of chapter comments at most: an OpusTags packet that fits one Ogg page (255
#: segments of 255 bytes) beside the other tags, which is what our Ogg writer makes.
CHAPTERS_MAX_BYTES = 48 * 1024


def chapter_comments(chapters: Sequence[tuple[int, str]], *,
                     max_bytes: int = CHAPTERS_MAX_BYTES) -> list[tuple[str, str]]:
    """``(start_ms, title)`` pairs as ``CHAPTERnnn`` / ``CHAPTERnnnNAME`` comments (from 001),
    the first chapters that fit ``max_bytes`` (255 notes of 2,000 characters would not)."""
    out: list[tuple[str, str]] = []
    used = 0
    for i, (start_ms, title) in enumerate(chapters, start=1):
        pair = [(f"CHAPTER{i:03d}", _timestamp(start_ms)), (f"CHAPTER{i:03d}NAME", title)]
        used += sum(8 + len(k) + len(v.encode("utf-8")) for k, v in pair)
        if used > max_bytes:
            break
        out += pair
    return out


def read_chapter_comments(comments: Sequence[tuple[str, str]]) -> list[tuple[int, str]]:
    """``(start_ms, title)`` pairs back from ``CHAPTERnnn`` / ``CHAPTERnnnNAME`` comments, in
    order; a chapter whose time does not parse is left out."""
    times: dict[str, str] = {}
    names: dict[str, str] = {}
    for key, value in comments:
        k = key.upper()
        if not (k.startswith("CHAPTER") and k[7:10].isdigit()):
            continue
        if len(k) == 10:
            times[k[7:10]] = value
        elif k[10:] == "NAME":
            names[k[7:10]] = value
    out: list[tuple[int, str]] = []
    for number in sorted(times):
        ms = _parse_timestamp(times[number])
        if ms is not None:
            out.append((ms, names.get(number, "")))
    return out


def _parse_timestamp(text: str) -> int | None:
    """``HH:MM:SS.mmm`` (as :func:`_timestamp` writes it) in milliseconds, or None."""
    try:
        h, m, rest = text.strip().split(":")
        s, _dot, frac = rest.partition(".")
        milli = int((frac + "000")[:3]) if frac else 0
        return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + milli
    except ValueError:
        return None
