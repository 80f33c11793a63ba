"""Receive-path CPU: datagram → VoiceFrame, per speaker-hour and packets per second on one core.

The receive layer runs on discord.py's single socket-reader thread, so one core is
its whole budget. This feeds pre-built Discord-shaped datagrams (harness wire: Opus,
real DAVE, aead_xchacha20_poly1305_rtpsize) for N speakers into one real
``VoiceReceiver`` and measures the thread CPU time it takes, with the receiver polled
every 100 ms as the cog's tick does. Building the datagrams is not measured.

Printed, all from this one run:
* packets/s one core sustains and the speakers that is (50 packets/s each), decoding
  to mono as a mono meeting's receiver does (``--channels``), and next to it the same
  packets decoded to stereo (Discord's own count; what a stereo meeting pays);
* CPU seconds per speaker-hour (clean, and with 5 % loss + reordering + duplicates);
* where the time goes: transport decrypt, DAVE decrypt, Opus decode, and the rest
  (parsing, buffering, bookkeeping), each timed alone on the same packets, as shares;
* what the harness's sending side costs per packet, as a ratio to receiving (the
  whole-stack harness benchmark pays both on the same machine).

    python bench/receive.py [--speakers 20] [--seconds 10] [--no-dave] [--channels 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from chunkrecorder.audio.opus import OpusDecoder  # noqa: E402
from chunkrecorder.voice.rtp import parse_header, strip_plaintext  # noqa: E402
from chunkrecorder.voice.transport import TransportDecryptor  # noqa: E402
from harness.wire import WireGroup  # noqa: E402

FRAME_S = 0.02


def speech(seconds: float, seed: int) -> list[bytes]:
    """Speech-like 48 kHz stereo frames (gliding harmonics), the same on both channels."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 48_000) // 960 * 960
    f0 = np.interp(np.arange(n), np.linspace(0, n, 12), rng.uniform(110, 250, 12))
    phase = 2 * np.pi * np.cumsum(f0) / 48_000
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 6000
    st = np.repeat(x.astype(np.int16)[:, None], 2, axis=1)
    return [st[i : i + 960].tobytes() for i in range(0, n, 960)]


def build(speakers: int, seconds: float, dave: bool) -> tuple[WireGroup, list[tuple[float, bytes]], list[bytes], float]:
    """Every speaker's datagrams in send order with send times, speaker 1's Opus packets,
    and the sending side's CPU seconds per packet (after the DAVE group is set up)."""
    group = WireGroup(channel_id=1, bot_user_id=999, seed=1, dave=dave, complexity=0)
    wires = group.add_speakers(list(range(1, speakers + 1)))
    group.join_pending()
    frames = speech(seconds, seed=2)
    timeline: list[tuple[float, bytes]] = []
    first_opus: list[bytes] = []
    start = time.thread_time()
    for k, pcm in enumerate(frames):
        for w in wires:
            opus = w.encoder.encode(pcm)
            if w is wires[0]:
                first_opus.append(opus)
            timeline.append((k * FRAME_S, w.packet_from_opus(opus)))
    return group, timeline, first_opus, (time.thread_time() - start) / len(timeline)


def impair(timeline: list[tuple[float, bytes]], seed: int) -> list[tuple[float, bytes]]:
    """5 % loss, 5 % reordered by up to 60 ms, 1 % duplicated."""
    rng = random.Random(seed)
    out = []
    for t, data in timeline:
        if rng.random() < 0.05:
            continue
        at = t + (rng.uniform(0.0, 0.06) if rng.random() < 0.05 else 0.0)
        out.append((at, data))
        if rng.random() < 0.01:
            out.append((at + 0.001, data))
    out.sort(key=lambda item: item[0])
    return out


def run_receiver(group: WireGroup, timeline: list[tuple[float, bytes]], channels: int) -> tuple[float, int, int]:
    """Thread CPU seconds to receive ``timeline``; frames delivered; packets fed."""
    now = [0.0]
    delivered = [0]

    def sink(frame: object) -> None:
        delivered[0] += 1

    rx = group.make_receiver(sink=sink, clock=lambda: now[0], channels=channels)
    for w in group.speakers.values():
        rx.map_ssrc(w.ssrc, w.user_id)
    next_poll = 0.1
    start = time.thread_time()
    for t, data in timeline:
        now[0] = t
        if t >= next_poll:
            rx.poll(t)
            next_poll += 0.1
        rx.on_datagram(data)
    now[0] += 1.0
    rx.poll()
    rx.flush()
    return time.thread_time() - start, delivered[0], len(timeline)


def stage_costs(group: WireGroup, timeline: list[tuple[float, bytes]], opus: list[bytes], channels: int,
                sample: int = 3000) -> dict[str, float]:
    """Seconds per packet of each stage alone, on the run's own packets."""
    packets = [d for _, d in timeline[:sample]]
    transport = TransportDecryptor(group.secret_key)
    t0 = time.thread_time()
    for data in packets:
        h = parse_header(data)
        strip_plaintext(h, transport.decrypt(data, h))
    t_transport = (time.thread_time() - t0) / len(packets)
    t_dave = 0.0
    if group.dave is not None:
        import davey

        # The bot session has already decrypted the run's frames (and refuses replays):
        # time it on fresh frames from the same senders, with the same Opus payloads.
        wires = list(group.speakers.values())
        fresh = [(w.user_id, w.dave.encrypt_opus(opus[i % len(opus)]))
                 for i in range(sample) for w in (wires[i % len(wires)],)]
        audio = davey.MediaType.audio
        t0 = time.thread_time()
        for uid, frame in fresh:
            group.dave.bot.decrypt(uid, audio, frame)
        t_dave = (time.thread_time() - t0) / len(fresh)
    decoder = OpusDecoder(channels)
    t0 = time.thread_time()
    for packet in opus:
        decoder.decode(packet)
    t_opus = (time.thread_time() - t0) / len(opus)
    return {"transport": t_transport, "dave": t_dave, "opus": t_opus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-dave", action="store_true")
    parser.add_argument("--channels", type=int, choices=(1, 2), default=1,
                        help="what the receiver decodes to: the meeting's channels (default 1, mono)")
    args = parser.parse_args()
    dave = not args.no_dave
    other = 3 - args.channels

    t_build = time.perf_counter()
    group, timeline, opus, send_cost = build(args.speakers, args.seconds, dave)
    lossy_group, lossy_timeline, _, _ = build(args.speakers, args.seconds, dave)  # DAVE refuses replays
    other_group, other_timeline, _, _ = build(args.speakers, args.seconds, dave)
    lossy = impair(lossy_timeline, seed=3)
    print(f"built {len(timeline)} datagrams ({args.speakers} speakers x {args.seconds:g} s, "
          f"DAVE {'on' if dave else 'off'}) in {time.perf_counter() - t_build:.1f} s (not part of the figures)")

    cpu, delivered, fed = run_receiver(group, timeline, args.channels)
    cpu_lossy, delivered_lossy, fed_lossy = run_receiver(lossy_group, lossy, args.channels)
    cpu_other, _, _ = run_receiver(other_group, other_timeline, other)
    speaker_hours = args.speakers * args.seconds / 3600
    per_packet = cpu / fed
    pps = 1 / per_packet
    print()
    print(f"decoding to {'mono' if args.channels == 1 else 'stereo'} (the meeting's channels)")
    print(f"clean:  {fed} packets, {delivered} frames, {cpu:.3f} s CPU -> {per_packet * 1e6:.1f} us/packet")
    print(f"lossy:  {fed_lossy} packets (5% lost, 5% reordered, 1% duplicated), {delivered_lossy} frames, "
          f"{cpu_lossy:.3f} s CPU -> {cpu_lossy / fed_lossy * 1e6:.1f} us/packet")
    print()
    print(f"one core sustains {pps:,.0f} packets/s = {pps / 50:,.0f} concurrent speakers (50 packets/s each)")
    print(f"CPU per speaker-hour: {cpu / speaker_hours:.1f} s clean, {cpu_lossy / speaker_hours:.1f} s lossy "
          f"({cpu / speaker_hours / 36:.2f} % of one core per speaker)")
    print(f"100 speakers need {100 * 50 * per_packet * 100:.1f} % of one core for receiving")
    print(f"the same packets decoded to {'stereo' if other == 2 else 'mono'}: {cpu_other / fed * 1e6:.1f} us/packet, "
          f"{cpu_other / speaker_hours:.1f} s per speaker-hour ({cpu / cpu_other:.2f}x of it for "
          f"{'mono' if args.channels == 1 else 'stereo'})")
    print(f"the harness's sending side (Opus encode at complexity 0 + DAVE + seal) costs "
          f"{send_cost * 1e6:.1f} us/packet = {send_cost / per_packet:.2f}x the receive path")

    costs = stage_costs(group, timeline, opus, args.channels)
    known = costs["transport"] + costs["dave"] + costs["opus"]
    rest = max(0.0, per_packet - known)
    print()
    print("per packet, each stage timed alone:")
    for name, value in (("transport decrypt", costs["transport"]), ("DAVE decrypt", costs["dave"]),
                        ("Opus decode", costs["opus"]), ("parse/buffer/rest", rest)):
        print(f"  {name:18s} {value * 1e6:6.1f} us  {value / per_packet:5.1%}")


if __name__ == "__main__":
    main()
