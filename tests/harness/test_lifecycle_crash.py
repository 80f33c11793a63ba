"""kill -9 mid-meeting, then recover: every chunk flushed before the kill is in the recordings.

``python -m harness simulate --realtime`` runs in its own process (and process group,
so its transcode workers die with it) and is SIGKILLed once a few windows are on
disk. What the database and the chunk folder held at that moment is the promise:
``python -m harness recover`` (run in-process here) must promote a recording per
speaker that contains all of it, in place, matching what the speaker said.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from chunkrecorder.objects import MIX_USER_ID
from chunkrecorder.pipeline.timeline import Grid
from harness import cli
from harness.simulate import FIRST_USER_ID, SimulateOptions, build_plans

from tests.support.lifecycle import TOLERANCE, Track, best_corr, source_reference
from tests.support.signals import decode_file

ROOT = Path(__file__).resolve().parents[2]
FLUSH = 1.0
SPEAKERS = 2
SEED = 5
#: Lags searched in real time: well over any start-up delay, under the chirps' 0.2 s period.
WIDE = int(0.09 * 48_000)


def _rows(db: Path) -> list[tuple[str, int, int, int, int, str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(
            "SELECT meeting_id, user_id, seq, start_sample, sample_count, pcm_path FROM temp_recordings"
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


def _meeting(db: Path) -> tuple[str, str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT id, status, flushed_windows FROM meetings").fetchone()
    finally:
        con.close()


async def test_sigkill_mid_meeting_then_recover_keeps_every_flushed_chunk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = data / "chunkrecorder.sqlite3"
    argv = [sys.executable, "-m", "harness", "simulate", "--realtime", "--seconds", "60",
            "--flush-interval", str(FLUSH), "--speakers", str(SPEAKERS), "--seed", str(SEED),
            "--no-talk-spurts", "--data-dir", str(data), "--json"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            rows = _rows(db) if db.exists() else []
            if len({r[2] for r in rows}) >= 4:  # four windows on disk
                break
            assert time.monotonic() < deadline, "the simulation never flushed four windows"
            time.sleep(0.1)
        time.sleep(0.4)  # mid-window, mid-encode
        before = _rows(db)
        meeting_id, status, flushed = _meeting(db)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    assert status == "ACTIVE"
    flushed_seqs = {(uid, seq) for _, uid, seq, *_ in before}
    assert max(seq for _, seq in flushed_seqs) >= 3

    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(cli.parse_args(["recover", "--db", str(db), "--data-dir", str(data), "--json"]),
                         stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    report = json.loads(out.getvalue())
    (m,) = report["meetings"]
    assert m["meeting_id"] == meeting_id and m["status"] == "PROMOTED"
    assert m["chunks"]["FAILED"] == 0
    recs = {r["user_id"]: r for r in m["recordings"]}
    users = [FIRST_USER_ID + i for i in range(SPEAKERS)]
    assert set(recs) == {*users, None}
    assert {recs[u]["speaker"] for u in users} == {"speaker1", "speaker2"}

    # What the speakers said: the CLI's deterministic default speakers for this seed.
    plans, _ = build_plans(SimulateOptions(speakers=SPEAKERS, seconds=60, seed=SEED, talk_spurts=False))
    grid = Grid.for_interval(FLUSH)
    for plan in plans:
        uid = plan.user_id
        seqs = sorted(seq for u, seq in flushed_seqs if u == uid)
        assert seqs == list(range(len(seqs)))  # no window of theirs was skipped
        must_cover = grid.start(seqs[-1]) + grid.chunk_samples
        rec = decode_file(recs[uid]["path"])
        assert len(rec) >= must_cover, (uid, len(rec), must_cover)
        ref = source_reference(plan.source, len(rec))
        t = Track(uid, rec, ref, np.ones(len(rec), dtype=bool))
        # In place: every chunk boundary sits where t=0 puts it (no gap, no overlap, no
        # drift between chunks). Where t=0 itself lands is the receive side's anchoring
        # of a real-time stream (its first packet's delay, here on a loaded CI machine),
        # checked to 5 ms by the simulated-clock lifecycle tests, not here.
        lag0 = t.lag_at(0, search=WIDE)
        assert lag0 is not None and abs(lag0) < WIDE, (uid, lag0)
        for k in range(1, seqs[-1] + 1):
            lag = t.lag_at(grid.start(k), search=WIDE)
            assert lag is not None and abs(lag - lag0) <= TOLERANCE, (uid, k, lag, lag0)
        # And the flushed part is what they said, all of it.
        shifted = np.zeros(must_cover)
        if lag0 >= 0:
            shifted[lag0:] = ref[: must_cover - lag0]
        else:
            n = min(must_cover, len(ref) + lag0)
            shifted[:n] = ref[-lag0 : -lag0 + n]
        flushed_part = Track(uid, rec[:must_cover], shifted, np.ones(must_cover, dtype=bool))
        assert best_corr(flushed_part) > 0.9, (uid, lag0)
    # The mix covers everything flushed as well.
    assert MIX_USER_ID in {u for u, _ in flushed_seqs}
    assert len(decode_file(recs[None]["path"])) >= grid.start(max(s for _, s in flushed_seqs) + 1)
