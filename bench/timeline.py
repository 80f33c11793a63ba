"""SpeakerClock's cost per frame over a long meeting, whatever a sender's timestamps do (issue 8).

Issue 8 measured 2 µs per frame at the start and 1,216 µs after 20 minutes for a sender
whose RTP timestamp advanced by 1 per frame: the duplicate filter rebuilt a set of
every timestamp seen once it passed 4,096 entries. Here three senders are placed for 30
minutes of 20 ms frames each (90,000 frames): a normal one (+960), one advancing by 1,
and one whose timestamp never moves. Printed: µs per frame over the first and the last
minute, their ratio (flat is the point), and what the filter holds at the end; then, for
contrast in the same run, the filter as it was (a set rebuilt past 4,096 entries) for
the sender advancing by 1, over 5 minutes (30 would take hours).

    python bench/timeline.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chunkrecorder.pipeline.timeline import SpeakerClock  # noqa: E402

FRAMES = 30 * 60 * 50  # 30 minutes of 20 ms frames
MINUTE = 60 * 50


def run(step: int) -> tuple[float, float, int]:
    clock = SpeakerClock()
    first = last = 0.0
    for i in range(FRAMES):
        t = time.perf_counter()
        clock.place((123_456 + i * step) & 0xFFFFFFFF, 5_000 + i * 960, sequence=i & 0xFFFF, samples=960)
        dt = time.perf_counter() - t
        if i < MINUTE:
            first += dt
        elif i >= FRAMES - MINUTE:
            last += dt
    return first / MINUTE * 1e6, last / MINUTE * 1e6, len(clock._seen)


def old_filter(minutes: int) -> tuple[float, float]:
    """The duplicate filter before issue 8, alone: a set of every timestamp, rebuilt past 4,096."""
    frames = minutes * MINUTE
    seen: set[int] = set()
    top = 0
    first = last = 0.0
    for i in range(frames):
        t = time.perf_counter()
        ext = i  # advancing by 1
        if ext not in seen:
            seen.add(ext)
            top = max(top, ext)
            if len(seen) > 4096:
                horizon = top - 60 * 48_000
                seen = {e for e in seen if e > horizon}
        dt = time.perf_counter() - t
        if i < MINUTE:
            first += dt
        elif i >= frames - MINUTE:
            last += dt
    return first / MINUTE * 1e6, last / MINUTE * 1e6


def main() -> None:
    print(f"SpeakerClock.place, {FRAMES:,} frames (30 minutes) per sender:")
    for name, step in (("normal (+960)", 960), ("advancing by 1", 1), ("never moving", 0)):
        first, last, held = run(step)
        print(f"  {name:>15}: {first:.2f} µs/frame in the first minute, {last:.2f} in the last "
              f"({last / first:.2f}x); {held:,} frames remembered")
    first, last = old_filter(5)
    print(f"  before issue 8, advancing by 1, the filter alone: {first:.2f} µs/frame in the first minute, "
          f"{last:.2f} in the fifth ({last / first:.0f}x, and growing)")


if __name__ == "__main__":
    main()
