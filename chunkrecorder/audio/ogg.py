"""Ogg pages for Opus files (RFC 3533, RFC 7845): written, read and re-cut by us.

Why our own and not FFmpeg's muxer: the compact file must be sample-exact (the
pre-skip is the encoder's real look-ahead, the last page's granule position trims the
padding of the last frame to the recording's length) and it is cut into parts on page
boundaries, each part a valid file of its own. Both need every page's bytes and
granule position in hand, and Ogg framing is a page of lacing values and a CRC.

The CRC is Ogg's (polynomial 0x04C11DB7, not reflected, no initial value or final
xor), computed with ``zlib.crc32`` (C speed, where a Python loop would spend seconds
on an hour of audio): Ogg's CRC of ``m`` is zlib's reflected CRC of ``m`` with every
byte's bits reversed, without zlib's initial and final ``0xFFFFFFFF``, bit-reversed.
``tests/pipeline/test_ogg.py`` checks it against a plain table implementation.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Sequence

from . import vorbis

__all__ = [
    "BOS",
    "CONTINUED",
    "EOS",
    "OggError",
    "OggPage",
    "OpusHead",
    "crc",
    "lacing",
    "opus_head",
    "opus_tags",
    "page",
    "parse_opus_head",
    "parse_opus_tags",
    "read_pages",
]

#: ``header_type`` flags.
CONTINUED = 0x01
BOS = 0x02
EOS = 0x04

_CAPTURE = b"OggS"
#: capture, version, type, granule, serial, sequence, crc, segments
_HEADER = struct.Struct("<4sBBqIIIB")
_MAX_SEGMENTS = 255

_REVERSE_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


class OggError(ValueError):
    """Bytes that are not a well-formed Ogg Opus stream (the message says where)."""


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def crc(data: bytes) -> int:
    """Ogg's page checksum of ``data`` (computed with the CRC field zeroed)."""
    mirrored = data.translate(_REVERSE_BITS)
    # zlib: reflected, initial and final xor 0xFFFFFFFF. The CRC is affine in its
    # initial value, so zlib's CRC of zeros of the same length removes both xors.
    raw = zlib.crc32(mirrored) ^ zlib.crc32(bytes(len(data)))
    return _reverse32(raw)


def lacing(size: int) -> bytes:
    """The segment table entries of one whole packet of ``size`` bytes."""
    return b"\xff" * (size // 255) + bytes([size % 255])


def page(packets: Sequence[bytes], *, granule: int, serial: int, sequence: int, flags: int = 0) -> bytes:
    """One page holding whole ``packets`` (none continued from or onto another page)."""
    table = b"".join(lacing(len(p)) for p in packets)
    if len(table) > _MAX_SEGMENTS:
        raise OggError(f"{len(packets)} packets need {len(table)} segments; a page holds {_MAX_SEGMENTS}")
    head = _HEADER.pack(_CAPTURE, 0, flags, granule, serial, sequence, 0, len(table))
    body = head + table + b"".join(packets)
    checksum = crc(body)
    return body[:22] + struct.pack("<I", checksum) + body[26:]


@dataclass(frozen=True, slots=True)
class OggPage:
    """One page as read: where it is in the file and what it holds."""

    offset: int
    size: int
    flags: int
    granule: int
    serial: int
    sequence: int
    packets: tuple[bytes, ...]
    #: The last packet continues on the next page (never in our own files).
    open_ended: bool


def read_pages(stream: BinaryIO) -> Iterator[OggPage]:
    """Every page of ``stream`` in order; ``OggError`` on a broken page or checksum."""
    offset = 0
    while True:
        head = stream.read(_HEADER.size)
        if not head:
            return
        if len(head) < _HEADER.size:
            raise OggError(f"the stream ends inside a page header at byte {offset}")
        capture, version, flags, granule, serial, sequence, checksum, count = _HEADER.unpack(head)
        if capture != _CAPTURE or version != 0:
            raise OggError(f"no Ogg page at byte {offset}")
        table = stream.read(count)
        if len(table) < count:
            raise OggError(f"the stream ends inside a page's segment table at byte {offset}")
        size = sum(table)
        body = stream.read(size)
        if len(body) < size:
            raise OggError(f"the stream ends inside a page at byte {offset}")
        whole = head[:22] + b"\x00\x00\x00\x00" + head[26:] + table + body
        if crc(whole) != checksum:
            raise OggError(f"the page at byte {offset} fails its checksum")
        packets: list[bytes] = []
        pos = start = 0
        for value in table:
            pos += value
            if value < 255:
                packets.append(body[start:pos])
                start = pos
        open_ended = bool(table) and table[-1] == 255
        if open_ended:
            packets.append(body[start:pos])
        yield OggPage(offset, len(whole), flags, granule, serial, sequence, tuple(packets), open_ended)
        offset += len(whole)


@dataclass(frozen=True, slots=True)
class OpusHead:
    channels: int
    pre_skip: int
    input_rate: int


def opus_head(*, channels: int, pre_skip: int, input_rate: int = 48_000) -> bytes:
    """The identification header (RFC 7845 §5.1), channel mapping family 0."""
    if channels not in (1, 2):
        raise ValueError(f"mapping family 0 holds 1 or 2 channels, not {channels}")
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


def parse_opus_head(packet: bytes) -> OpusHead:
    if len(packet) < 19 or not packet.startswith(b"OpusHead"):
        raise OggError("the first packet is not an OpusHead")
    version, channels, pre_skip, rate, _gain, _family = struct.unpack("<BBHIhB", packet[8:19])
    if version >> 4:
        raise OggError(f"unsupported OpusHead version {version}")
    return OpusHead(channels, pre_skip, rate)


def parse_opus_tags(packet: bytes) -> dict[str, str]:
    """The comments of an OpusTags packet as ``{KEY: value}`` (keys upper-cased)."""
    try:
        pos = 8
        (vlen,) = struct.unpack_from("<I", packet, pos)
        pos += 4 + vlen
        (count,) = struct.unpack_from("<I", packet, pos)
        pos += 4
        out: dict[str, str] = {}
        for _ in range(count):
            (n,) = struct.unpack_from("<I", packet, pos)
            pos += 4
            key, _eq, value = packet[pos : pos + n].decode("utf-8", "replace").partition("=")
            out[key.upper()] = value
            pos += n
    except struct.error:
        raise OggError("the OpusTags packet is cut short") from None
    return out


def opus_tags(vendor: str, comments: Sequence[str] = ()) -> bytes:
    """The comment header (RFC 7845 §5.2)."""
    pairs = [(k, v) for k, _eq, v in (c.partition("=") for c in comments)]
    return b"OpusTags" + vorbis.comment_packet_body(vendor, pairs)
