"""Chunk lifecycles per second through the store, on a real database file.

One lifecycle is what every flushed chunk costs the store: insert (QUEUED), started,
completed, cleaned. 200 speakers at the default 10 s flush make 20 lifecycles/s; the
goal is 1,000/s. Prints both the sequential rate (one coroutine) and the concurrent
rate (200 speakers at once), measured in one run, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chunkrecorder.store import SqlRecordingService  # noqa: E402


async def _lifecycle(store: SqlRecordingService, meeting_id: str, user: int, seq: int) -> None:
    chunk = await store.insert_temp_recording(
        meeting_id=meeting_id,
        user_id=user,
        guild_id=1,
        pcm_path=f"/chunks/{user}_{seq}.pcm",
        seq=seq,
        start_sample=seq * 480_384,
        sample_count=480_384,
    )
    await store.update_temp_recording_transcode_started(chunk.id)
    await store.update_temp_recording_transcode_completed(
        chunk.id, mp3_path=f"/chunks/{user}_{seq}.mp3", sha256="0" * 64, duration_ms=10_008
    )
    await store.mark_temp_recording_cleaned(chunk.id)


def _cpu_s() -> float:
    """CPU seconds of this process, aiosqlite's thread included: steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(n: int, speakers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with SqlRecordingService(Path(tmp) / "bench.sqlite3") as store:
            meeting = await store.create_meeting(guild_id=1, channel_id=2, started_by=3)
            t0, c0 = time.perf_counter(), _cpu_s()
            for seq in range(n):
                await _lifecycle(store, meeting.id, 1, seq)
            sequential = n / (time.perf_counter() - t0)
            sequential_cpu = (_cpu_s() - c0) / n

            per_speaker = max(1, n // speakers)
            t0, c0 = time.perf_counter(), _cpu_s()

            async def speaker(user: int) -> None:
                for seq in range(per_speaker):
                    await _lifecycle(store, meeting.id, user, seq)

            await asyncio.gather(*(speaker(u) for u in range(2, speakers + 2)))
            concurrent = per_speaker * speakers / (time.perf_counter() - t0)
            concurrent_cpu = (_cpu_s() - c0) / (per_speaker * speakers)
    return {
        "sequential": sequential,
        "concurrent": concurrent,
        "sequential_cpu": sequential_cpu,
        "concurrent_cpu": concurrent_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--speakers", type=int, default=200)
    args = parser.parse_args()
    rates = asyncio.run(run(args.chunks, args.speakers))
    goal = 1000.0
    print(f"store: chunk lifecycles/s (insert→started→completed→cleaned, WAL file db, {args.chunks} chunks)")
    print(
        f"  sequential            {rates['sequential']:8.0f}/s   ({rates['sequential'] / goal:.1f}× the 1,000/s goal)"
        f"   {rates['sequential_cpu'] * 1e6:5.0f} µs CPU per lifecycle"
    )
    print(
        f"  {args.speakers} speakers at once  {rates['concurrent']:8.0f}/s   ({rates['concurrent'] / goal:.1f}× the goal)"
        f"        {rates['concurrent_cpu'] * 1e6:5.0f} µs CPU per lifecycle"
    )
    print(f"  headroom over {args.speakers} speakers at 10 s flush (20/s): {rates['concurrent'] / (args.speakers / 10):.0f}×")


if __name__ == "__main__":
    main()
