"""A fake member's voice client in a live call: what it sends, frame by frame, in real time.

The offline network (:mod:`harness.network`) plays clients on a simulated clock; the
fake voice server needs the same client behaviour at wall-clock pace against a real
discord.py bot, plus what a live call adds: a member cannot send encrypted audio
before its client is in the call's DAVE group, and the server may relay its SPEAKING
late. Per 20 ms frame a member emits the websocket messages the voice server relays
(op 11 when its client connects, op 5 SPEAKING at the start of each talk spurt, op 13
when it leaves or drops) and its datagram, built by the harness wire
(:class:`harness.wire.SpeakerWire`: Opus → DAVE → RTP with the one-byte extension →
``aead_xchacha20_poly1305_rtpsize`` with the 4-byte nonce counter), and logs the
frame's fate for the tests' reference.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from harness.impairments import Fate
from harness.network import OpusCache
from harness.scenario import SpeakerPlan
from harness.sources import FRAME_S
from harness.wire import SpeakerWire

from .protocol import Op

__all__ = ["FrameOut", "LiveMember", "rtcp_sender_report"]

#: Frames of Opus silence a client sends when its user stops talking.
SILENCE_TAIL = 5
#: A sender report every this many frames (5 s), as clients send RTCP beside RTP.
RTCP_EVERY = 250


@dataclass
class FrameOut:
    """One member's output for one frame: websocket messages, then at most one datagram."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    datagram: Optional[bytes] = None
    #: The datagram carries audio (not an Opus-silence frame nor RTCP).
    audio: bool = False
    rtcp: Optional[bytes] = None
    joined: bool = False
    left: bool = False


class LiveMember:
    """One member's client. Not thread-safe: the server's media thread owns it."""

    def __init__(self, plan: SpeakerPlan, wire: SpeakerWire, opus: OpusCache, *,
                 speaking_delay_frames: int = 0) -> None:
        self.plan = plan
        self.wire = wire
        self._opus = opus
        self.speaking_delay_frames = speaking_delay_frames
        self.fates = bytearray()
        #: Per frame: 1 if the client sent audio (whether or not it reached the bot).
        self.spoke = bytearray()
        self.ssrcs: list[tuple[int, int]] = [(plan.join_frame, wire.ssrc)]
        self.joined = False
        self.left = False
        self.away = False
        self.in_spurt = False
        self._silence = 0
        self._delayed: list[tuple[int, dict[str, Any]]] = []
        self._reconnect_frames = sorted({round(r / FRAME_S) for r in plan.reconnects})
        self._gap = round(plan.reconnect_gap_s / FRAME_S)

    @property
    def user_id(self) -> int:
        return self.plan.user_id

    def present(self) -> bool:
        """Connected to the call now (between join and leave, outside a reconnect gap)."""
        return self.joined and not self.left and not self.away

    def log(self, frame: int, fate: Fate, *, spoke: bool = False) -> None:
        for log, value in ((self.fates, int(fate)), (self.spoke, int(spoke))):
            if len(log) < frame:
                log.extend(bytes(frame - len(log)))
            if len(log) == frame:
                log.append(value)
            else:
                log[frame] = value

    def speaking_event(self) -> dict[str, Any]:
        return {"op": Op.SPEAKING, "d": {"user_id": str(self.user_id), "ssrc": self.wire.ssrc, "speaking": 1}}

    def step(self, k: int, *, can_send: Callable[[], bool]) -> FrameOut:
        """Frame ``k``. ``can_send()`` says whether the client may send audio now (it is
        in the call's DAVE group, or the call is not end-to-end encrypted)."""
        out = FrameOut()
        plan = self.plan
        out.messages.extend(msg for due, msg in self._delayed if due <= k)
        self._delayed = [(due, msg) for due, msg in self._delayed if due > k]
        if not self.joined:
            if k < plan.join_frame:
                return out
            self.joined = out.joined = True
            out.messages.append({"op": Op.CLIENTS_CONNECT, "d": {"user_ids": [str(self.user_id)]}})
        if self.left:
            return out
        if plan.leave_frame is not None and k >= plan.leave_frame:
            self.left = out.left = True
            self.in_spurt = False
            out.messages.append({"op": Op.CLIENT_DISCONNECT, "d": {"user_id": str(self.user_id)}})
            return out
        for r in self._reconnect_frames:
            if k == r:
                self.away = True
                self.in_spurt = False
                self._silence = 0
                out.messages.append({"op": Op.CLIENT_DISCONNECT, "d": {"user_id": str(self.user_id)}})
            if k == r + self._gap:
                self.away = False
                self.wire.reconnect()
                self.ssrcs.append((k, self.wire.ssrc))
                out.messages.append({"op": Op.CLIENTS_CONNECT, "d": {"user_ids": [str(self.user_id)]}})
        if self.away:
            return out
        source = plan.source
        if source.talking(k):
            if not can_send():  # its client is not in the call's DAVE group yet
                self.wire.pause(frames=1)
                return out
            if not self.in_spurt:
                self.in_spurt = True
                self._silence = 0
                if self.speaking_delay_frames:
                    self._delayed.append((k + self.speaking_delay_frames, self.speaking_event()))
                else:
                    out.messages.append(self.speaking_event())
            out.datagram = self.wire.packet_from_opus(self._opus.packet(source, k))
            out.audio = True
        elif self.in_spurt or self._silence:
            if self.in_spurt:
                self.in_spurt = False
                self._silence = SILENCE_TAIL
            out.datagram = self.wire.silence_packets(1)[0]
            self._silence -= 1
        else:
            self.wire.pause(frames=1)
        if k % RTCP_EVERY == RTCP_EVERY - 1:
            out.rtcp = rtcp_sender_report(self.wire)
        return out


def rtcp_sender_report(wire: SpeakerWire) -> bytes:
    """An RTCP sender report as rtpsize modes carry it: the 8-byte header in the clear
    (authenticated), the report body encrypted, the 4-byte nonce counter appended."""
    header = struct.pack(">BBHI", 0x80, 200, 6, wire.ssrc)
    body = struct.pack(">QIII", 0, wire.timestamp, wire.sent, wire.sent * 100)
    data = wire.group.sealer.seal_rtcp(header, body, nonce=wire.nonce)
    wire.nonce = (wire.nonce + 1) & 0xFFFFFFFF
    return data
