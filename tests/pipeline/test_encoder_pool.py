"""The encoder processes: small, isolated from the bot's main script, and replaced when they die."""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import textwrap
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from chunkrecorder.audio import mp3
from chunkrecorder.pipeline.encode_worker import EncodeJob, bootstrap_source, encode
from chunkrecorder.pipeline.encoder_pool import EncoderPool
from tests.pipeline.test_mp3 import CHUNK, _chunk_pcm, _speechy

ROOT = Path(__file__).resolve().parents[2]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def pool() -> cf.Executor:
    p = EncoderPool(1, bootstrap_source())
    yield p
    p.shutdown(wait=True, cancel_futures=True)


def _job(tmp_path: Path) -> EncodeJob:
    pcm = tmp_path / "c.pcm"
    pcm.write_bytes(_chunk_pcm(_speechy(CHUNK), 0, CHUNK).tobytes())
    return EncodeJob(str(pcm), str(tmp_path / "c.mp3"), mp3.PRIME_SAMPLES, CHUNK, 1, 64_000, 7)


def test_an_encoder_process_encodes_and_stays_small(pool: EncoderPool, tmp_path: Path) -> None:
    info = pool.submit(encode, _job(tmp_path)).result(timeout=60)
    assert info.frames == 417 and mp3.count_frames((tmp_path / "c.mp3").read_bytes()) == 417
    modules = pool.submit(eval, "sorted(__import__('sys').modules)").result(timeout=60)
    assert not {"numpy", "av", "redbot", "discord"} & set(modules), "the encoder imports only what it needs"
    (pid,) = pool.pids()
    assert _rss_kib(pid) < 40 * 1024


def test_errors_come_back_as_themselves_and_prints_do_not_break_the_pipe(pool: EncoderPool) -> None:
    assert pool.submit(print, "noise on stdout").result(timeout=60) is None
    with pytest.raises(mp3.EncodeError, match="torn"):
        pool.submit(_raise_encode_error).result(timeout=60)
    assert pool.submit(eval, "6 * 7").result(timeout=60) == 42


def _raise_encode_error() -> None:
    raise mp3.EncodeError("torn")


def test_a_dead_encoder_fails_its_job_and_a_new_one_takes_the_next(pool: EncoderPool) -> None:
    (first,) = pool.pids()
    with pytest.raises(BrokenProcessPool):
        pool.submit(os._exit, 3).result(timeout=60)
    assert pool.submit(eval, "1 + 1").result(timeout=60) == 2
    (second,) = pool.pids()
    assert second != first


def test_shutdown_cancels_what_has_not_started() -> None:
    p = EncoderPool(1, bootstrap_source())
    import time

    running = p.submit(time.sleep, 0.5)
    deadline = time.monotonic() + 30
    while not running.running():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    waiting = [p.submit(eval, "1") for _ in range(5)]
    p.shutdown(wait=True, cancel_futures=True)
    assert running.result() is None
    assert all(f.cancelled() for f in waiting)
    assert p.pids() == []
    with pytest.raises(RuntimeError):
        p.submit(eval, "1")


def test_the_bots_main_script_is_not_imported_by_the_encoders(tmp_path: Path) -> None:
    """A bot's main script is Red's launcher; multiprocessing children would import it."""
    script = tmp_path / "launcher.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy  # stands in for the bot's heavy imports
        from chunkrecorder.pipeline.encode_worker import bootstrap_source
        from chunkrecorder.pipeline.encoder_pool import EncoderPool
        if __name__ == "__main__":
            pool = EncoderPool(1, bootstrap_source())
            print(pool.submit(eval, "'numpy' in __import__('sys').modules").result(timeout=60))
            pool.shutdown()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
