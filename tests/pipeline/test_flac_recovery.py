"""The FLAC archive keeps the invariant: repair, a lost database, a kill mid-meeting.

Each case is the MP3 one (``test_invariant.py``) with ``archive="flac"``, checked as a
user would: a strict decoder reads the file, its STREAMINFO (total, MD5) is true, and
it holds the speaker's own samples (lossless: equal, not just correlated).
"""

from __future__ import annotations

import errno
import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from chunkrecorder.audio import flac
from chunkrecorder.objects import MeetingSettings, MeetingStatus
from chunkrecorder.pipeline import Recorder, RetryPolicy
from chunkrecorder.pipeline.encode_worker import EncodeJob, encode
from chunkrecorder.store import SqlRecordingService
from tests.support.pipeline import Clock, Speaker, kill, play
from tests.support.signals import RATE, ffmpeg_decode_flac, speech_like

DB = "chunkrecorder.sqlite3"


async def open_recorder(data: Path, **kw: Any) -> Recorder:
    store = await SqlRecordingService(data / DB).open()
    rec = Recorder(store=store, data_dir=data, workers=1, executor="thread", **kw)
    await rec.start()
    return rec


async def close_recorder(rec: Recorder) -> None:
    await rec.close()
    await rec.store.close()


async def record(rec: Recorder, speakers: list[Speaker], seconds: float, clock: Clock | None = None):
    clock = clock or Clock()
    session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3, clock=clock,
                                      settings=MeetingSettings(flush_interval_s=1.0, archive="flac"))
    await play(session, clock, speakers, until_s=seconds, tick=rec.tick)
    return session


def assert_lossless(path: str, sp: Speaker | None, length: int, *, windows: range | None = None) -> np.ndarray:
    assert path.endswith(".flac")
    decoded = ffmpeg_decode_flac(path)[:, 0]
    info = flac.read_stream_info(Path(path).read_bytes())
    assert len(decoded) == length == info.total_samples
    assert info.md5 == hashlib.md5(decoded.astype("<i2").tobytes()).digest()
    if sp is not None:
        ref = sp.expected(length)
        chunk = 48_000 // 1152 * 1152  # windows of 1 s on the MP3 grid
        spans = windows if windows is not None else range(-(-length // chunk))
        for k in spans:
            lo, hi = k * chunk, min(length, (k + 1) * chunk)
            assert np.array_equal(decoded[lo:hi], ref[lo:hi]), f"window {k} is not the speaker's samples"
    return decoded


class DiskFull:
    def __init__(self) -> None:
        self.on = threading.Event()

    def __call__(self, job: EncodeJob):  # noqa: ANN204
        if self.on.is_set():
            raise OSError(errno.ENOSPC, "No space left on device", job.mp3_path)
        return encode(job)


async def test_flac_gaps_are_repaired_in_place_with_a_true_streaminfo(tmp_path: Path) -> None:
    disk = DiskFull()
    disk.on.set()
    rec = await open_recorder(tmp_path, encoder=disk, retry=RetryPolicy(3, 0.02, 0.1))
    try:
        sp = Speaker(6, speech_like(3.0, seed=6), channels=1)
        session = await record(rec, [sp], 3.0)
        result = await rec.stop_meeting(session.meeting.id, timeout_s=1.0)
        assert result.gaps and result.meeting.status is MeetingStatus.PROMOTED
        length = result.meeting.length_samples
        assert length == int(3.0 * RATE)
        user = next(r for r in result.recordings if r.user_id == 6)
        assert not assert_lossless(user.path, None, length).any()  # silence stood in, full length
        before = {r.id: r.sha256 for r in result.recordings}
        flac.set_comments(Path(user.path), [("TITLE", "kept across the repair")])
        disk.on.clear()
        repaired = await rec.repair(session.meeting.id, timeout_s=30)
        assert repaired.remaining == () and await rec.gaps(session.meeting.id) == []
        for r in repaired.recordings:
            data = Path(r.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == r.sha256 != before[r.id] and len(data) == r.size_bytes
            assert_lossless(r.path, sp, length)  # the mix of one speaker is them
        user = next(r for r in repaired.recordings if r.user_id == 6)
        assert flac.read_comments(Path(user.path)) == [("TITLE", "kept across the repair")]
    finally:
        await close_recorder(rec)


async def test_a_lost_database_adopts_flac_recordings_back(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    sp = Speaker(1, speech_like(2.5, seed=1), channels=1)
    session = await record(rec, [sp, Speaker(2, speech_like(2.5, seed=2), channels=1)], 2.5)
    result = await rec.stop_meeting(session.meeting.id)
    await close_recorder(rec)
    before = {r.path: (r.sha256, r.size_bytes, r.user_id, r.kind, r.duration_in_ms) for r in result.recordings}
    assert len(before) == 3 and all(p.endswith(".flac") for p in before)
    for name in (DB, DB + "-wal", DB + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)

    rec = await open_recorder(tmp_path)
    try:
        assert rec.unknown.files == 0
        assert (await rec.cleanup(temp_ttl_s=0.0)).files_deleted == 0
        meeting = await rec.library.get_meeting(session.meeting.id, guild_id=1)
        assert meeting.status is MeetingStatus.PROMOTED
        assert meeting.length_samples == result.meeting.length_samples  # FLAC's length is exact
        adopted = await rec.library.recordings_for_meeting(session.meeting.id)
        assert {r.path: (r.sha256, r.size_bytes, r.user_id, r.kind, r.duration_in_ms) for r in adopted} == before
        assert (await rec.store.meeting_pipeline(session.meeting.id)).archive == "flac"
    finally:
        await close_recorder(rec)


async def test_a_database_lost_mid_flac_meeting_is_finished_from_its_files(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    sp = Speaker(4, speech_like(4.5, seed=4), channels=1)
    session = await record(rec, [sp], 4.5)
    await rec.wait_idle()
    flushed = session.snapshot().windows_flushed
    assert flushed >= 3
    await kill(rec)
    parts = sorted(p.name for p in (tmp_path / "recordings").iterdir())
    assert any(n.endswith(".flac.part") for n in parts), parts
    for name in (DB, DB + "-wal", DB + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)

    rec = await open_recorder(tmp_path)
    try:
        report = await rec.start()
        assert report.readopted == (session.meeting.id,)
        result = await rec.promote(session.meeting.id)
        assert result.meeting.status is MeetingStatus.PROMOTED and result.failed_chunks == 0
        user = next(r for r in result.recordings if r.user_id == 4)
        length = result.meeting.length_samples
        assert length is not None and length >= flushed * session.grid.chunk_samples
        assert_lossless(user.path, sp, length, windows=range(flushed))
    finally:
        await close_recorder(rec)


async def test_kill_mid_flac_meeting_then_recover_in_the_same_database(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    sp = Speaker(5, speech_like(4.5, seed=5), channels=1)
    session = await record(rec, [sp], 4.5)
    await rec.wait_idle()
    flushed = session.snapshot().windows_flushed
    await kill(rec)
    rec = await open_recorder(tmp_path)
    try:
        report = await rec.start()
        assert session.meeting.id in report.awaiting_promotion
        result = await rec.promote(session.meeting.id)
        user = next(r for r in result.recordings if r.user_id == 5)
        assert_lossless(user.path, sp, result.meeting.length_samples or 0, windows=range(flushed))
    finally:
        await close_recorder(rec)
