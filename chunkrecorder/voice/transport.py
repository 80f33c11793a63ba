"""Transport decryption: ``aead_xchacha20_poly1305_rtpsize``, the mode discord.py 2.7.1 picks.

It is the first mode in ``VoiceClient.supported_modes`` that Discord offers, and
Discord offers it to every bot, so it is the only one a receiver meets. The layout,
as discord.py's own ``_encrypt_aead_xchacha20_poly1305_rtpsize`` builds it::

    datagram = header (AAD) | ciphertext (payload + 16-byte Poly1305 tag) | nonce[0:4]

where the AAD is the clear RTP header including the extension preamble (see
:mod:`.rtp`), and the 24-byte XChaCha20 nonce is the 4-byte big-endian counter from
the end of the datagram followed by 20 zero bytes.
"""

from __future__ import annotations

from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
from nacl.exceptions import CryptoError

from .rtp import NONCE_SUFFIX, RtpError, RtpHeader

MODE = "aead_xchacha20_poly1305_rtpsize"
TAG_BYTES = 16
KEY_BYTES = 32
_NONCE_PAD = bytes(20)


class BadMac(ValueError):
    """Authentication failed: tampered, corrupted, or sealed with another key."""


class TransportDecryptor:
    """Opens datagrams with the connection's secret key (from SESSION_DESCRIPTION)."""

    __slots__ = ("_key",)

    def __init__(self, secret_key: bytes | bytearray | list[int]) -> None:
        key = bytes(secret_key)
        if len(key) != KEY_BYTES:
            raise ValueError(f"the secret key must be {KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def decrypt(self, data: bytes, header: RtpHeader) -> bytes:
        """Plaintext of one datagram: extension body, media payload and any RTP padding.

        Raises :class:`RtpError` if the datagram is too short to hold a tag and nonce,
        and :class:`BadMac` if authentication fails.
        """
        start = header.header_length
        end = len(data) - NONCE_SUFFIX
        if end - start < TAG_BYTES:
            raise RtpError("too short for a tag and nonce")
        nonce = data[end:] + _NONCE_PAD
        try:
            return crypto_aead_xchacha20poly1305_ietf_decrypt(data[start:end], data[:start], nonce, self._key)
        except CryptoError as exc:
            raise BadMac(str(exc)) from None
