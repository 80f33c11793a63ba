"""RTP header parsing in the rtpsize layout, against headers the harness wire builds."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunkrecorder.voice.rtp import (
    OPUS_PAYLOAD_TYPE,
    RtpError,
    extend_sequence,
    is_rtcp,
    is_rtp_version,
    parse_header,
    strip_plaintext,
)
from harness.wire.packets import RtpSealer


@given(
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    extension=st.booleans(),
    padded=st.booleans(),
    marker=st.booleans(),
)
def test_header_fields_round_trip(sequence: int, timestamp: int, ssrc: int, extension: bool, padded: bool,
                                  marker: bool) -> None:
    raw = RtpSealer.header(sequence=sequence, timestamp=timestamp, ssrc=ssrc, extension=extension,
                           padded=padded, marker=marker)
    h = parse_header(raw + bytes(30))
    assert (h.sequence, h.timestamp, h.ssrc) == (sequence, timestamp, ssrc)
    assert h.payload_type == OPUS_PAYLOAD_TYPE and h.marker is marker
    assert h.extended is extension and h.padding is padded
    # The extension preamble is part of the authenticated header in rtpsize modes.
    assert h.header_length == (16 if extension else 12)
    assert h.extension_words == (1 if extension else 0)


def test_csrcs_lengthen_the_header() -> None:
    raw = bytearray(RtpSealer.header(sequence=1, timestamp=2, ssrc=3, extension=True))
    raw[0] |= 2  # two CSRCs between the fixed header and the extension preamble
    data = bytes(raw[:12]) + struct.pack(">II", 7, 8) + bytes(raw[12:]) + bytes(30)
    h = parse_header(data)
    assert h.csrc_count == 2 and h.header_length == 12 + 8 + 4 and h.extension_words == 1


@pytest.mark.parametrize("length", [0, 1, 11])
def test_short_datagrams_are_refused(length: int) -> None:
    with pytest.raises(RtpError):
        parse_header(RtpSealer.header(sequence=1, timestamp=2, ssrc=3)[:length])


def test_extension_preamble_cut_off_is_refused() -> None:
    raw = RtpSealer.header(sequence=1, timestamp=2, ssrc=3, extension=True)
    with pytest.raises(RtpError):
        parse_header(raw[:14])


def test_strip_removes_extension_body_and_padding() -> None:
    h = parse_header(RtpSealer.header(sequence=1, timestamp=2, ssrc=3, extension=True, padded=True) + bytes(20))
    plaintext = RtpSealer.extension_body(40) + b"OPUS" + bytes(2) + b"\x03"
    assert strip_plaintext(h, plaintext) == b"OPUS"


@pytest.mark.parametrize("tail", [b"\x00", b"\x09"])
def test_impossible_padding_is_malformed(tail: bytes) -> None:
    h = parse_header(RtpSealer.header(sequence=1, timestamp=2, ssrc=3, extension=True, padded=True) + bytes(20))
    with pytest.raises(RtpError):
        strip_plaintext(h, RtpSealer.extension_body() + b"OP" + tail)


def test_extension_longer_than_payload_is_malformed() -> None:
    raw = bytearray(RtpSealer.header(sequence=1, timestamp=2, ssrc=3, extension=True))
    raw[14:16] = struct.pack(">H", 9)  # claims 36 bytes of extension elements
    h = parse_header(bytes(raw) + bytes(30))
    with pytest.raises(RtpError):
        strip_plaintext(h, bytes(20))


def test_non_voice_packets_are_recognised() -> None:
    ip_discovery = struct.pack(">HHI", 2, 70, 1234) + bytes(66)
    assert not is_rtp_version(ip_discovery)
    rtcp_receiver_report = bytes([0x81, 201]) + bytes(30)
    assert is_rtp_version(rtcp_receiver_report) and is_rtcp(rtcp_receiver_report)
    assert not is_rtcp(RtpSealer.header(sequence=1, timestamp=2, ssrc=3))


@given(start=st.integers(0, 0xFFFF), steps=st.lists(st.integers(-300, 300), min_size=1, max_size=50))
def test_sequence_extension_follows_wraparound(start: int, steps: list[int]) -> None:
    true = start + 10 * 0x10000  # an unwrapped counter far from zero
    highest = true
    for step in steps:
        true += step
        ext = extend_sequence(highest, true & 0xFFFF)
        assert ext == true
        highest = max(highest, ext)
