"""``simulate``'s delivery flags: the Opus copy lines up with what was said, parts join back,
and ``--web`` prints working links (flushed) while the real process still serves them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import av
import numpy as np

from chunkrecorder.audio import mp3
from harness import sources
from harness.delivery import DeliveryOptions
from harness.scenario import SpeakerPlan
from harness.simulate import SimulateOptions, simulate
from harness.sources import Activity

from tests.support.lifecycle import TOLERANCE, Track, reference, track
from tests.support.signals import RATE

ROOT = Path(__file__).resolve().parents[2]


def _decode_ogg(path: str) -> np.ndarray:
    """A player's decode (FFmpeg: pre-skip dropped, the end trimmed to the last granule)."""
    with av.open(path) as f:
        frames = [fr.to_ndarray() for fr in f.decode(audio=0)]
    out = np.concatenate(frames, axis=1).astype(np.float64).mean(axis=0)
    return out * 32768.0 if np.abs(out).max() <= 1.0 else out


async def test_the_opus_copy_passes_the_mp3s_alignment_check(tmp_path: Path) -> None:
    seconds = 45.0
    plans = []
    for i in range(2):
        source = sources.synthetic_speaker(i, seconds, seed=4, talk_spurts=False)
        # Talking at t=0 and at the very end, where misalignment would show first.
        source.activity = Activity.from_seconds([(0.0, 6.0 + i), (seconds - 6.0, seconds)])
        plans.append(SpeakerPlan(user_id=1001 + i, source=source, name=f"speaker{i + 1}"))
    result = await simulate(SimulateOptions(seconds=seconds, flush_interval=10.0, plans=plans, seed=4,
                                            data_dir=tmp_path, delivery=DeliveryOptions(opus=True)))
    for plan in plans:
        info = result.recording_for(plan.user_id)
        assert info.opus_path == str(Path(info.path).with_suffix(".opus"))
        as_mp3 = track(result, plan.user_id)
        opus = _decode_ogg(info.opus_path)
        # The same length as the MP3, to the sample (so to one frame of the meeting).
        assert len(opus) == len(as_mp3.recording)
        ref, mask = reference(result, plan.user_id, len(opus))
        as_opus = Track(plan.user_id, opus, ref, mask)
        for at in (0, len(opus) - 4 * RATE):  # t=0 and the end
            lag_mp3, lag_opus = as_mp3.lag_at(at), as_opus.lag_at(at)
            assert lag_mp3 is not None and lag_opus is not None
            assert abs(lag_opus) <= TOLERANCE and abs(lag_opus - lag_mp3) <= TOLERANCE, (at, lag_opus, lag_mp3)
        # Compact: well under half the MP3.
        assert Path(info.opus_path).stat().st_size < 0.6 * info.size_bytes


async def test_split_limit_writes_parts_that_join_back(tmp_path: Path) -> None:
    result = await simulate(SimulateOptions(speakers=1, seconds=12.0, flush_interval=5.0, seed=2, data_dir=tmp_path,
                                            delivery=DeliveryOptions(split_limit=64_000)))
    for info in result.recordings:
        assert info.parts is not None and len(info.parts) == -(-info.size_bytes // (64_000 - 64_000 % 192))
        data = [Path(p).read_bytes() for p in info.parts]
        assert all(len(d) <= 64_000 for d in data)
        assert hashlib.sha256(b"".join(data)).hexdigest() == info.sha256
        assert all(mp3.decoded_samples(d) == mp3.count_frames(d) * mp3.FRAME for d in data)
        assert info.as_json()["parts"] == info.parts


async def test_web_prints_the_links_at_once_and_serves_them_until_it_exits(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness", "simulate", "--speakers", "2", "--seconds", "6", "--flush-interval", "2",
        "--seed", "1", "--data-dir", str(tmp_path), "--json", "--web", "127.0.0.1:0", "--serve-seconds", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 90)  # the report, before the 60 s are over
        report = json.loads(line)
        links = report["links"]
        assert set(links) == {"meeting"} | {r["id"] for r in report["recordings"]}
        async with aiohttp.ClientSession() as http:
            for rec in report["recordings"]:
                async with http.get(links[rec["id"]]) as r:
                    assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == rec["sha256"]
            async with http.get(links["meeting"]) as r:
                assert r.status == 200 and "speaker1" in await r.text()
        assert proc.returncode is None  # still serving
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "harness", "simulate", "--speakers", "1", "--seconds", "2",
                              "--data-dir", str(tmp_path), "--json", "--web", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip().splitlines()[-1] == (f"error: Port {port} on 127.0.0.1 is already in use: pick another "
                                                   "port, or stop what uses it.")
