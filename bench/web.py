"""The download server under load, while a meeting records: does voice work stay on time?

The web server runs on the bot's event loop, beside the voice receive path (a reader
thread: decrypt, DAVE, Opus decode) and the recorder's ticks. This runs the same
real-time meeting twice, without and with concurrent downloads, and compares what the
voice path sees:

* **reader lag**: how late the reader thread picks up each datagram after it is due
  (the receive path waiting for the GIL or a core);
* **in receiver**: from the datagram handed in to its frame handed to the session;
* **loop lag**: how late a 50 ms sleep on the event loop wakes (the cog's ticker, the
  session's flushes and the web server share that loop).

The downloads: ``--clients`` concurrent HTTP clients (default 20) each fetching a
``--size-mib`` MiB recording (default 30: a one-hour speaker file at 64 kb/s is 27.5),
again and again for the whole window, from a separate process at nice +10 (on a real
host the clients are other machines; here they must not take the server's GIL or its
cores). Every
download is checked (sha256). Two runs with downloads: as fast as localhost goes (a
stress test: the clients' hashing then takes a core of this machine too), and each
client paced at ``--client-rate`` MiB/s (default 1: 20 clients fill ~170 Mbit/s, more
than most bots' uplinks). The meeting: ``--speakers`` speakers (default 10) all
talking, real DAVE, pre-rendered datagrams replayed at wall-clock pace, as
``bench/capacity.py`` does.

Printed: percentiles (p50, p99, max) of each voice delay without and with downloads
and their ratio, the downloads' count, throughput and what they cost the bot's process
in CPU; last, the run without downloads repeated, to show how much the machine's other
work moves the figures on its own.

    python bench/web.py [--clients 20] [--size-mib 30] [--speakers 10] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from chunkrecorder.audio import mp3  # noqa: E402
from chunkrecorder.objects import MeetingSettings, RecordingKind, Strategy  # noqa: E402
from chunkrecorder.pipeline.recorder import Recorder  # noqa: E402
from chunkrecorder.store import NewRecording, SqlRecordingService  # noqa: E402
from chunkrecorder.web import Catalog, LinkSigner, WebServer, new_secret  # noqa: E402
from harness.clock import WallClock  # noqa: E402
from harness.delivery import HarnessNames  # noqa: E402
from harness.network import FakeVoiceNetwork, OpusCache  # noqa: E402
from harness.scenario import SpeakerPlan  # noqa: E402
from harness.sources import synthetic_speaker  # noqa: E402

#: The download clients: a separate Python process, aiohttp, N at once, until told to stop.
CLIENTS = r"""
import asyncio, hashlib, json, sys, time
import aiohttp

url, clients, expected, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
rate = float(sys.argv[5]) * 2**20  # bytes per second per client; 0: as fast as it goes

async def one(http, stats, deadline):
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        h = hashlib.sha256()
        got = 0
        async with http.get(url) as r:
            assert r.status == 200, r.status
            async for block in r.content.iter_chunked(1 << 16):
                h.update(block)
                got += len(block)
                stats["bytes"] += len(block)
                if rate:
                    ahead = got / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        assert h.hexdigest() == expected, "a download differs from the stored file"
        stats["downloads"] += 1
        stats["times"].append(time.monotonic() - t0)

async def main():
    stats = {"bytes": 0, "downloads": 0, "times": []}
    deadline = time.monotonic() + seconds
    t0 = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(one(http, stats, deadline) for _ in range(clients)))
    stats["wall_s"] = time.monotonic() - t0
    print(json.dumps(stats))

asyncio.run(main())
"""


def _mp3(size: int) -> bytes:
    """A valid MP3 of ``size`` bytes (a 20 s encode repeated: every frame stands alone)."""
    rng = np.random.default_rng(1)
    x = (np.sin(np.cumsum(rng.uniform(0.02, 0.06, 20 * 48_000))) * 8000).astype(np.int16)
    body = len(x) // mp3.FRAME * mp3.FRAME
    pcm = np.zeros((mp3.PRIME_SAMPLES + body + mp3.TAIL_SAMPLES, 1), np.int16)
    pcm[mp3.PRIME_SAMPLES : mp3.PRIME_SAMPLES + body, 0] = x[:body]
    one = b"".join(mp3.encode_frames(pcm, prime=mp3.PRIME_SAMPLES, body=body))
    return (one * (size // len(one) + 1))[: size // 192 * 192]


def _stand_aside() -> None:
    """The clients run at nice +10: on a real host they are other machines, and here their
    hashing would otherwise take the bot's cores (the server's own work, the kernel's
    copies included, stays at the bot's priority)."""
    os.nice(10)


def _pct(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    q = statistics.quantiles(values, n=100)
    return {"p50": q[49] * 1000, "p99": q[98] * 1000, "max": max(values) * 1000}


async def _loop_lag(out: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        out.append(time.perf_counter() - t - 0.05)


async def run_meeting(recorder: Recorder, *, speakers: int, seconds: float, cache: OpusCache,
                      downloads: Optional[tuple[str, int, str, float]]) -> dict[str, Any]:
    """One real-time meeting; with ``downloads`` = (url, clients, sha256, MiB/s per client or 0),
    the clients run throughout."""
    clock = WallClock()
    net = FakeVoiceNetwork(clock=clock, seed=3, dave=True, opus_cache=cache)
    voices = [synthetic_speaker(i, seconds, talk_spurts=False) for i in range(min(speakers, 8))]
    plans = [SpeakerPlan(20_000 + i, voices[i % len(voices)]) for i in range(speakers)]
    for plan in plans:
        cache.prepare(plan.source, round(seconds / 0.02) + 50)
    net.add_many(plans)
    link = await net.connector(net.channel)
    schedule = net.prerender(seconds)
    session = await recorder.start_meeting(guild_id=1, channel_id=net.channel.id, started_by=20_000,
                                           settings=MeetingSettings(strategy=Strategy.HYBRID, flush_interval_s=5.0),
                                           clock=clock)
    in_receiver: list[float] = []

    def sink(frame: Any) -> None:
        in_receiver.append(clock() - frame.arrival)
        session.feed(frame)

    link.receiver.set_sink(sink)
    loop_lag: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_loop_lag(loop_lag, stop))
    client: Optional[asyncio.subprocess.Process] = None
    if downloads is not None:
        url, clients, sha, rate = downloads
        client = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENTS, url, str(clients), sha,
                                                      str(seconds), str(rate), stdout=asyncio.subprocess.PIPE,
                                                      preexec_fn=_stand_aside)
        await asyncio.sleep(0.5)  # the clients are connected and downloading when the meeting starts
    cpu0 = time.process_time()
    await net.replay(schedule, on_tick=recorder.tick, tick_s=0.1)
    cpu_s = time.process_time() - cpu0
    stop.set()
    await sampler
    fetched: dict[str, Any] = {}
    if client is not None:
        out, _ = await client.communicate()
        if client.returncode != 0:
            raise SystemExit("the download clients failed")
        fetched = json.loads(out)
    await net.drain(on_tick=recorder.tick)
    await asyncio.to_thread(link.receiver.flush)
    await recorder.stop_meeting(session.meeting.id, timeout_s=600)
    await link.disconnect()
    stats = link.receiver.stats
    return {
        "reader_lag": _pct(net.stats.lags),
        "in_receiver": _pct(in_receiver),
        "loop_lag": _pct(loop_lag),
        "delivered": stats.delivered,
        "sent": net.stats.sent,
        "late": stats.late,
        "bot_cpu_s": cpu_s,
        "downloads": fetched,
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="chunkrecorder-web-bench-") as tmp:
        data = Path(tmp)
        store = SqlRecordingService(data / "chunkrecorder.sqlite3")
        await store.open()
        recorder = Recorder(store=store, data_dir=data)
        await recorder.start()
        server: Optional[WebServer] = None
        try:
            meeting = await store.create_meeting(guild_id=1, channel_id=2, started_by=3)
            blob = _mp3(int(args.size_mib * 2**20))
            path = data / "recordings" / f"recording_{meeting.id}_3.mp3"
            path.write_bytes(blob)
            sha = hashlib.sha256(blob).hexdigest()
            rec = await store.insert_persistent_recording(meeting.id, NewRecording(
                kind=RecordingKind.PER_USER, user_id=3, filename=path.name, path=str(path),
                duration_in_ms=len(blob) // 192 * 24, sha256=sha, size_bytes=len(blob)))
            server = WebServer(Catalog(recorder, HarnessNames({3: "speaker"}, "bench")),
                               LinkSigner(bytes.fromhex(new_secret())), host="127.0.0.1", port=0)
            await server.start()
            url = server.link("r", rec.id, ttl_s=3600)
            cache = OpusCache(complexity=0)
            print(f"{args.speakers} speakers talking, {args.seconds:g} s real time each run; "
                  f"{args.clients} clients downloading a {len(blob) / 2**20:.1f} MiB file in the second run "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
            quiet = await run_meeting(recorder, speakers=args.speakers, seconds=args.seconds, cache=cache,
                                      downloads=None)
            busy = await run_meeting(recorder, speakers=args.speakers, seconds=args.seconds, cache=cache,
                                     downloads=(url, args.clients, sha, 0.0))
            paced = await run_meeting(recorder, speakers=args.speakers, seconds=args.seconds, cache=cache,
                                      downloads=(url, args.clients, sha, args.client_rate))
            # The same quiet run again: how much the machine's other work moves the figures.
            again = await run_meeting(recorder, speakers=args.speakers, seconds=args.seconds, cache=cache,
                                      downloads=None)
        finally:
            if server is not None:
                await server.stop()
            await recorder.close()
            await store.close()
    report(quiet, busy, args, "as fast as localhost goes")
    report(quiet, paced, args, f"each client at {args.client_rate:g} MiB/s")
    print("\n== noise: the run without downloads, repeated last")
    for key, label in (("reader_lag", "reader lag"), ("in_receiver", "in receiver"), ("loop_lag", "event loop lag")):
        a, b = quiet[key], again[key]
        print(f"{label + ' p50/p99/max':<28}{a['p50']:.2f} / {a['p99']:.2f} / {a['max']:.1f}  then  "
              f"{b['p50']:.2f} / {b['p99']:.2f} / {b['max']:.1f}")


def report(quiet: dict[str, Any], busy: dict[str, Any], args: argparse.Namespace, how: str) -> None:
    print(f"\n== {args.clients} clients downloading, {how}")
    print(f"{'voice delay (ms)':<22}{'without downloads':>26}{'with downloads':>26}")
    for key, label in (("reader_lag", "reader lag"), ("in_receiver", "in receiver"), ("loop_lag", "event loop lag")):
        a, b = quiet[key], busy[key]
        cells = [f"{a['p50']:.2f} / {a['p99']:.2f} / {a['max']:.1f}", f"{b['p50']:.2f} / {b['p99']:.2f} / {b['max']:.1f}"]
        print(f"{label + ' p50/p99/max':<22}{cells[0]:>26}{cells[1]:>26}")
    for key in ("reader_lag", "loop_lag"):
        a, b = quiet[key]["p99"], busy[key]["p99"]
        print(f"{key} p99 ratio with/without: {b / a:.2f}" if a > 0 else f"{key} p99: {a:.2f} -> {b:.2f} ms")
    d = busy["downloads"]
    mib = d["bytes"] / 2**20
    times = sorted(d["times"]) or [0.0]
    print(f"downloads: {d['downloads']} complete ({mib:.0f} MiB, {mib / d['wall_s']:.0f} MiB/s, "
          f"median {statistics.median(times):.1f} s each with {args.clients} at once), all byte-identical")
    extra = busy["bot_cpu_s"] - quiet["bot_cpu_s"]
    print(f"bot process CPU: {quiet['bot_cpu_s']:.1f} s without, {busy['bot_cpu_s']:.1f} s with downloads "
          f"({extra / max(mib, 1e-9) * 1000:.1f} ms per MiB served)")
    for name, run in (("without", quiet), ("with", busy)):
        print(f"frames {name}: {run['delivered']}/{run['sent']} delivered, {run['late']} late")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size-mib", type=float, default=30.0)
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--client-rate", type=float, default=1.0,
                        help="MiB/s per client in the paced run (1: 20 clients fill ~170 Mbit/s)")
    asyncio.run(main(parser.parse_args()))
