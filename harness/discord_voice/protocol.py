"""Discord's voice gateway v8 as the fake server speaks it: opcodes, payloads, framing.

Written from what discord.py 2.7.1's ``DiscordVoiceWebSocket`` sends and expects
(``gateway.py``) and the DAVE protocol's opcode table, so the real client meets the
same bytes it would meet on Discord:

* JSON messages are ``{"op": n, "d": {...}}``; a server message carries ``"seq"`` (v8
  buffered resume), which the client echoes as ``seq_ack`` in its heartbeats.
* Binary messages (DAVE/MLS) are ``seq (u16 BE) | op (u8) | payload`` from the server
  and ``op (u8) | payload`` from the client.
* IP discovery is one 74-byte UDP datagram each way: ``type (u16) | length=70 (u16) |
  ssrc (u32) | address (64 bytes, NUL-padded ASCII) | port (u16 BE)``, type 1 the
  request and 2 the response.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

__all__ = [
    "DISCOVERY_LENGTH",
    "Op",
    "binary_frame",
    "discovery_request",
    "discovery_response",
    "json_frame",
    "parse_binary",
    "parse_discovery",
]

MODE: Final = "aead_xchacha20_poly1305_rtpsize"
#: The modes READY offers, newest first (discord.py picks the first it supports).
MODES: Final = ["aead_aes256_gcm_rtpsize", MODE, "xsalsa20_poly1305_lite_rtpsize"]
DISCOVERY_LENGTH: Final = 74
#: What Discord's HELLO says; discord.py heartbeats every min(this, 5 s).
HEARTBEAT_INTERVAL_MS: Final = 13_750


class Op:
    """Voice gateway opcodes (v8 with DAVE)."""

    IDENTIFY = 0
    SELECT_PROTOCOL = 1
    READY = 2
    HEARTBEAT = 3
    SESSION_DESCRIPTION = 4
    SPEAKING = 5
    HEARTBEAT_ACK = 6
    RESUME = 7
    HELLO = 8
    RESUMED = 9
    CLIENTS_CONNECT = 11
    CLIENT_CONNECT = 12
    CLIENT_DISCONNECT = 13
    DAVE_PREPARE_TRANSITION = 21
    DAVE_EXECUTE_TRANSITION = 22
    DAVE_TRANSITION_READY = 23
    DAVE_PREPARE_EPOCH = 24
    MLS_EXTERNAL_SENDER = 25
    MLS_KEY_PACKAGE = 26
    MLS_PROPOSALS = 27
    MLS_COMMIT_WELCOME = 28
    MLS_ANNOUNCE_COMMIT_TRANSITION = 29
    MLS_WELCOME = 30
    MLS_INVALID_COMMIT_WELCOME = 31


def json_frame(op: int, data: dict[str, Any], seq: int | None = None) -> str:
    msg: dict[str, Any] = {"op": op, "d": data}
    if seq is not None:
        msg["seq"] = seq
    return json.dumps(msg)


def binary_frame(seq: int, op: int, payload: bytes) -> bytes:
    return struct.pack(">HB", seq & 0xFFFF, op) + payload


def parse_binary(data: bytes) -> tuple[int, bytes]:
    """A client binary message: (op, payload)."""
    if not data:
        raise ValueError("empty binary message")
    return data[0], data[1:]


def discovery_request(ssrc: int) -> bytes:
    return struct.pack(">HHI", 1, 70, ssrc) + bytes(66)


def parse_discovery(data: bytes) -> int | None:
    """The SSRC of an IP-discovery request, or None if ``data`` is not one."""
    if len(data) != DISCOVERY_LENGTH:
        return None
    kind, length, ssrc = struct.unpack_from(">HHI", data)
    if kind != 1 or length != 70:
        return None
    return int(ssrc)


def discovery_response(ssrc: int, address: str, port: int) -> bytes:
    raw = address.encode("ascii")
    if len(raw) >= 64:
        raise ValueError("address too long for IP discovery")
    return struct.pack(">HHI", 2, 70, ssrc) + raw + bytes(64 - len(raw)) + struct.pack(">H", port)
