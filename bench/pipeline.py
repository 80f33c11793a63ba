"""Recording pipeline: CPU against the true codec floor, stop-to-ready time and footprint.

Everything printed is measured in this one run:

* CPU seconds per speaker-hour of the whole pipeline (placing frames on the timeline,
  cutting, mixing, writing chunks, the store, the encoder processes, assembling the
  tracks, promotion), all of it counted from the meeting's start until the queue is
  drained and the meeting promoted (the encoder processes' start, once per bot start,
  is not a meeting's), next to the true codec floor: the fastest shippable MP3 encoder
  (bench/codec_floor.py: lameenc, PyAV, the ffmpeg binary through a pipe) encoding the
  same tracks (every speaker's and the mix) continuously, once each, plus the fastest
  Opus decode (libopus or FFmpeg's native decoder without its s16 conversion, each to
  mono and to stereo) of one speaker's packets, both measured here in a tight loop.
  Frames are fed to the session directly, mono as the receiver decodes them for a mono
  meeting, so the pipeline's own figure has no Opus in it: the receiver's decode
  (libopus to mono) is measured alone and added to the pipeline's side, the fastest
  decode to the floor's (the strict ratio without Opus on either side is printed too).
* Stop-to-ready: from ``stop_meeting`` to the recordings' rows, for a short and a
  long meeting, and their ratio. The meetings run on a simulated clock, and the feed
  waits whenever the encoders fall behind, as real time would let them catch up: at
  stop, what is left is what a real meeting leaves (the last window or two).
* Footprint: peak RSS of the recording process plus its encoder processes together
  (sampled every simulated 10 s; and each one's own peak), counted from the meeting's
  start, less the bench's own test audio (four 30 s signals the speakers share, held
  in the recording process: not the pipeline's), its RSS every simulated minute (flat
  is the point).
* A one-speaker meeting's encoder CPU next to one track's continuous encode: its mix is
  its speaker's file, so it costs one encode, not two.
* Why processes: a receive-thread-like Python loop timed alone, next to one encoder
  process, and next to one encoder thread.

Every meeting runs in a fresh child process so that its peak memory is its own.
Speakers talk all the time (the worst case: no chunk is silent, so none is skipped).

    python bench/pipeline.py                 # 10 and 60 minute meetings (several minutes)
    python bench/pipeline.py --quick         # 1 and 6 minute meetings
    python bench/pipeline.py --speakers 32 --quick   # the footprint at 32 speakers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import codec_floor as floor  # noqa: E402

from chunkrecorder.audio import mp3  # noqa: E402
from chunkrecorder.audio.mix import mix  # noqa: E402
from chunkrecorder.objects import MeetingSettings, VoiceFrame  # noqa: E402

RATE = 48_000
FRAME = 960
BANK_S = 30.0
speech = floor.speech


#: Distinct test signals; more speakers share them at different offsets, so that the
#: bench's own test audio (held in the recording process) stays small next to the pipeline.
SIGNALS = 4


def bank(speakers: int, channels: int = 1) -> list[list[bytes]]:
    """Per signal, 30 s of 20 ms frames as the receiver hands them over (decoded to the
    meeting's channels), cycled through for longer meetings."""
    out = []
    for s in range(min(speakers, SIGNALS)):
        x = speech(BANK_S, seed=s + 1)
        st = np.repeat(x[:, None], channels, axis=1)
        out.append([st[i : i + FRAME].tobytes() for i in range(0, len(st), FRAME)])
    return out


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_peak_rss() -> None:
    """Linux: restart this process's VmHWM (peak RSS) from its current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _proc_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _proc_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------- one meeting (child)
async def meeting(minutes: float, data: Path, speakers: int) -> dict:
    from chunkrecorder.pipeline import Recorder
    from chunkrecorder.store import SqlRecordingService

    frames = bank(speakers)
    gen_cpu = 0.0
    async with SqlRecordingService(data / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=data)
        await rec.start()
        # Every encoder process busy at once: each has imported and is serving jobs.
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(rec.transcoder._pool, time.sleep, 0.3)
                               for _ in range(rec.transcoder.workers)))
        # What a meeting costs starts here: opening the store and starting the encoder
        # processes (about 0.1 CPU-s each) happen once per bot start, not per meeting.
        cpu0 = time.process_time()
        worker_cpu0 = {p: _proc_cpu(p) for p in rec.transcoder.worker_pids()}
        now = [0.0]
        session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings(),
                                          clock=lambda: now[0])
        _reset_peak_rss()  # the peak that counts is the meeting's, not building the test audio
        bank_kb = sum(len(f) for signal in frames for f in signal) // 1024  # resident all along: not the pipeline's
        tracks = speakers + 1
        steps = int(minutes * 60 * 50)
        n_bank = len(frames[0])
        waited = 0.0
        rss_trace: list[int] = []
        total_peak = 0

        def total_rss() -> int:
            own = _proc_rss_kb(os.getpid()) - bank_kb
            return own + sum(_proc_rss_kb(p) for p in rec.transcoder.worker_pids())

        async def catch_up() -> None:
            nonlocal waited
            w0 = time.perf_counter()
            await rec.wait_idle(timeout_s=3600)
            waited += time.perf_counter() - w0

        block: list[list[VoiceFrame]] = []
        for i in range(steps):
            if i % 500 == 0:  # the receiver's output for the next simulated 10 s (not the pipeline's CPU)
                g0 = time.thread_time()
                block = [[VoiceFrame(s + 1, 100 + s, j & 0xFFFF, (j * FRAME) & 0xFFFFFFFF, (j + 1) * 0.02,
                                     frames[s % SIGNALS][(j + 97 * s) % n_bank], 1) for s in range(speakers)]
                         for j in range(i, min(steps, i + 500))]
                gen_cpu += time.thread_time() - g0
            t = (i + 1) * 0.02
            for f in block[i % 500]:
                session.feed(f)
            if i % 25 == 24:  # the owner's tick every 0.5 s
                now[0] = t
                await rec.tick()
            if i % 500 == 499:  # every simulated 10 s
                total_peak = max(total_peak, total_rss())
                if (await store.chunk_counts(session.meeting.id)).pending > 2 * tracks:
                    await catch_up()  # real time would have given the encoders this long
            if i % 3000 == 2999:  # every simulated minute
                rss_trace.append(_proc_rss_kb(os.getpid()) - bank_kb)
        now[0] = steps * 0.02
        await rec.tick()
        await catch_up()
        total_peak = max(total_peak, total_rss())
        snapshot = session.snapshot()
        phases: dict[str, float] = {}
        t_stop = time.perf_counter()

        def progress(p) -> None:
            phases.setdefault(p.phase, time.perf_counter() - t_stop)

        result = await rec.stop_meeting(session.meeting.id, progress=progress)
        stop_s = time.perf_counter() - t_stop
        workers = rec.transcoder.worker_pids()
        worker_cpu = sum(_proc_cpu(p) - worker_cpu0.get(p, 0.0) for p in workers)
        worker_hwm = [_proc_hwm_kb(p) for p in workers]
        main_cpu = time.process_time() - cpu0 - gen_cpu
        cpu = main_cpu + worker_cpu
        await rec.close()
    length = int(round(minutes * 60 * RATE))
    want = mp3.frames_for(length) * mp3.FRAME
    durations = sorted({r.duration_in_ms for r in result.recordings})
    assert len(result.recordings) == tracks, result.recordings
    assert durations == [round(want * 1000 / RATE)], durations
    if speakers == 1:  # the mix is the speaker's file
        assert len({r.sha256 for r in result.recordings}) == 1
    return {
        "minutes": minutes,
        "speakers": speakers,
        "cpu_s": cpu,
        "gen_cpu_s": gen_cpu,
        "main_cpu_s": main_cpu,
        "worker_cpu_s": worker_cpu,
        "stop_s": stop_s,
        "phases": phases,
        "rss_kb": (_proc_hwm_kb(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) - bank_kb,
        "bank_kb": bank_kb,
        "worker_rss_kb": worker_hwm,
        "total_peak_kb": total_peak,
        "workers": len(workers),
        "buffered_bytes_at_stop": snapshot.buffered_bytes,
        "waited_s": waited,
        "files": len(result.recordings),
        "rss_trace_kb": rss_trace,
        "engine": mp3.engine(),
    }


def run_child(minutes: float, speakers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        out = subprocess.run([sys.executable, __file__, "--child", str(minutes), tmp, str(speakers)],
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child for {minutes} min failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- GIL (parent)
def _receive_like_work(n: int = 200_000) -> float:
    """Wall time of per-packet Python work like the voice receive thread's (alone on a core)."""
    buf = np.zeros(1920, dtype=np.int16).tobytes()
    t = time.perf_counter()
    for _ in range(n):
        np.frombuffer(buf, dtype="<i2").reshape(-1, 2).astype(np.int32).sum()
    return time.perf_counter() - t


async def starvation(executor: str | None) -> float:
    """How long the receive-like work takes while one encoder runs (thread, process, or none)."""
    import threading

    import functools

    from chunkrecorder.pipeline.transcoder import Transcoder

    with tempfile.TemporaryDirectory(prefix="bench-gil-") as tmp:
        pcm = speech(10.2, seed=3)[: 417 * 1152 + mp3.PRIME_SAMPLES + mp3.TAIL_SAMPLES]
        p = Path(tmp) / "c.pcm"
        p.write_bytes(pcm.tobytes())
        encode = functools.partial(mp3.encode_chunk_file, str(p), str(p.with_suffix(".mp3")),
                                   prime=mp3.PRIME_SAMPLES, body=417 * 1152)
        if executor is None:
            return await asyncio.to_thread(_receive_like_work)
        tc = Transcoder(store=None, workers=1, executor=executor)  # type: ignore[arg-type]
        pool = tc._make_pool()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(pool, encode)  # warm: worker up, codec loaded
        result: list[float] = []
        th = threading.Thread(target=lambda: result.append(_receive_like_work()))
        th.start()
        while th.is_alive():  # keep the encoder busy for the whole measurement
            await loop.run_in_executor(pool, encode)
        th.join()
        pool.shutdown(wait=True)
        return result[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 and 6 minute meetings")
    ap.add_argument("--speakers", type=int, default=4, help="people talking at once (default 4)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="run each meeting this many times; the best counts (other load is noise)")
    ap.add_argument("--no-gil", action="store_true", help="skip the receive-thread-like loop comparison")
    ap.add_argument("--child", nargs=3, metavar=("MINUTES", "DIR", "SPEAKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(meeting(float(args.child[0]), Path(args.child[1]), int(args.child[2])))))
        return

    n = args.speakers
    short, long = (1.0, 6.0) if args.quick else (10.0, 60.0)
    floor_s = 30.0 if args.quick else 120.0
    print(f"pipeline bench: {n} speakers talking all the time, hybrid ({n} speaker files + mix), "
          f"10 s chunks, 64 kb/s mono -q7, {os.cpu_count()} cores, best of {args.repeat} run(s) per length; "
          f"load average {os.getloadavg()[0]:.2f}")

    def best(minutes: float, speakers: int, repeat: int) -> dict:
        runs = [run_child(minutes, speakers) for _ in range(max(1, repeat))]
        pick = min(runs, key=lambda r: r["stop_s"])
        pick["stop_all"] = [r["stop_s"] for r in runs]
        pick["cpu_s"] = min(r["cpu_s"] for r in runs)
        pick["worker_cpu_s"] = min(r["worker_cpu_s"] for r in runs)
        pick["rss_kb"] = max(r["rss_kb"] for r in runs)
        pick["total_peak_kb"] = max(r["total_peak_kb"] for r in runs)
        return pick

    a = best(short, n, args.repeat)
    b = best(long, n, args.repeat)
    one = best(long, 1, 1)

    # The floor, in this run: every track (speakers and mix) encoded continuously by each
    # shippable encoder; one speaker's packets decoded by each Opus decoder.
    from chunkrecorder.audio.mix import mix

    tracks = [speech(floor_s, seed=s + 1).reshape(-1, 1) for s in range(n)]
    tracks.append(mix(tracks))
    encoders = floor.mp3_floor(tracks)
    packets = floor.opus_packets(min(floor_s, 30.0))
    decoders = floor.opus_floor(packets)
    sh = 3600.0
    enc_name, enc = floor.fastest(encoders)
    dec_name, dec = floor.fastest(decoders)
    enc_per_sh = enc * sh / floor_s / n
    dec_per_sh = dec / len(packets) * 50 * sh
    ours_name = floor.OURS[MeetingSettings().channels]
    ours_dec_per_sh = decoders[ours_name] / len(packets) * 50 * sh
    floor_per_sh = enc_per_sh + dec_per_sh

    print(f"\nCPU per speaker-hour (the encoder here: {a['engine']})")
    for name, cpu in sorted(encoders.items(), key=lambda kv: kv[1]):
        print(f"  MP3 encode, {name:12s} ({n + 1} tracks / {n} speakers, continuous)  {cpu * sh / floor_s / n:7.1f} s")
    for name, cpu in sorted(decoders.items(), key=lambda kv: kv[1]):
        print(f"  Opus decode, {name:20s} (per speaker, packet by packet) {cpu / len(packets) * 50 * sh:7.1f} s")
    print(f"  true floor: {enc_name} encode + {dec_name} decode                {floor_per_sh:7.1f} s")
    for r in (a, b):
        per_sh = r["cpu_s"] * sh / (r["minutes"] * 60) / n
        total = per_sh + ours_dec_per_sh
        enc_sh = r["worker_cpu_s"] * sh / (r["minutes"] * 60) / n
        print(f"  pipeline, {r['minutes']:4.0f} min meeting: {per_sh:6.1f} s (encoder processes {enc_sh:.1f}) "
              f"+ {ours_name} {ours_dec_per_sh:.1f} = {total:6.1f} s   ratio to the floor {total / floor_per_sh:5.2f} "
              f"(goal <= 1.3; strict, no Opus either side: {per_sh / enc_per_sh:5.2f})")
    one_enc = one["worker_cpu_s"] * sh / (one["minutes"] * 60)
    one_floor = encoders[enc_name] * sh / floor_s / (n + 1)  # one track's continuous encode
    print(f"  one speaker alone ({one['minutes']:.0f} min, speaker file + mix): encoder processes {one_enc:5.1f} s "
          f"per speaker-hour = {one_enc / one_floor:4.2f}x one track's continuous encode ({one_floor:.1f} s; two "
          f"encodes would be 2x): the mix is its speaker's file, not a second encode "
          f"(whole pipeline {one['cpu_s'] * sh / (one['minutes'] * 60):.1f} s)")
    print("\nStop-to-ready (stop_meeting until the recordings' rows exist)")
    for r in (a, b):
        ph = r["phases"]
        runs = ", ".join(f"{x:.3f}" for x in r["stop_all"])
        print(f"  {r['minutes']:4.0f} min: {r['stop_s']:6.3f} s (runs: {runs})   (flushed after {ph.get('transcoding', 0):.3f} s, "
              f"encoded after {ph.get('assembling', 0):.3f} s, files and rows after {ph.get('done', 0):.3f} s)")
    print(f"  ratio {b['minutes']:.0f}/{a['minutes']:.0f} min: {b['stop_s'] / a['stop_s']:5.2f}   (goal <= 1.2, and < 2 s)")

    print(f"\nFootprint: peak RSS of the recording process and its encoder processes together (less the "
          f"bench's own test audio, {a['bank_kb'] / 1024:.0f} MiB, held in the recording process)")
    for r in (a, b):
        workers = r["worker_rss_kb"]
        own = r["rss_kb"] + sum(workers)
        print(f"  {r['minutes']:4.0f} min: {r['total_peak_kb'] / 1024:6.1f} MiB together at the highest sample; "
              f"{own / 1024:6.1f} MiB as the sum of each one's own peak (recorder {r['rss_kb'] / 1024:.1f}, "
              f"encoders {' + '.join(f'{w / 1024:.1f}' for w in workers)}); audio buffered at stop "
              f"{r['buffered_bytes_at_stop'] / 2**20:4.1f} MiB")
    print(f"  ratio {b['minutes']:.0f}/{a['minutes']:.0f} min (recorder): {b['rss_kb'] / a['rss_kb']:5.2f}   "
          f"(goal <= 1.1; and <= 350 MiB together at 32 speakers)")
    trace = b["rss_trace_kb"]
    print(f"  {b['minutes']:.0f} min meeting, recorder RSS each simulated minute (MiB): "
          + " ".join(f"{x / 1024:.0f}" for x in trace[:: max(1, len(trace) // 12)]))

    if args.no_gil:
        return
    alone = asyncio.run(starvation(None))
    proc = asyncio.run(starvation("process"))
    thr = asyncio.run(starvation("thread"))
    print("\nA receive-thread-like Python loop (200,000 packets' worth) while one encoder runs")
    print(f"  alone {alone:6.2f} s   encoder in a process {proc:6.2f} s ({proc / alone:4.2f}x)   "
          f"encoder in a thread {thr:6.2f} s ({thr / alone:4.2f}x)")
    print("  (LAME through ctypes releases the GIL; PyAV's codec, the fallback, holds it)")


if __name__ == "__main__":
    main()
