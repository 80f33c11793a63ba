"""Cutting a recording into parts that each fit an upload limit and each play alone.

Without the web server, the only way a member gets a one-hour file (27.5 MiB at 64
kb/s) out of Discord is in pieces under the guild's upload limit. A byte-wise cut
would give pieces that a player refuses or that click; these are cut where the
format allows a new file to begin:

* **MP3** on frame boundaries. A recording is bare MPEG-1 Layer III frames with the
  bit reservoir off (``audio.mp3``), so every frame decodes on its own: each part is
  a valid MP3 that plays from its first frame, and the parts are plain byte ranges of
  the file, so ``cat`` of the parts in order is the file, byte for byte.
* **FLAC** on frame boundaries too, at the file's seek points (one every 10 s,
  ``audio.flac``): byte ranges again, the first part holding ``fLaC`` and the metadata,
  so ``cat`` of the parts is the file; a later part is bare frames, which FFmpeg-based
  players read from their first sync code.
* **Ogg Opus** on page boundaries. Each part is a whole Ogg Opus file: the two header
  pages, then its pages with page numbers and granule positions counted from the part's
  own start (and the end-of-stream flag on its last page). The first part keeps the
  pre-skip; the later ones start mid-stream, so their pre-skip is 0 and their lengths
  add up to the recording's. ``cat`` does not rejoin them (that is Ogg chaining, a
  different file): the MP3 parts are the ones to join.

Planning only reads frame headers or page headers; the bytes are read (or, for Ogg,
re-framed) one part at a time, so a part costs its size in memory, never the file's.
All of it is blocking file work: call it in a thread.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

from ..utils.atomic import replacing
from . import flac, id3, ogg

__all__ = ["Part", "PartError", "plan_parts", "read_part", "write_parts", "mp3_frame_offsets"]

_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
_RATES = (44_100, 48_000, 32_000)


class PartError(ValueError):
    """A file that cannot be cut to the limit (the limit is below one frame or page)."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part: which bytes of which file, and the name it is uploaded under."""

    path: str
    kind: Literal["mp3", "ogg", "flac"]
    index: int  # from 1
    count: int
    filename: str
    #: MP3: the byte range [start, end). Ogg: the range of the part's audio pages.
    start: int
    end: int
    #: The part's size in bytes (for Ogg: headers included, as re-framed).
    size: int
    #: Ogg only: the granule position the part's audio continues from, and its headers.
    base_granule: int = 0
    headers: tuple[bytes, ...] = ()


def part_name(filename: str, index: int, count: int) -> str:
    """``name.part01of12.mp3``: sorts in order, so ``cat name.part*.mp3`` joins them."""
    stem, dot, ext = filename.rpartition(".")
    if not dot:
        stem, ext = filename, ""
    width = len(str(count))
    return f"{stem}.part{index:0{width}d}of{count}" + (f".{ext}" if ext else "")


def mp3_frame_offsets(path: str | Path) -> list[int]:
    """Byte offset of every frame and the file's size at the end (walking frame headers).

    An ID3v2 tag before the first frame (``audio.id3``: chapters, metadata) is skipped;
    it goes with the first part, so the parts still ``cat`` back to the file.
    """
    offsets: list[int] = []
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        pos = id3.tag_length(fh.read(id3.HEADER_SIZE))
        while pos < size:
            fh.seek(pos)
            head = fh.read(4)
            if len(head) < 4:
                raise PartError(f"{path} ends inside a frame header at byte {pos}")
            h = int.from_bytes(head, "big")
            version, bitrate_idx, rate_idx = (h >> 19) & 0x3, (h >> 12) & 0xF, (h >> 10) & 0x3
            if (h >> 21) & 0x7FF != 0x7FF or version != 3 or bitrate_idx in (0, 15) or rate_idx == 3:
                raise PartError(f"{path} has no MPEG-1 Layer III frame header at byte {pos}")
            offsets.append(pos)
            pos += 144 * _MPEG1_L3_KBPS[bitrate_idx] * 1000 // _RATES[rate_idx] + ((h >> 9) & 1)
        if pos != size:
            raise PartError(f"{path} ends inside a frame")
    offsets.append(size)
    return offsets


def _greedy(bounds: Sequence[int], limit: int, overhead: int, what: str) -> list[tuple[int, int]]:
    """Indices ``[i, j)`` of consecutive units whose bytes plus ``overhead`` fit ``limit``.

    ``bounds[k]`` is where unit ``k`` starts and ``bounds[-1]`` where the last one ends.
    """
    cuts: list[tuple[int, int]] = []
    i, n = 0, len(bounds) - 1
    while i < n:
        j = i
        while j < n and bounds[j + 1] - bounds[i] + overhead <= limit:
            j += 1
        if j == i:
            raise PartError(f"the limit of {limit} bytes is smaller than one {what}")
        cuts.append((i, j))
        i = j
    return cuts


def plan_parts(path: str | Path, limit: int, filename: Optional[str] = None) -> list[Part]:
    """The parts of ``path`` (``.mp3`` or ``.opus``/``.ogg``) under ``limit`` bytes each.

    One part (the whole file) when it fits already.
    """
    p = Path(path)
    name = filename or p.name
    if p.suffix.lower() == ".mp3":
        offsets = mp3_frame_offsets(p)
        if len(offsets) > 1:
            offsets[0] = 0  # the first part starts at the file's start (its tag, if any)
        cuts = _greedy(offsets, limit, 0, "MP3 frame")
        return [Part(str(p), "mp3", k + 1, len(cuts), part_name(name, k + 1, len(cuts)) if len(cuts) > 1 else name,
                     offsets[i], offsets[j], offsets[j] - offsets[i]) for k, (i, j) in enumerate(cuts)]
    if p.suffix.lower() == ".flac":
        return _flac_parts(p, limit, name)
    with open(p, "rb") as fh:
        pages = list(ogg.read_pages(fh))
    if len(pages) < 3 or any(pg.open_ended for pg in pages):
        raise PartError(f"{p} is not an Ogg Opus file of whole pages")
    head, tags, audio = pages[0], pages[1], pages[2:]
    headers = (head.packets[0], tags.packets[0])
    overhead = head.size + tags.size
    bounds = [pg.offset for pg in audio] + [audio[-1].offset + audio[-1].size]
    cuts = _greedy(bounds, limit, overhead, "Ogg page")
    parts = []
    for k, (i, j) in enumerate(cuts):
        base = audio[i - 1].granule if i > 0 else 0
        parts.append(Part(str(p), "ogg", k + 1, len(cuts),
                          part_name(name, k + 1, len(cuts)) if len(cuts) > 1 else name,
                          audio[i].offset, bounds[j], overhead + bounds[j] - bounds[i],
                          base_granule=base, headers=headers))
    return parts


def _flac_parts(p: Path, limit: int, name: str) -> list[Part]:
    """A FLAC cut at its seek points (frame starts): the first part from byte 0 (the metadata)."""
    try:
        head = flac._read_head(p)
        start = flac.metadata_end(head)
        points = flac.seek_offsets(head)
    except flac.FlacError as exc:
        raise PartError(f"{p} is not a FLAC file this cog wrote ({exc})") from None
    size = os.path.getsize(p)
    bounds = sorted({0, *(start + o for o in points if 0 < o < size - start), size})
    try:
        cuts = _greedy(bounds, limit, 0, "FLAC seek span (10 s)")
    except PartError:  # a limit under 10 s of audio: cut at any frame (found by walking them)
        with open(p, "rb") as fh:
            fh.seek(start)
            frames = fh.read()
        try:
            bounds = [0, *(start + o for o in flac.frame_offsets(frames)[1:])]
        except flac.FlacError as exc:
            raise PartError(f"{p}: {exc}") from None
        cuts = _greedy(bounds, limit, 0, "FLAC frame")
    return [Part(str(p), "flac", k + 1, len(cuts), part_name(name, k + 1, len(cuts)) if len(cuts) > 1 else name,
                 bounds[i], bounds[j], bounds[j] - bounds[i]) for k, (i, j) in enumerate(cuts)]


def read_part(part: Part) -> bytes:
    """The bytes of one part (blocking)."""
    if part.kind == "ogg" and part.count == 1:
        return Path(part.path).read_bytes()  # the file itself
    with open(part.path, "rb") as fh:
        fh.seek(part.start)
        data = fh.read(part.end - part.start)
    if len(data) != part.end - part.start:
        raise PartError(f"{part.path} is shorter than when it was planned")
    if part.kind in ("mp3", "flac"):
        return data
    head = ogg.parse_opus_head(part.headers[0])
    pre_skip = head.pre_skip if part.index == 1 else 0
    pages = list(ogg.read_pages(io.BytesIO(data)))
    serial = pages[0].serial
    out = [
        ogg.page([ogg.opus_head(channels=head.channels, pre_skip=pre_skip, input_rate=head.input_rate)],
                 granule=0, serial=serial, sequence=0, flags=ogg.BOS),
        ogg.page([part.headers[1]], granule=0, serial=serial, sequence=1),
    ]
    for n, pg in enumerate(pages):
        flags = ogg.EOS if n == len(pages) - 1 else 0
        out.append(ogg.page(list(pg.packets), granule=pg.granule - part.base_granule, serial=serial,
                            sequence=2 + n, flags=flags))
    blob = b"".join(out)
    if len(blob) != part.size:  # pragma: no cover - the same packets re-framed the same way
        raise PartError(f"part {part.index} of {part.path} came out {len(blob)} bytes, planned {part.size}")
    return blob


def write_parts(path: str | Path, limit: int, folder: str | Path, filename: Optional[str] = None) -> list[Path]:
    """Each part of ``path`` written to ``folder`` under its part name (blocking)."""
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part in plan_parts(path, limit, filename):
        target = out_dir / part.filename
        with replacing(target) as tmp:  # not synced, as before: a part is a copy of a durable recording
            tmp.write_bytes(read_part(part))
        written.append(target)
    return written

