"""Transport decryption (aead_xchacha20_poly1305_rtpsize) against two independent senders:
discord.py 2.7.1's own send-side code and the harness wire."""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace

import pytest
from discord.voice_client import VoiceClient

from chunkrecorder.voice.rtp import RtpError, parse_header, strip_plaintext
from chunkrecorder.voice.transport import BadMac, TransportDecryptor
from harness.wire.packets import RtpSealer

KEY = bytes(range(32))


def discordpy_packet(payload: bytes, *, sequence: int, timestamp: int, ssrc: int, nonce: int) -> bytes:
    """A datagram exactly as discord.py's VoiceClient would send it (no extension)."""
    header = bytearray(12)
    header[0], header[1] = 0x80, 0x78
    struct.pack_into(">HII", header, 2, sequence, timestamp, ssrc)
    fake_client = SimpleNamespace(secret_key=list(KEY), _incr_nonce=nonce)
    fake_client.checked_add = lambda attr, value, limit: None
    return VoiceClient._encrypt_aead_xchacha20_poly1305_rtpsize(fake_client, bytes(header), payload)


def open_datagram(data: bytes, key: bytes = KEY) -> bytes:
    header = parse_header(data)
    return strip_plaintext(header, TransportDecryptor(key).decrypt(data, header))


def test_decrypts_what_discordpy_sends() -> None:
    payload = bytes(random.Random(1).randbytes(97))
    data = discordpy_packet(payload, sequence=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF, nonce=7)
    header = parse_header(data)
    assert (header.sequence, header.ssrc, header.extended) == (65535, 0xDEADBEEF, False)
    assert open_datagram(data) == payload
    assert data[-4:] == struct.pack(">I", 7)  # the nonce counter travels in the clear at the end


@pytest.mark.parametrize("pad", [0, 1, 13])
def test_decrypts_what_the_harness_sends(pad: int) -> None:
    sealer = RtpSealer(KEY)
    data = sealer.seal(b"\x78opus-frame", sequence=5, timestamp=960, ssrc=42, nonce=123456, pad=pad)
    assert open_datagram(data) == b"\x78opus-frame"


def test_both_senders_agree_byte_for_byte_without_extension() -> None:
    sealer = RtpSealer(KEY)
    ours = sealer.seal(b"abc", sequence=9, timestamp=99, ssrc=999, nonce=3, extension=False)
    theirs = discordpy_packet(b"abc", sequence=9, timestamp=99, ssrc=999, nonce=3)
    assert ours == theirs


def test_wrong_key_fails_authentication() -> None:
    data = RtpSealer(KEY).seal(b"frame", sequence=1, timestamp=2, ssrc=3, nonce=4)
    with pytest.raises(BadMac):
        open_datagram(data, key=bytes(32))


@pytest.mark.parametrize("region", ["header", "extension preamble", "ciphertext", "tag", "nonce"])
def test_any_flipped_bit_fails_authentication(region: str) -> None:
    data = bytearray(RtpSealer(KEY).seal(b"x" * 40, sequence=1, timestamp=2, ssrc=3, nonce=4))
    where = {"header": 5, "extension preamble": 14, "ciphertext": 20, "tag": len(data) - 6, "nonce": len(data) - 1}
    data[where[region]] ^= 0x10
    with pytest.raises(BadMac):
        open_datagram(bytes(data))


def test_too_short_for_tag_and_nonce_is_truncation_not_bad_mac() -> None:
    data = RtpSealer(KEY).seal(b"", sequence=1, timestamp=2, ssrc=3, nonce=4, extension=False)
    assert len(data) == 12 + 16 + 4  # header, bare tag, nonce
    with pytest.raises(RtpError):
        open_datagram(data[:-1])


def test_key_length_is_checked() -> None:
    with pytest.raises(ValueError):
        TransportDecryptor(bytes(16))
    assert TransportDecryptor(list(KEY))  # discord.py keeps the key as a list of ints
