"""Live audio in memory at the flush cap, with and without the bot-wide budget (issue 8).

Every speaker of a live meeting holds about three windows of audio in memory
(``pipeline/budget.py``), so at the 60 s cap a mono speaker costs ~17 MB and one guild
could once make the bot hold ~111 MB per speaker (at 300 s). This runs one meeting of
``--speakers`` mono speakers talking all the time, 60 s chunks, ``--seconds`` long, on
a simulated clock (the encoders get the time a real meeting would give them), through
the real ``Recorder`` (store, sessions, LAME in its encoder processes, assembly,
promotion), twice, each in a fresh child process so that its peak is its own:

* with a budget of ``--budget-mib``: speakers past it are refused (counted), and
* with no practical budget (64 GiB): every speaker is held.

Printed, for each: the recording process's peak RSS (``ru_maxrss``) and its baseline
before the meeting (the code, the store, the encoders' pipes), the peak less the
baseline, what the budget admitted (reserved) and what the buffers really held at
their most (``held``), the speakers recorded and refused. The point: with the budget,
the peak above the baseline stays near the budget whatever the speakers and the
flush; without it, it grows with every speaker.

    python bench/memory.py                        # 40 speakers, 150 s, a 256 MiB budget (about 2 min)
    python bench/memory.py --speakers 20 --seconds 130 --budget-mib 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from chunkrecorder.objects import MeetingSettings, VoiceFrame  # noqa: E402
from chunkrecorder.pipeline import Recorder  # noqa: E402
from chunkrecorder.pipeline.budget import speaker_cost  # noqa: E402
from chunkrecorder.store import SqlRecordingService  # noqa: E402

FRAME = 960
FLUSH_S = 60.0


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


async def _meeting(speakers: int, seconds: float, budget_bytes: int, folder: Path) -> dict[str, float]:
    rng = np.random.default_rng(1)
    # a few distinct 20 ms frames per speaker, reused: the bench's own audio stays tiny
    voices = [[(rng.standard_normal((FRAME, 2)) * 3000).astype("<i2").tobytes() for _ in range(8)]
              for _ in range(8)]
    async with SqlRecordingService(folder / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=folder, audio_budget_bytes=budget_bytes)
        await rec.start()
        baseline = _rss_mib()
        t = [1000.0]
        session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3, clock=lambda: t[0],
                                          settings=MeetingSettings(flush_interval_s=FLUSH_S, channels=1))
        held = 0
        frames = int(seconds * 50)
        for i in range(frames):
            arrival = 1000.0 + (i + 1) * 0.02
            for s in range(speakers):
                session.feed(VoiceFrame(user_id=100 + s, ssrc=5000 + s, sequence=i & 0xFFFF,
                                        timestamp=(i * FRAME) & 0xFFFFFFFF, arrival=arrival,
                                        pcm=voices[s % 8][i % 8]))
            if i % 10 == 9:  # a tick every 0.2 s of meeting
                t[0] = arrival
                await rec.tick()
                held = max(held, rec.budget.held)
            if i % 3000 == 2999:  # let the encoders keep the pace a real minute would give them
                await rec.wait_idle(600)
        snap = session.snapshot()
        reserved = rec.budget.reserved
        t[0] = 1000.0 + seconds
        await rec.stop_meeting(session.meeting.id, timeout_s=600)
        peak = _rss_mib()
        await rec.close()
    return {"baseline_mib": baseline, "peak_mib": peak, "reserved_mib": reserved / 2**20,
            "held_mib": held / 2**20, "recorded": len(snap.speakers), "refused": len(snap.speakers_over_budget)}


def _child(argv: list[str]) -> None:
    speakers, seconds, budget = int(argv[0]), float(argv[1]), int(argv[2])
    with tempfile.TemporaryDirectory(prefix="chunkrecorder-bench-memory-") as folder:
        print(json.dumps(asyncio.run(_meeting(speakers, seconds, budget, Path(folder)))))


def _run(speakers: int, seconds: float, budget: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", str(speakers), str(seconds), str(budget)],
                         capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--budget-mib", type=int, default=256)
    args = parser.parse_args()
    cost = speaker_cost(FLUSH_S, 1)
    print(f"{args.speakers} mono speakers, {args.seconds:g} s, {FLUSH_S:g} s chunks (the cap): "
          f"{cost / 2**20:.1f} MiB reserved per speaker")
    rows = []
    for label, budget in ((f"budget {args.budget_mib} MiB", args.budget_mib << 20), ("no budget", 64 << 30)):
        t0 = time.monotonic()
        r = _run(args.speakers, args.seconds, budget)
        rows.append((label, r))
        print(f"  {label:>16}: peak RSS {r['peak_mib']:.0f} MiB = baseline {r['baseline_mib']:.0f} + "
              f"{r['peak_mib'] - r['baseline_mib']:.0f} MiB; admitted {r['reserved_mib']:.0f} MiB, buffers held at "
              f"most {r['held_mib']:.0f} MiB; {r['recorded']:.0f} speakers recorded, {r['refused']:.0f} refused "
              f"({time.monotonic() - t0:.0f} s)")
    (_, with_b), (_, without) = rows
    grown = without["peak_mib"] - without["baseline_mib"]
    bounded = with_b["peak_mib"] - with_b["baseline_mib"]
    print(f"  above the baseline: {bounded:.0f} MiB with the budget, {grown:.0f} MiB without "
          f"({grown / max(bounded, 1):.2f}x); per recorded speaker without it: "
          f"{grown / max(without['recorded'], 1):.1f} MiB")


if __name__ == "__main__":
    main()
