"""The FLAC archive through the whole lifecycle: clean, 3 % loss, kill -9 then recover.

The same harness runs as the MP3 lifecycle tests, with ``--archive flac``: every file
is a ``.flac``, decodes with FFmpeg's binary without an error (CRCs checked), lasts
the meeting to the sample, and its STREAMINFO holds the true total and the MD5 of
what the decoder gave; the speakers are in place and in their own files
(``check_meeting``, as for MP3).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import mutagen.flac
import numpy as np

from chunkrecorder.audio import flac
from chunkrecorder.objects import MIX_USER_ID
from chunkrecorder.pipeline.timeline import Grid
from harness import cli, sources
from harness.impairments import Impairments
from harness.scenario import SpeakerPlan
from harness.simulate import FIRST_USER_ID, SimulateOptions, SimulationResult, build_plans, simulate

from tests.support.lifecycle import Track, best_corr, check_meeting, source_reference
from tests.support.signals import decode_file, ffmpeg_decode_flac

ROOT = Path(__file__).resolve().parents[2]
FLUSH = 1.5
SECONDS = 5.0


def assert_lossless_file(path: str, length: int | None, size_bytes: int, sha256: str) -> int:
    """The file a user gets: a FLAC a strict decoder reads, whose STREAMINFO is true; returns its samples."""
    assert path.endswith(".flac")
    data = Path(path).read_bytes()
    assert len(data) == size_bytes and hashlib.sha256(data).hexdigest() == sha256
    decoded = ffmpeg_decode_flac(path)
    info = flac.read_stream_info(data)
    assert info.total_samples == len(decoded)
    assert info.md5 == hashlib.md5(decoded.astype("<i2").tobytes()).digest()
    if length is not None:
        assert len(decoded) == length  # to the sample
    return len(decoded)


def _check(result: SimulationResult) -> None:
    check_meeting(result, FLUSH)
    length = int(round(result.length_ms * 48_000 / 1000))
    for r in result.recordings:
        n = assert_lossless_file(r.path, None, r.size_bytes, r.sha256)
        assert abs(n - length) < 48  # length_ms is rounded to the millisecond


def _plans() -> list[SpeakerPlan]:
    return [SpeakerPlan(2001 + i, sources.synthetic_speaker(i, SECONDS, talk_spurts=False)) for i in range(3)]


async def test_clean_flac_meeting_via_the_cli_json_contract(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(cli.parse_args([
        "simulate", "--speakers", "3", "--seconds", "4", "--flush-interval", "1.5", "--seed", "7",
        "--archive", "flac", "--data-dir", str(tmp_path), "--json"]), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    data = json.loads(out.getvalue())
    assert data["status"] == "PROMOTED" and data["chunks"]["FAILED"] == 0
    assert len(data["recordings"]) == 4
    for r in data["recordings"]:
        assert r["path"].endswith(".flac")
        assert_lossless_file(r["path"], None, r["size_bytes"], r["sha256"])
        # tagged at promotion (issue 14's metadata), read back by two independent parsers
        meta = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", r["path"], "-f", "ffmetadata",
                               "-"], capture_output=True, timeout=50).stdout.decode()
        tags = mutagen.flac.FLAC(r["path"])
        who = r["speaker"] or "mix"
        assert who in tags["TITLE"][0] and f"TITLE={tags['TITLE'][0]}" in meta, (meta, tags.tags)
        assert tags["TRACKTOTAL"] == [str(len(data["recordings"]))] and "chunkrecorder" in tags["COMMENT"][0]
        assert tags.info.total_samples == flac.read_stream_info(Path(r["path"]).read_bytes()).total_samples
    assert not list((tmp_path / "recordings").glob("*.mp3*"))


async def test_clean_flac_meeting_lines_up_with_its_sources(tmp_path: Path) -> None:
    result = await simulate(SimulateOptions(seconds=SECONDS, flush_interval=FLUSH, plans=_plans(),
                                            data_dir=tmp_path, archive="flac"))
    _check(result)


async def test_flac_meeting_with_three_percent_loss(tmp_path: Path) -> None:
    imp = Impairments(loss=0.03, seed=21)
    result = await simulate(SimulateOptions(seconds=SECONDS, flush_interval=FLUSH, plans=_plans(),
                                            impairments=imp, seed=imp.seed, data_dir=tmp_path, archive="flac"))
    assert result.packets["lost"] > 0
    _check(result)


def _rows(db: Path) -> list[tuple[int, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT user_id, seq FROM temp_recordings").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


async def test_flac_sigkill_mid_meeting_then_recover_keeps_every_flushed_chunk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = data / "chunkrecorder.sqlite3"
    argv = [sys.executable, "-m", "harness", "simulate", "--realtime", "--seconds", "60",
            "--flush-interval", "1", "--speakers", "2", "--seed", "5", "--no-talk-spurts",
            "--archive", "flac", "--data-dir", str(data), "--json"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            rows = _rows(db) if db.exists() else []
            if len({seq for _, seq in rows}) >= 4:
                break
            assert time.monotonic() < deadline, "the simulation never flushed four windows"
            time.sleep(0.1)
        time.sleep(0.4)  # mid-window, mid-encode
        before = set(_rows(db))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    # a chunk body or a .part on disk is FLAC: the meeting kept its format across the crash
    assert list(data.rglob("*.flac*"))

    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(cli.parse_args(["recover", "--db", str(db), "--data-dir", str(data), "--json"]),
                         stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    (m,) = json.loads(out.getvalue())["meetings"]
    assert m["status"] == "PROMOTED" and m["chunks"]["FAILED"] == 0
    recs = {r["user_id"]: r for r in m["recordings"]}
    users = [FIRST_USER_ID + i for i in range(2)]
    assert set(recs) == {*users, None}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    (length,) = con.execute("SELECT length_samples FROM meetings").fetchone()
    con.close()
    for r in recs.values():
        assert_lossless_file(r["path"], length, r["size_bytes"], r["sha256"])

    plans, _ = build_plans(SimulateOptions(speakers=2, seconds=60, seed=5, talk_spurts=False))
    grid = Grid.for_interval(1.0)
    for plan in plans:
        seqs = sorted(seq for u, seq in before if u == plan.user_id)
        assert seqs == list(range(len(seqs)))
        must_cover = grid.start(seqs[-1]) + grid.chunk_samples
        rec = decode_file(recs[plan.user_id]["path"])
        assert len(rec) >= must_cover
        ref = source_reference(plan.source, len(rec))
        t = Track(plan.user_id, rec[:must_cover], ref[:must_cover], np.ones(must_cover, dtype=bool))
        assert best_corr(t, search=int(0.09 * 48_000)) > 0.9
    assert MIX_USER_ID in {u for u, _ in before}
