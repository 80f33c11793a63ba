"""Datagrams in, decoded :class:`VoiceFrame`s out: the one receive path.

The real bot (through :mod:`.discord_bridge`) and the harness both push raw UDP
datagrams into :meth:`VoiceReceiver.on_datagram`; everything after that is shared:

    RTP header → transport decrypt (PyNaCl) → strip extension/padding → SSRC → user
    → duplicate/late filter → reorder buffer → DAVE decrypt (in order) → Opus decode → sink

Opus is decoded to the channel count the sink keeps (:meth:`VoiceReceiver.set_sink`):
a mono meeting's frames come out of libopus mono, at 0.68x the CPU of a stereo
decode, the biggest single cost of receiving (bench/receive.py).

``on_datagram`` runs on discord.py's socket reader thread. It must never raise (an
exception there is logged by discord.py and the packet lost without a count) and never
block (the socket's buffer overflows and the kernel drops packets for *every*
speaker). So all work is in-memory, the only lock is held for microseconds by the
event-loop side (mapping SSRCs), and the sink must be O(1) too
(``RecordingSession.feed`` is). Every bad packet is counted in :class:`ReceiveStats`
and logged (each one at DEBUG; the first few of each kind and then every 1000th at
WARNING, so a flood of garbage cannot flood the bot's log).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Callable

from ..audio.opus import FRAME_SAMPLES, OpusDecodeError, OpusDecoder, ensure_opus
from ..objects.frames import DISCORD_CHANNELS, VoiceFrame
from .dave import DaveDecryptor, PassthroughDecryptor
from .jitter import Arrival, Release, ReorderBuffer, Slot
from .rtp import OPUS_PAYLOAD_TYPE, RtpError, extend_sequence, is_rtcp, is_rtp_version, parse_header, strip_plaintext
from .transport import BadMac, TransportDecryptor

log = logging.getLogger("red.chunkrecorder.voice.receiver")

#: Gaps up to this many packets are filled with Opus FEC/PLC; longer ones are left silent.
MAX_CONCEAL = 3
#: Packets from an SSRC nobody has claimed yet wait for its SPEAKING event: up to this
#: many per SSRC (2 s of audio) and this long, then they are dropped as unknown_ssrc.
PENDING_LIMIT = 100
PENDING_MAX_AGE_S = 2.0
#: Parked packets of all unknown SSRCs together: memory stays bounded (a few MB at
#: most) however many SSRCs a flood invents; beyond it the oldest parked packet goes.
PENDING_TOTAL = 4096
_TS_MOD = 1 << 32


@dataclass(slots=True)
class ReceiveStats:
    """Counters since the receiver was made. Read them any time; they only grow."""

    received: int = 0  # datagrams handed to on_datagram
    ignored: int = 0  # not voice: RTCP, IP discovery, other payload types, padding-only
    decrypted: int = 0  # passed transport decryption
    delivered: int = 0  # frames handed to the sink (including concealed ones)
    concealed: int = 0  # frames synthesised by FEC/PLC for lost packets
    lost: int = 0  # packets never received (gaps in sequence numbers)
    duplicates: int = 0
    late: int = 0  # arrived after the reorder window had given up on them
    bad_mac: int = 0
    truncated: int = 0
    malformed: int = 0  # decrypted, but the extension or padding does not fit
    garbage_opus: int = 0
    dave_failed: int = 0
    unknown_ssrc: int = 0  # never claimed by a SPEAKING/connect event in time

    @property
    def dropped_corrupt(self) -> int:
        """Packets dropped because they were damaged or unreadable."""
        return self.bad_mac + self.truncated + self.malformed + self.garbage_opus + self.dave_failed

    def snapshot(self) -> "ReceiveStats":
        return ReceiveStats(**{f.name: getattr(self, f.name) for f in fields(self)})

    def as_dict(self) -> dict[str, int]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["dropped_corrupt"] = self.dropped_corrupt
        return data


class _Stream:
    """One SSRC's state: who it is, its sequence space, reorder buffer and decoder."""

    __slots__ = ("ssrc", "user_id", "highest", "buffer", "decoder", "last_ts")

    def __init__(self, ssrc: int, user_id: int, buffer: ReorderBuffer) -> None:
        self.ssrc = ssrc
        self.user_id = user_id
        self.highest: int | None = None
        self.buffer = buffer
        self.decoder: OpusDecoder | None = None
        self.last_ts: int | None = None

    def extend(self, sequence: int) -> int:
        ext = sequence if self.highest is None else extend_sequence(self.highest, sequence)
        if self.highest is None or ext > self.highest:
            self.highest = ext
        return ext


@dataclass(slots=True)
class _Pending:
    arrival: float
    sequence: int
    timestamp: int
    payload: bytes


class VoiceReceiver:
    """Turns one voice connection's datagrams into per-speaker frames for ``sink``."""

    def __init__(
        self,
        *,
        secret_key: bytes,
        sink: Callable[[VoiceFrame], None],
        dave: DaveDecryptor | None,
        clock: Callable[[], float],
        reorder_depth: int = 5,
        max_delay_s: float = 0.2,
        channels: int = DISCORD_CHANNELS,
    ) -> None:
        ensure_opus()
        _check_channels(channels)
        #: What the frames handed to the sink carry (see :meth:`set_sink`).
        self.channels = channels
        self._transport = TransportDecryptor(secret_key)
        self._sink = sink
        self._dave: DaveDecryptor = dave if dave is not None else PassthroughDecryptor()
        self._clock = clock
        self._depth = reorder_depth
        self._max_delay = max_delay_s
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._ssrc_of_user: dict[int, int] = {}
        # Unknown SSRCs in the order they were first parked; with ``_parked`` (their packets
        # in total) this makes parking, eviction and expiry O(1) per packet (amortised).
        # (Lists, not deques: a deque costs ~600 bytes even holding one packet.)
        self._pending: OrderedDict[int, list[_Pending]] = OrderedDict()
        self._parked = 0
        self._warned: dict[str, int] = {}
        self.stats = ReceiveStats()
        #: Clock reading of the last voice datagram that decrypted (a sign the path is alive).
        self.last_datagram_at: float | None = None

    # ---- configuration (event-loop side) -------------------------------------------
    def set_secret_key(self, secret_key: bytes) -> None:
        """A reconnect negotiated a new key; packets sealed with the old one now fail."""
        transport = TransportDecryptor(secret_key)
        with self._lock:
            self._transport = transport

    def set_dave(self, dave: DaveDecryptor | None) -> None:
        with self._lock:
            self._dave = dave if dave is not None else PassthroughDecryptor()

    def set_sink(self, sink: Callable[[VoiceFrame], None], *, channels: int | None = None) -> None:
        """Where frames go from now on (the cog points it at ``RecordingSession.feed``).

        ``channels`` is the count the sink keeps (the meeting's: 1 by default): Opus is
        decoded straight to it, which for mono costs 0.68x a stereo decode and spares
        the pipeline a conversion. A stream's decoder is made anew for a new count (at
        a meeting's start; it loses only the previous packet's state). ``None`` keeps
        the current count.
        """
        if channels is not None:
            _check_channels(channels)
        with self._lock:
            self._sink = sink
            if channels is not None:
                self.channels = channels

    def set_clock(self, clock: Callable[[], float]) -> None:
        """The clock ``VoiceFrame.arrival`` is read from (the session's clock)."""
        with self._lock:
            self._clock = clock

    def map_ssrc(self, ssrc: int, user_id: int) -> None:
        """``ssrc`` is ``user_id``'s audio from now on (SPEAKING / CLIENT_CONNECT).

        A user has one audio SSRC: a new one (reconnect) retires the old, whose held
        frames are released first. Packets that arrived before the mapping are replayed.
        """
        with self._lock:
            stream = self._streams.get(ssrc)
            if stream is not None and stream.user_id == user_id:
                return
            if stream is not None:  # SSRC reused by someone else
                self._retire(stream)
            old_ssrc = self._ssrc_of_user.get(user_id)
            if old_ssrc is not None and old_ssrc in self._streams:
                self._retire(self._streams[old_ssrc])
            self._streams[ssrc] = _Stream(ssrc, user_id, ReorderBuffer(depth=self._depth, max_delay_s=self._max_delay))
            self._ssrc_of_user[user_id] = ssrc
            waiting = self._pending.pop(ssrc, None)
            if waiting:
                self._parked -= len(waiting)
                now = self._clock()
                stream = self._streams[ssrc]
                for item in waiting:
                    if now - item.arrival > PENDING_MAX_AGE_S:
                        self._count("unknown_ssrc", 1, f"SSRC {ssrc} mapped too late for a parked packet")
                        continue
                    self._accept(stream, item.sequence, item.timestamp, item.arrival, item.payload)
                self._emit(stream, stream.buffer.pop_ready(now))

    def forget_user(self, user_id: int) -> None:
        """The user left: release what they said, then treat their SSRC as unknown."""
        with self._lock:
            ssrc = self._ssrc_of_user.pop(user_id, None)
            if ssrc is not None and ssrc in self._streams:
                self._retire(self._streams[ssrc])

    @property
    def parked(self) -> int:
        """Packets waiting for their SSRC to be claimed (at most :data:`PENDING_TOTAL`)."""
        return self._parked

    @property
    def parked_ssrcs(self) -> int:
        return len(self._pending)

    def user_for(self, ssrc: int) -> int | None:
        stream = self._streams.get(ssrc)
        return stream.user_id if stream else None

    def ssrc_for(self, user_id: int) -> int | None:
        return self._ssrc_of_user.get(user_id)

    def poll(self, now: float | None = None) -> None:
        """Release frames held behind gaps that have waited long enough; expire strays."""
        with self._lock:
            now = self._clock() if now is None else now
            for stream in list(self._streams.values()):
                if stream.buffer.held:
                    self._emit(stream, stream.buffer.pop_ready(now))
            self._expire_pending(now)

    def flush(self) -> None:
        """Release everything held (stop, disconnect); unclaimed packets are dropped."""
        with self._lock:
            for stream in list(self._streams.values()):
                self._emit(stream, stream.buffer.drain())
            for ssrc, queue in self._pending.items():
                self._count("unknown_ssrc", len(queue), f"SSRC {ssrc} never mapped to a user")
            self._pending.clear()
            self._parked = 0

    # ---- the socket thread ---------------------------------------------------------
    def on_datagram(self, data: bytes) -> None:
        """Handle one datagram. Never raises, never blocks."""
        try:
            with self._lock:
                self._handle(data)
        except Exception:  # a bug must not kill discord.py's reader thread
            log.exception("Unexpected error handling a voice datagram; packet dropped")

    def _handle(self, data: bytes) -> None:
        stats = self.stats
        stats.received += 1
        if not is_rtp_version(data) or is_rtcp(data):
            stats.ignored += 1
            return
        try:
            header = parse_header(data)
        except RtpError as exc:
            self._count("truncated", 1, f"{len(data)}-byte datagram: {exc}")
            return
        if header.payload_type != OPUS_PAYLOAD_TYPE:
            stats.ignored += 1
            return
        try:
            plaintext = self._transport.decrypt(data, header)
        except RtpError as exc:
            self._count("truncated", 1, f"SSRC {header.ssrc} seq {header.sequence}: {exc}")
            return
        except BadMac:
            self._count("bad_mac", 1, f"SSRC {header.ssrc} seq {header.sequence}: authentication failed")
            return
        stats.decrypted += 1
        try:
            payload = strip_plaintext(header, plaintext)
        except RtpError as exc:
            self._count("malformed", 1, f"SSRC {header.ssrc} seq {header.sequence}: {exc}")
            return
        now = self._clock()
        self.last_datagram_at = now
        if not payload:  # padding-only keepalive
            stats.ignored += 1
            return
        stream = self._streams.get(header.ssrc)
        if stream is None:
            self._park(header.ssrc, _Pending(now, header.sequence, header.timestamp, payload))
            return
        self._accept(stream, header.sequence, header.timestamp, now, payload)
        self._emit(stream, stream.buffer.pop_ready(now))
        if self._pending:
            self._expire_pending(now)

    # ---- internals (lock held) -----------------------------------------------------
    def _accept(self, stream: _Stream, sequence: int, timestamp: int, arrival: float, payload: bytes) -> None:
        seq = stream.extend(sequence)
        verdict = stream.buffer.classify(seq)
        if verdict is Arrival.DUPLICATE:
            self.stats.duplicates += 1
            return
        if verdict is Arrival.LATE:
            self.stats.late += 1
            return
        forced = stream.buffer.push(Slot(seq, timestamp, arrival, payload))
        if forced:
            self._emit(stream, forced)

    def _emit(self, stream: _Stream, releases: list[Release]) -> None:
        if not releases:
            return
        decoder = stream.decoder
        if decoder is None or decoder.channels != self.channels:
            decoder = stream.decoder = OpusDecoder(self.channels)
        channels = decoder.channels
        sink = self._sink
        stats = self.stats
        for release in releases:
            slot = release.slot
            missing = release.missing
            stats.lost += missing
            # DAVE decrypts in sequence order: libdave refuses a frame older than the
            # first one it saw from a sender, so decrypting on arrival would lose
            # reordered packets at the start of every stream.
            opus = self._dave.decrypt(stream.user_id, slot.payload)
            if opus is None:
                self._count("dave_failed", 1, f"user {stream.user_id} seq {slot.seq & 0xFFFF}: DAVE decrypt failed")
                continue
            if missing:
                if missing <= MAX_CONCEAL and stream.last_ts is not None and (
                    (slot.timestamp - stream.last_ts) % _TS_MOD == (missing + 1) * FRAME_SAMPLES
                ):
                    for i in range(missing):
                        pcm = self._conceal(decoder, opus if i == missing - 1 else None)
                        if pcm is None:
                            break
                        ts = (stream.last_ts + FRAME_SAMPLES * (i + 1)) % _TS_MOD
                        seq = (slot.seq - missing + i) & 0xFFFF
                        self._deliver(sink, VoiceFrame(stream.user_id, stream.ssrc, seq, ts, slot.arrival, pcm, channels))
                        stats.concealed += 1
            try:
                pcm = decoder.decode(opus)
            except OpusDecodeError as exc:
                self._count("garbage_opus", 1, f"user {stream.user_id} seq {slot.seq & 0xFFFF}: {exc}")
                stream.last_ts = slot.timestamp
                continue
            stream.last_ts = slot.timestamp
            self._deliver(sink, VoiceFrame(stream.user_id, stream.ssrc, slot.seq & 0xFFFF, slot.timestamp,
                                           slot.arrival, pcm, channels))

    @staticmethod
    def _conceal(decoder: OpusDecoder, next_payload: bytes | None) -> bytes | None:
        """A stand-in for a lost frame: FEC from the next packet if given, else PLC."""
        if next_payload is not None:
            try:
                return decoder.recover(next_payload)
            except OpusDecodeError:
                pass  # the next packet is itself garbage; it is counted when decoded
        try:
            return decoder.conceal()
        except OpusDecodeError:
            return None

    def _deliver(self, sink: Callable[[VoiceFrame], None], frame: VoiceFrame) -> None:
        self.stats.delivered += 1
        try:
            sink(frame)
        except Exception:
            log.exception("The voice sink raised; frame of user %s dropped", frame.user_id)

    def _retire(self, stream: _Stream) -> None:
        self._emit(stream, stream.buffer.drain())
        self._streams.pop(stream.ssrc, None)
        if self._ssrc_of_user.get(stream.user_id) == stream.ssrc:
            del self._ssrc_of_user[stream.user_id]

    def _park(self, ssrc: int, item: _Pending) -> None:
        pending = self._pending
        queue = pending.get(ssrc)
        if queue is None:
            queue = pending[ssrc] = []
        queue.append(item)
        self._parked += 1
        if len(queue) > PENDING_LIMIT:
            del queue[0]
            self._parked -= 1
            self._count("unknown_ssrc", 1, "an unknown SSRC sent more than can wait")
        while self._parked > PENDING_TOTAL:
            oldest, old_queue = next(iter(pending.items()))
            del old_queue[0]
            self._parked -= 1
            self._count("unknown_ssrc", 1, "too many packets from unknown SSRCs")
            if not old_queue:
                del pending[oldest]
        self._expire_pending(item.arrival)

    def _expire_pending(self, now: float) -> None:
        """Drop parked packets past their age, oldest SSRC first; stops at the first SSRC
        with a young packet (so it is O(1) per packet; a later SSRC's stale packets wait
        at most until then, and are refused at claim time anyway)."""
        pending = self._pending
        while pending:
            ssrc, queue = next(iter(pending.items()))
            while queue and now - queue[0].arrival > PENDING_MAX_AGE_S:
                del queue[0]
                self._parked -= 1
                self._count("unknown_ssrc", 1, "an unknown SSRC was never claimed")
            if queue:
                return
            del pending[ssrc]

    def _count(self, kind: str, n: int, detail: str) -> None:
        if n <= 0:
            return
        setattr(self.stats, kind, getattr(self.stats, kind) + n)
        seen = self._warned.get(kind, 0) + n
        self._warned[kind] = seen
        if seen <= 5 or seen % 1000 < n:
            log.warning("Dropped voice packet (%s, %d so far): %s", kind, seen, detail)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("Dropped voice packet (%s): %s", kind, detail)


def _check_channels(channels: int) -> None:
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, not {channels}")
