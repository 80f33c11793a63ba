"""Sealing voice datagrams the way Discord's voice server delivers them to the bot.

Written from discord.py 2.7.1's *send* side (``VoiceClient._get_voice_packet`` and
``_encrypt_aead_xchacha20_poly1305_rtpsize``), independently of the cog's receive
code, so a test that passes proves the two agree on the wire rather than sharing a
bug. Unlike discord.py's own packets (which have no extension), packets from Discord
clients carry a one-byte RTP header extension (RFC 8285, profile 0xBEDE), and
sometimes RTP padding; both are produced here because the rtpsize layout treats them
specially: the extension preamble is authenticated in the clear, its body and any
padding are encrypted with the payload.
"""

from __future__ import annotations

import struct

import nacl.secret

OPUS_PAYLOAD_TYPE = 0x78
EXTENSION_PROFILE = 0xBEDE
#: RFC 6464 audio level, the element Discord clients put in the extension.
AUDIO_LEVEL_ID = 1


class RtpSealer:
    """Builds and encrypts one SSRC's datagrams for one receiver's transport key."""

    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) != 32:
            raise ValueError("the transport key is 32 bytes")
        self._box = nacl.secret.Aead(bytes(secret_key))

    @staticmethod
    def header(
        *, sequence: int, timestamp: int, ssrc: int, extension: bool = True, padded: bool = False, marker: bool = False
    ) -> bytes:
        """The clear part: 12-byte RTP header (+ the extension preamble when present)."""
        b0 = 0x80 | (0x10 if extension else 0) | (0x20 if padded else 0)
        b1 = OPUS_PAYLOAD_TYPE | (0x80 if marker else 0)
        head = struct.pack(">BBHII", b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
        if extension:
            head += struct.pack(">HH", EXTENSION_PROFILE, 1)  # one 32-bit word of elements
        return head

    @staticmethod
    def extension_body(level: int = 127) -> bytes:
        """One audio-level element (ID 1, one byte) padded to a 32-bit word."""
        return bytes([(AUDIO_LEVEL_ID << 4) | 0, level & 0x7F, 0, 0])

    def seal(
        self,
        frame: bytes,
        *,
        sequence: int,
        timestamp: int,
        ssrc: int,
        nonce: int,
        extension: bool = True,
        pad: int = 0,
        level: int = 127,
    ) -> bytes:
        """One datagram: header | AEAD(ext body + frame + padding, AAD=header) | nonce[0:4]."""
        if not 0 <= pad <= 255:
            raise ValueError("RTP padding is 1-255 bytes (or 0 for none)")
        header = self.header(sequence=sequence, timestamp=timestamp, ssrc=ssrc, extension=extension, padded=pad > 0)
        plaintext = (self.extension_body(level) if extension else b"") + frame
        if pad:
            plaintext += bytes(pad - 1) + bytes([pad])
        counter = struct.pack(">I", nonce & 0xFFFFFFFF)
        sealed = self._box.encrypt(plaintext, header, counter + bytes(20)).ciphertext
        return header + sealed + counter

    def seal_rtcp(self, header: bytes, body: bytes, *, nonce: int) -> bytes:
        """An RTCP packet in the rtpsize modes: ``header`` (8 bytes) in the clear as AAD,
        the report body encrypted, the nonce counter appended."""
        counter = struct.pack(">I", nonce & 0xFFFFFFFF)
        return header + self._box.encrypt(body, header, counter + bytes(20)).ciphertext + counter
