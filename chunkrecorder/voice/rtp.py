"""RTP as Discord sends it in the ``*_rtpsize`` transport modes.

In the rtpsize modes the header extension's 4-byte preamble (profile ``0xBEDE`` and
length in 32-bit words) stays in the clear and is authenticated with the header,
while the extension's *body* is encrypted at the start of the payload. So the
authenticated header is ``12 + 4*CSRC count (+ 4 if X)`` bytes, and after decryption
the first ``4*length`` plaintext bytes are extension elements, not audio. The last
4 bytes of the datagram are the nonce counter. If the P bit is set the plaintext ends
in RTP padding (its last byte is the padding length, RFC 3550 §5.1), which must go
before the DAVE layer looks for its trailer at the end of the frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: The RTP payload type Discord uses for Opus voice.
OPUS_PAYLOAD_TYPE = 0x78
RTP_VERSION = 2
FIXED_HEADER = 12
EXTENSION_PREAMBLE = 4
#: One-byte header extension profile (RFC 8285); Discord clients use it.
ONE_BYTE_PROFILE = 0xBEDE
#: Trailing nonce counter of the rtpsize AEAD modes.
NONCE_SUFFIX = 4

_HEADER = struct.Struct(">BBHII")
_PREAMBLE = struct.Struct(">HH")


class RtpError(ValueError):
    """A datagram that claims to be RTP but cannot be (counted as truncated)."""


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The clear part of one voice datagram."""

    padding: bool
    extended: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    #: Bytes authenticated as AAD: fixed header, CSRCs and (if X) the extension preamble.
    header_length: int
    #: Extension length in 32-bit words (its body is the start of the plaintext).
    extension_words: int


def is_rtp_version(data: bytes) -> bool:
    """Whether the first byte says RTP version 2 (IP discovery replies and junk do not)."""
    return len(data) > 0 and data[0] >> 6 == RTP_VERSION


def is_rtcp(data: bytes) -> bool:
    """RTCP shares the socket; its packet types 200-204 sit where RTP has M+PT."""
    return len(data) > 1 and 200 <= data[1] <= 204


def parse_header(data: bytes) -> RtpHeader:
    """Parse the clear header of an rtpsize datagram; :class:`RtpError` if it is cut short."""
    if len(data) < FIXED_HEADER:
        raise RtpError("shorter than an RTP header")
    b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    csrc_count = b0 & 0x0F
    extended = bool(b0 & 0x10)
    length = FIXED_HEADER + 4 * csrc_count
    words = 0
    if extended:
        if len(data) < length + EXTENSION_PREAMBLE:
            raise RtpError("extension preamble cut short")
        _profile, words = _PREAMBLE.unpack_from(data, length)
        length += EXTENSION_PREAMBLE
    if len(data) < length:
        raise RtpError("CSRC list cut short")
    return RtpHeader(
        padding=bool(b0 & 0x20),
        extended=extended,
        csrc_count=csrc_count,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        header_length=length,
        extension_words=words,
    )


def strip_plaintext(header: RtpHeader, plaintext: bytes) -> bytes:
    """The media payload of decrypted rtpsize plaintext: extension body and padding removed."""
    start = 4 * header.extension_words
    end = len(plaintext)
    if start > end:
        raise RtpError("extension body longer than the payload")
    if header.padding:
        if end == start:
            raise RtpError("padding bit set on an empty payload")
        pad = plaintext[-1]
        if pad == 0 or pad > end - start:
            raise RtpError("padding length out of range")
        end -= pad
    return plaintext[start:end]


def extend_sequence(highest: int, sequence: int) -> int:
    """Unwrap a 16-bit sequence number to the value nearest ``highest`` (an unbounded int)."""
    delta = ((sequence - highest) + 0x8000) % 0x10000 - 0x8000
    return highest + delta
