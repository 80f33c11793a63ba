"""What tagging adds to a promotion, per hour of one track (issue 14).

Before issue 14 a speaker's ``.part`` became its recording by a rename, and only a mix
with notes was copied behind its ID3v2 tag. Now every file is tagged before its row, so
each track is copied once (``tagging.tag_and_describe``: tag + frames to a temp file,
fsync, rename, then the sha256 of the result). Measured on a one-hour track of real
silent MP3 frames from the pipeline's encoder (64 kb/s mono: 28.8 MB, the size of an hour
of speech at that rate), in the same run: the rename the speaker files had before, the tag
written onto a fresh file, and the same tag again (a promotion re-run: nothing rewritten,
only hashed). CPU is this process's (user + system), wall is noisy on a shared machine.

    python bench/tagging.py
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chunkrecorder.audio import mp3  # noqa: E402
from chunkrecorder.audio.tags import TrackTags  # noqa: E402
from chunkrecorder.pipeline import tagging  # noqa: E402
from chunkrecorder.pipeline.assembler import silent_frame  # noqa: E402

HOUR_FRAMES = 3600 * 48_000 // mp3.FRAME
TAGS = TrackTags(title="general — Ada", artist="Ada", album="Server · general · 2026-12-01",
                 date="2026-12-01T15:38:29Z", track=2, total_tracks=5, comment="Meeting 0123456789abcdef")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(label: str, fn) -> None:  # type: ignore[no-untyped-def]
    c, w = cpu(), time.perf_counter()
    fn()
    print(f"{label:<44} cpu {cpu() - c:6.3f} s   wall {time.perf_counter() - w:6.3f} s")


def main() -> None:
    frame = silent_frame(1, 64_000, 7, 48_000)
    with tempfile.TemporaryDirectory() as d:
        part = Path(d) / "recording_0123456789abcdef_7.mp3.part"
        final = Path(d) / "recording_0123456789abcdef_7.mp3"
        part.write_bytes(frame * HOUR_FRAMES)
        print(f"one hour, 64 kb/s mono: {part.stat().st_size / 1e6:.1f} MB")
        measure("rename (the speaker files before issue 14)", lambda: os.replace(part, final))
        measure("tag + fsync + rename + sha256", lambda: tagging.tag_and_describe(final, TAGS))
        measure("same tag again (a re-run: sha256 only)", lambda: tagging.tag_and_describe(final, TAGS))


if __name__ == "__main__":
    main()
