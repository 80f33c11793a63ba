"""A voice channel's wire: one transport key, one DAVE group, a sender per speaker.

:class:`WireGroup` is what the fake voice network builds on; :class:`SpeakerWire` turns
one speaker's 20 ms PCM frames into the datagrams the bot would receive from Discord:

    PCM → Opus (bundled libopus, 64 kb/s, FEC on) → DAVE encrypt_opus (that speaker's real
    davey session) → RTP header + one-byte extension → aead_xchacha20_poly1305_rtpsize

and :meth:`WireGroup.make_receiver` builds the cog's real ``VoiceReceiver`` with the
matching key and the bot's DAVE session. See docs/architecture.md, "Harness wire".
"""

from __future__ import annotations

import enum
import random
import struct
from typing import Any, Callable, Optional

from chunkrecorder.audio.opus import FRAME_SAMPLES, OPUS_SILENCE, OpusEncoder, ensure_opus
from chunkrecorder.objects.frames import VoiceFrame
from chunkrecorder.voice.dave import DaveyDecryptor
from chunkrecorder.voice.receiver import VoiceReceiver

from .dave import DaveGroup
from .packets import RtpSealer

__all__ = ["Corruption", "SpeakerWire", "WireGroup"]

#: Discord clients send this many silence frames when speech stops.
SILENCE_FRAMES = 5


class Corruption(str, enum.Enum):
    """Ways a datagram can arrive damaged; the receiver must count and drop each."""

    BAD_MAC = "bad_mac"  # a flipped ciphertext bit: authentication fails
    TRUNCATED = "truncated"  # cut too short to hold a header, tag and nonce
    GARBAGE_OPUS = "garbage_opus"  # sealed and DAVE-wrapped correctly, but libopus rejects it


class SpeakerWire:
    """One speaker's client: its Opus encoder, RTP counters, nonce and DAVE session."""

    def __init__(
        self,
        group: "WireGroup",
        user_id: int,
        ssrc: int,
        rng: random.Random,
        dave: Any,
        *,
        bitrate: int,
        complexity: int,
        application: str = "audio",
    ) -> None:
        self.group = group
        self.user_id = user_id
        self.ssrc = ssrc
        self._rng = rng
        self._dave = dave
        self._bitrate = bitrate
        self._complexity = complexity
        self._application = application
        self.encoder = self._new_encoder()
        self.sequence = rng.randrange(1 << 16)
        self.timestamp = rng.randrange(1 << 32)
        self.nonce = 0
        self.sent = 0

    @property
    def dave(self) -> Any:
        """This speaker's davey session; joining the group happens on first use, in a
        batch with every other speaker added since (one MLS commit, not one each)."""
        if self._dave is None and self.group.dave is not None:
            self.group.join_pending()
        return self._dave

    @dave.setter
    def dave(self, session: Any) -> None:
        self._dave = session

    # ---- sending --------------------------------------------------------------
    def packet(self, pcm: bytes, *, pad: int = 0) -> bytes:
        """One datagram for one 20 ms frame (48 kHz stereo s16le, 3840 bytes)."""
        return self.packet_from_opus(self.encoder.encode(pcm), pad=pad)

    def packet_from_opus(self, opus: bytes, *, pad: int = 0) -> bytes:
        """One datagram carrying an already-encoded Opus packet; advances the counters."""
        frame = self.dave.encrypt_opus(opus) if self.dave is not None else opus
        data = self.group.sealer.seal(
            frame, sequence=self.sequence, timestamp=self.timestamp, ssrc=self.ssrc, nonce=self.nonce, pad=pad
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        self.nonce = (self.nonce + 1) & 0xFFFFFFFF
        self.sent += 1
        return data

    def silence_packets(self, count: int = SILENCE_FRAMES) -> list[bytes]:
        """The Opus-silence frames a client sends when its user stops talking."""
        return [self.packet_from_opus(OPUS_SILENCE) for _ in range(count)]

    def pause(self, frames: int = 1) -> None:
        """Quiet: nothing is sent, the RTP clock runs on (sequence numbers do not)."""
        self.timestamp = (self.timestamp + FRAME_SAMPLES * frames) & 0xFFFFFFFF

    def reconnect(self, ssrc: Optional[int] = None) -> int:
        """The client reconnects: new SSRC, fresh random sequence/timestamp, new encoder."""
        self.ssrc = self.group._new_ssrc() if ssrc is None else ssrc
        self.sequence = self._rng.randrange(1 << 16)
        self.timestamp = self._rng.randrange(1 << 32)
        self.encoder = self._new_encoder()
        return self.ssrc

    def _new_encoder(self) -> OpusEncoder:
        return OpusEncoder(bitrate=self._bitrate, complexity=self._complexity, application=self._application)

    # ---- what the voice websocket says about this speaker -----------------------
    def speaking_event(self, speaking: int = 1) -> dict[str, Any]:
        """op 5 SPEAKING, as Discord relays it to the other clients."""
        return {"op": 5, "d": {"user_id": str(self.user_id), "ssrc": self.ssrc, "speaking": speaking}}

    def connect_event(self) -> dict[str, Any]:
        """op 11 CLIENTS_CONNECT for this speaker."""
        return {"op": 11, "d": {"user_ids": [str(self.user_id)]}}

    # ---- damage -----------------------------------------------------------------
    def garbage_packet(self, sequence: int, timestamp: int, rng: random.Random) -> bytes:
        """A datagram in this speaker's stream whose Opus payload libopus must reject.

        A TOC byte of frame-count code 3 followed by a count of zero frames is invalid
        Opus however the rest reads; it still goes through DAVE and transport
        encryption so only the Opus decoder can tell.
        """
        garbage = bytes([(rng.randrange(32) << 3) | 0b011, 0x00]) + rng.randbytes(rng.randrange(10, 120))
        frame = self.dave.encrypt_opus(garbage) if self.dave is not None else garbage
        data = self.group.sealer.seal(frame, sequence=sequence, timestamp=timestamp, ssrc=self.ssrc, nonce=self.nonce)
        self.nonce = (self.nonce + 1) & 0xFFFFFFFF
        return data


class WireGroup:
    """The channel as the bot's connection sees it: key, DAVE group, speakers' senders."""

    def __init__(
        self,
        *,
        channel_id: int = 1,
        bot_user_id: int = 999,
        seed: int = 0,
        dave: bool = True,
        bitrate: int = 64_000,
        complexity: int = 5,
        application: str = "audio",
    ) -> None:
        ensure_opus()
        self.channel_id = channel_id
        self.bot_user_id = bot_user_id
        self._rng = random.Random(seed)
        self.secret_key = self._rng.randbytes(32)
        self.sealer = RtpSealer(self.secret_key)
        self.dave: Optional[DaveGroup] = DaveGroup(channel_id=channel_id, bot_user_id=bot_user_id) if dave else None
        self.bitrate = bitrate
        self.complexity = complexity
        #: "audio" (CELT, waveform-faithful: decoded speech correlates ~0.99 with its
        #: source) is discord.py's own default; "voip" (SILK) is closer to some clients
        #: but keeps only ~0.8 waveform correlation, too loose for sample-level checks.
        self.application = application
        self.speakers: dict[int, SpeakerWire] = {}
        self._pending: list[SpeakerWire] = []
        self._ssrcs: set[int] = set()

    def _new_ssrc(self) -> int:
        while True:
            ssrc = self._rng.randrange(1, 1 << 32)
            if ssrc not in self._ssrcs:
                self._ssrcs.add(ssrc)
                return ssrc

    def add_speaker(self, user_id: int, ssrc: Optional[int] = None) -> SpeakerWire:
        """A speaker's sender; with DAVE on, it joins the MLS group on first use."""
        if user_id in self.speakers:
            raise ValueError(f"user {user_id} already has a sender")
        if ssrc is not None:
            self._ssrcs.add(ssrc)
        # Each speaker gets its own RNG stream, so adding one does not reseed the others.
        rng = random.Random(self._rng.randrange(1 << 62))
        wire = SpeakerWire(
            self, user_id, ssrc if ssrc is not None else self._new_ssrc(), rng, None,
            bitrate=self.bitrate, complexity=self.complexity, application=self.application,
        )
        self.speakers[user_id] = wire
        if self.dave is not None:
            self._pending.append(wire)
        return wire

    def add_speakers(self, user_ids: list[int]) -> list[SpeakerWire]:
        """Several speakers at once (they join the DAVE group together, on first use)."""
        return [self.add_speaker(uid) for uid in user_ids]

    def join_pending(self) -> None:
        """Add every speaker not yet in the DAVE group in one commit (one new epoch).

        MLS costs grow with the group: each joiner verifies the whole tree (~60 ms for
        100 members here), and adding members one epoch at a time would also make every
        existing member process every commit. Batching keeps a 100-speaker meeting's
        set-up to a few seconds.
        """
        if self.dave is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        sessions = self.dave.add_members([w.user_id for w in pending])
        for wire in pending:
            wire.dave = sessions[wire.user_id]

    def remove_speaker(self, user_id: int) -> dict[str, Any]:
        """The speaker's client leaves; returns op 13 CLIENT_DISCONNECT."""
        self.speakers.pop(user_id, None)
        return {"op": 13, "d": {"user_id": str(user_id)}}

    def ws_events(self) -> list[dict[str, Any]]:
        """What the voice server tells a bot that joins now: who is here, whose SSRC is whose."""
        events: list[dict[str, Any]] = []
        if self.speakers:
            events.append({"op": 11, "d": {"user_ids": [str(u) for u in self.speakers]}})
        events.extend(w.speaking_event() for w in self.speakers.values())
        return events

    def session_description(self) -> dict[str, Any]:
        """op 4 SESSION_DESCRIPTION carrying this group's transport key."""
        return {
            "op": 4,
            "d": {
                "mode": "aead_xchacha20_poly1305_rtpsize",
                "secret_key": list(self.secret_key),
                "dave_protocol_version": 1 if self.dave is not None else 0,
            },
        }

    def make_receiver(
        self, *, sink: Callable[[VoiceFrame], None], clock: Callable[[], float], **options: Any
    ) -> VoiceReceiver:
        """The cog's real receiver, keyed for this group, decrypting DAVE as the bot."""
        dave = DaveyDecryptor.for_session(self.dave.bot) if self.dave is not None else None
        return VoiceReceiver(secret_key=self.secret_key, sink=sink, dave=dave, clock=clock, **options)

    def corrupt(self, data: bytes, kind: Corruption | str, rng: random.Random) -> bytes:
        """Damage one datagram the way ``kind`` says (see :class:`Corruption`)."""
        kind = Corruption(kind.value if isinstance(kind, enum.Enum) else kind)
        header_len = 12 + 4 * (data[0] & 0x0F) + (4 if data[0] & 0x10 else 0)
        if kind is Corruption.BAD_MAC:
            out = bytearray(data)
            pos = rng.randrange(header_len, len(data) - 4)
            out[pos] ^= 1 << rng.randrange(8)
            return bytes(out)
        if kind is Corruption.TRUNCATED:
            return data[: rng.randrange(1, header_len + 16 + 4)]
        sequence, timestamp, ssrc = struct.unpack_from(">HII", data, 2)
        speaker = next((w for w in self.speakers.values() if w.ssrc == ssrc), None)
        if speaker is None:
            raise ValueError(f"no speaker sends SSRC {ssrc}")
        return speaker.garbage_packet(sequence, timestamp, rng)
