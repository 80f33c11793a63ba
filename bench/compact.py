"""The compact format: Ogg Opus size and conversion CPU per hour, next to the MP3 it is made from.

A speech-like track (gliding pitch with harmonics, syllable envelope; talking the
whole time, the largest a speaker's file gets) is encoded as the pipeline stores it
(gapless MP3, 64 kb/s mono, LAME -q7), then converted as ``Recorder.compact`` does
(``audio.ogg_opus``: MP3 decode, libopus, our Ogg pages) at each complexity, and the
copy is checked: its length is the MP3's to the sample.

    python bench/compact.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from chunkrecorder.audio import mp3  # noqa: E402
from chunkrecorder.audio.ogg_opus import COMPLEXITY, mp3_to_ogg_opus  # noqa: E402
from tests.support.signals import speech_like  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="chunkrecorder-compact-") as tmp:
        folder = Path(tmp)
        x = speech_like(seconds, seed=5)
        body = len(x) // mp3.FRAME * mp3.FRAME
        pcm = np.zeros((mp3.PRIME_SAMPLES + body + mp3.TAIL_SAMPLES, 1), np.int16)
        pcm[mp3.PRIME_SAMPLES : mp3.PRIME_SAMPLES + body, 0] = x[:body]
        (folder / "t.pcm").write_bytes(pcm.tobytes())
        made = mp3.encode_chunk_file(folder / "t.pcm", folder / "t.mp3", prime=mp3.PRIME_SAMPLES, body=body)
        per_hour = 3600 / seconds
        print(f"{args.minutes:g} minutes of speech, mono; per hour of audio:")
        print(f"  MP3 64 kb/s (stored)         {made.size_bytes * per_hour / 2**20:6.1f} MiB")
        for complexity in sorted({0, 3, COMPLEXITY, 10}):
            t0 = time.process_time()
            copy = mp3_to_ogg_opus(folder / "t.mp3", folder / "t.opus", complexity=complexity)
            cpu = time.process_time() - t0
            assert copy.samples == made.samples, (copy.samples, made.samples)
            mark = " (used)" if complexity == COMPLEXITY else ""
            print(f"  Opus 32 kb/s, complexity {complexity:>2} {copy.size_bytes * per_hour / 2**20:6.1f} MiB "
                  f"({copy.size_bytes / made.size_bytes:.2f} of the MP3), {cpu * per_hour:5.1f} CPU-s to make"
                  f"{mark}")


if __name__ == "__main__":
    main()
