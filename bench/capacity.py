"""How many people talking at once the whole stack records in real time, sustained.

Each trial runs one meeting of N speakers, all talking the whole time (the worst case
for a meeting: a hundred open microphones), at wall-clock pace through everything a
bot runs: datagrams into the real ``VoiceReceiver`` on a reader thread (transport
decrypt, real DAVE, Opus decode), the session's placing and flushing on the event
loop, the transcoder's encoder processes, the store, then stop and promotion. A
trial is a sustained window (default 10 minutes) and passes if:

* no frame was dropped: every datagram sent became a frame on the timeline (receiver
  ``delivered`` = sent, no ``late``/``lost``/``unknown_ssrc``; the session saw no late
  or invalid frame);
* the transcode backlog stayed within two windows at every moment (sampled each
  second: chunks waiting <= 2 x (N + 1), the N speakers' chunks and the mix's);
* stop took at most 2 s (``stop_meeting``: the last window flushed, encoded,
  assembled, the files renamed and the rows written);
* the reader thread kept up (no datagram handed over later than the session's 0.5 s
  jitter margin; in the window's last second the median within 100 ms), and the event
  loop stayed responsive (99th percentile of a 50 ms sleep's overshoot < 100 ms).

All CPU is counted, the encoder processes' too, from the window's start until stop has
drained the queue and promoted the meeting: CPU per speaker-hour is that total over
N x the window. The fake clients' work is done before the window: each of 16 distinct
signals (shared round-robin by the speakers) is Opus-encoded once (``harness.network.OpusCache``) and every datagram
(DAVE-encrypted, sealed) is pre-rendered (``FakeVoiceNetwork.prerender``), then
replayed at wall-clock pace from a reader thread into the real receiver (on Discord
that work happens on the users' computers).

Printed: each trial as it ends, then the curve (speakers against the largest backlog,
stop time, CPU per speaker-hour, cores busy) and where it breaks, with the machine's
load average (other work on a shared machine moves every figure).

    python bench/capacity.py [--seconds 600] [--speakers 100,150,200,250] [--all]
                             [--flush-interval 5] [--no-dave] [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chunkrecorder.objects import MeetingSettings, Strategy  # noqa: E402
from chunkrecorder.pipeline.recorder import Recorder  # noqa: E402
from chunkrecorder.store import SqlRecordingService  # noqa: E402
from harness.clock import WallClock  # noqa: E402
from harness.network import FakeVoiceNetwork, OpusCache  # noqa: E402
from harness.scenario import SpeakerPlan  # noqa: E402
from harness.simulate import _CpuMeter  # noqa: E402
from harness.sources import synthetic_speaker  # noqa: E402

GOAL = 200
#: Stop, from stop_meeting to the recordings' rows, at most this.
MAX_STOP_S = 2.0
#: The reader keeps up: over the window's last second, the median datagram is handed to
#: the receiver within this of its arrival instant (a reader falling behind grows without bound)...
MAX_END_LAG_S = 0.1
#: ...and none waited longer than the session's jitter margin (it could miss its window).
MAX_SENDER_LAG_S = 0.5
MAX_LOOP_LAG_S = 0.1
#: Distinct test voices, shared by the speakers (see ``trial``).
SIGNALS = 16


@dataclass
class Trial:
    speakers: int
    seconds: float
    passed: bool
    reasons: list[str]
    cpu_s: float  # whole process tree during the streaming window
    drained_cpu_s: float  # whole process tree from the window's start until stop drained the queue
    harness_cpu_s: float  # the fake clients (DAVE encrypt + seal), not the bot's
    stack_cpu_s: float
    cpu_per_speaker_hour_s: float  # CPU-seconds per speaker-hour, everything until the queue drained
    cores_used: float
    sent: int
    delivered: int
    dropped: int
    sender_lag_p99_ms: float
    sender_end_lag_ms: float
    sender_max_lag_ms: float
    receive_cpu_s: float  # the reader thread inside VoiceReceiver.on_datagram
    loop_cpu_s: float  # the event loop's thread (session placing, flush scheduling, store calls)
    other_threads_cpu_s: float  # flush writers (to_thread), aiosqlite, ... in the bot's process
    workers_cpu_s: float  # transcode worker processes
    loop_lag_p99_ms: float
    backlog_max: int
    backlog_end: int
    backlog_limit: int
    stop_s: float
    setup_s: float
    load_avg_1m: float  # the machine's load when the window ended (other work skews the figures)


def _renice_workers(niceness: int) -> None:
    """Experiment: transcode workers below the receive path's priority (see --nice-encoders)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if child.nice() < niceness:
                child.nice(niceness)
        except psutil.Error:
            pass


async def _sample_backlog(store: SqlRecordingService, meeting_id: str, out: list[int],
                          stop: asyncio.Event, nice: Optional[int] = None) -> None:
    while not stop.is_set():
        if nice:
            _renice_workers(nice)
        out.append((await store.chunk_counts(meeting_id)).pending)  # a count, not the rows
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def _sample_loop_lag(out: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        out.append(time.perf_counter() - t - 0.05)


async def trial(n: int, *, seconds: float, flush_interval: float, dave: bool, workers: Optional[int],
                cache: OpusCache, seed: int = 0, nice: Optional[int] = None,
                live_clients: bool = False) -> Trial:
    setup0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chunkrecorder-capacity-") as tmp:
        data = Path(tmp)
        store = SqlRecordingService(data / "chunkrecorder.sqlite3")
        await store.open()
        recorder = Recorder(store=store, data_dir=data, workers=workers)
        await recorder.start()
        try:
            clock = WallClock()
            net = FakeVoiceNetwork(clock=clock, seed=seed, dave=dave, opus_cache=cache)
            # SIGNALS distinct voices, shared round-robin: Opus-encoding one per speaker took
            # longer than the window itself (150 x 10 minutes at ~170 us a frame); the
            # receiver decodes every speaker's packets all the same (its own SSRC, decoder
            # and DAVE key).
            voices = [synthetic_speaker(i, seconds, talk_spurts=False) for i in range(min(n, SIGNALS))]
            plans = [SpeakerPlan(10_000 + i, voices[i % len(voices)]) for i in range(n)]
            for plan in plans:  # encode every distinct signal before the clock starts
                cache.prepare(plan.source, round(seconds / 0.02) + 50)
            net.add_many(plans)
            link = await net.connector(net.channel)
            schedule = None if live_clients else net.prerender(seconds)
            settings = MeetingSettings(strategy=Strategy.HYBRID, flush_interval_s=flush_interval)
            session = await recorder.start_meeting(guild_id=1, channel_id=net.channel.id, started_by=10_000,
                                                   settings=settings, clock=clock)
            setup_s = time.perf_counter() - setup0
            if schedule is None:
                net.rebase()  # (a replay starts its own clock)
            link.receiver.set_sink(session.feed)
            backlog: list[int] = []
            loop_lag: list[float] = []
            stop = asyncio.Event()
            samplers = [asyncio.create_task(_sample_backlog(store, session.meeting.id, backlog, stop, nice)),
                        asyncio.create_task(_sample_loop_lag(loop_lag, stop))]
            cpu = _CpuMeter()
            own0, loop0 = time.process_time(), time.thread_time()
            if schedule is None:
                await net.run(seconds, on_tick=recorder.tick, tick_s=0.1)
            else:
                await net.replay(schedule, on_tick=recorder.tick, tick_s=0.1)
            cpu_s = cpu.elapsed()
            own_s, loop_s = time.process_time() - own0, time.thread_time() - loop0
            stop.set()  # (the backlog sampler keeps its samples)
            load_1m = os.getloadavg()[0]
            backlog_end = (await store.chunk_counts(session.meeting.id)).pending
            await asyncio.gather(*samplers)
            await net.drain(on_tick=recorder.tick)
            await asyncio.to_thread(link.receiver.flush)
            snap = session.snapshot()
            t0 = time.perf_counter()
            await recorder.stop_meeting(session.meeting.id, timeout_s=600)
            stop_s = time.perf_counter() - t0
            drained_cpu_s = cpu.elapsed()
            await link.disconnect()
        finally:
            await recorder.close()
            await store.close()

    rs = link.receiver.stats
    ns = net.stats
    net._sync_stats()
    reasons = []
    dropped = rs.late + rs.lost + rs.unknown_ssrc + rs.dropped_corrupt + snap.frames_late + snap.frames_invalid
    if rs.delivered != ns.sent or dropped:
        reasons.append(f"frames dropped: sent {ns.sent}, delivered {rs.delivered}, dropped {dropped}")
    lag_p99 = statistics.quantiles(ns.lags, n=100)[98] if len(ns.lags) >= 2 else 0.0
    tail = ns.lags[-50 * n:] or [0.0]
    end_lag = statistics.median(tail)
    if end_lag > MAX_END_LAG_S or ns.max_lag_s > MAX_SENDER_LAG_S:
        reasons.append(f"the reader fell behind real time (last second median {end_lag * 1000:.0f} ms, "
                       f"max {ns.max_lag_s * 1000:.0f} ms)")
    windows = max(1, round(flush_interval * 48_000 / 1152)) * 1152 / 48_000
    limit = 2 * (n + 1)
    backlog_max = max([*backlog, backlog_end], default=0)
    if backlog_max > limit:
        reasons.append(f"transcode backlog reached {backlog_max} chunks > {limit} (two windows of {windows:.1f} s)")
    if stop_s > MAX_STOP_S:
        reasons.append(f"stop took {stop_s:.1f} s > {MAX_STOP_S:.0f} s")
    p99 = statistics.quantiles(loop_lag, n=100)[98] if len(loop_lag) >= 2 else 0.0
    if p99 > MAX_LOOP_LAG_S:
        reasons.append(f"event loop lag p99 {p99 * 1000:.0f} ms")
    stack = max(0.0, cpu_s - ns.send_cpu_s)
    drained = max(0.0, drained_cpu_s - ns.send_cpu_s)
    return Trial(
        speakers=n, seconds=seconds, passed=not reasons, reasons=reasons,
        cpu_s=round(cpu_s, 2), drained_cpu_s=round(drained, 2), harness_cpu_s=round(ns.send_cpu_s, 2),
        stack_cpu_s=round(stack, 2), cpu_per_speaker_hour_s=round(drained / (n * seconds) * 3600, 1),
        cores_used=round(stack / seconds, 2),
        sent=ns.sent, delivered=rs.delivered, dropped=dropped,
        sender_lag_p99_ms=round(lag_p99 * 1000, 1), sender_end_lag_ms=round(end_lag * 1000, 1),
        sender_max_lag_ms=round(ns.max_lag_s * 1000, 1),
        receive_cpu_s=round(ns.receive_cpu_s, 2), loop_cpu_s=round(loop_s, 2),
        other_threads_cpu_s=round(max(0.0, own_s - loop_s - ns.receive_cpu_s - ns.send_cpu_s), 2),
        workers_cpu_s=round(max(0.0, cpu_s - own_s), 2), loop_lag_p99_ms=round(p99 * 1000, 1),
        backlog_max=backlog_max, backlog_end=backlog_end, backlog_limit=limit,
        stop_s=round(stop_s, 2), setup_s=round(setup_s, 1), load_avg_1m=round(load_1m, 2),
    )


def _line(t: Trial) -> str:
    verdict = "pass" if t.passed else "FAIL: " + "; ".join(t.reasons)
    return (f"N={t.speakers:4d}  {t.seconds:.0f} s  window CPU {t.stack_cpu_s:6.1f} s ({t.cores_used:.2f} cores: "
            f"receive {t.receive_cpu_s:.1f} + loop {t.loop_cpu_s:.1f} + threads {t.other_threads_cpu_s:.1f} + "
            f"encoders {t.workers_cpu_s:.1f})  until drained {t.drained_cpu_s:.1f} s = "
            f"{t.cpu_per_speaker_hour_s:.1f} CPU-s/speaker-h  "
            f"lag p99/max/end {t.sender_lag_p99_ms:.0f}/{t.sender_max_lag_ms:.0f}/{t.sender_end_lag_ms:.0f} ms  "
            f"loop p99 {t.loop_lag_p99_ms:.0f} ms  backlog max {t.backlog_max}/end {t.backlog_end} "
            f"(limit {t.backlog_limit})  stop {t.stop_s:.2f} s  load {t.load_avg_1m:.1f}  {verdict}")


async def curve(args: argparse.Namespace) -> dict:
    cache = OpusCache()
    trials: list[Trial] = []
    out = sys.stderr if args.json else sys.stdout
    for n in sorted(args.speakers):
        t = await trial(n, seconds=args.seconds, flush_interval=args.flush_interval, dave=not args.no_dave,
                        workers=args.workers, cache=cache, nice=args.nice_encoders,
                        live_clients=args.live_clients)
        trials.append(t)
        print(_line(t), file=out, flush=True)
        if not t.passed and not args.all:
            break
    passed = [t for t in trials if t.passed]
    failed = [t for t in trials if not t.passed]
    best = max(passed, key=lambda t: t.speakers, default=None)
    return {
        "max_speakers": best.speakers if best else 0,
        "first_failure": min((t.speakers for t in failed), default=None),
        "goal": GOAL,
        "goal_ratio": round((best.speakers if best else 0) / GOAL, 2),
        "cpu_per_speaker_hour_s": best.cpu_per_speaker_hour_s if best else None,
        "cores_at_max": best.cores_used if best else None,
        "seconds": args.seconds,
        "flush_interval_s": args.flush_interval,
        "dave": not args.no_dave,
        "trials": [asdict(t) for t in trials],
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="sustained real-time window per trial")
    parser.add_argument("--speakers", type=lambda v: [int(x) for x in v.split(",")], default=[100, 150, 200, 250],
                        help="the curve's points, comma-separated (default 100,150,200,250)")
    parser.add_argument("--all", action="store_true", help="run every point, not only up to the first failure")
    parser.add_argument("--flush-interval", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=None, help="encoder processes (default: cores)")
    parser.add_argument("--no-dave", action="store_true", help="a call without end-to-end encryption")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for the run (default: Python's 5 ms, as a bot runs)")
    parser.add_argument("--nice-encoders", type=int, default=None, metavar="N",
                        help="experiment: renice encoder processes to N (default: as shipped, +10)")
    parser.add_argument("--live-clients", action="store_true",
                        help="the fake clients encrypt and seal live, in the bot's process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    print(f"capacity: everyone talking, {args.seconds:.0f} s sustained per point, {args.flush_interval:g} s chunks, "
          f"hybrid, DAVE {'off' if args.no_dave else 'on'}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at the start", file=sys.stderr if args.json else sys.stdout, flush=True)
    result = asyncio.run(curve(args))
    if args.json:
        print(json.dumps(result))
        return 0
    print()
    print(f"{'speakers':>8s} {'result':>6s} {'backlog max/limit':>18s} {'stop':>7s} {'CPU-s/spk-h':>12s} "
          f"{'cores':>6s} {'dropped':>8s} {'load':>5s}")
    for t in result["trials"]:
        print(f"{t['speakers']:8d} {'pass' if t['passed'] else 'FAIL':>6s} "
              f"{t['backlog_max']:>9d}/{t['backlog_limit']:<8d} {t['stop_s']:6.2f}s {t['cpu_per_speaker_hour_s']:12.1f} "
              f"{t['cores_used']:6.2f} {t['dropped']:8d} {t['load_avg_1m']:5.1f}")
    first = result["first_failure"]
    print(f"\nSustained {args.seconds:.0f} s: {result['max_speakers']} concurrent speakers"
          f" (first failure at {first if first is not None else 'none of the points run'}); goal {GOAL}: "
          f"ratio {result['goal_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
