"""Issue 8's invariant: audio that reached disk is removed only when a committed row holds it
elsewhere, an admin deleted it, an erasure covers it, or its recording's retention passed.

Each test is one of the ways main broke it, reproduced with real files, the real store and
the real encoder, and checked the way a user would notice: by decoding the files and
lining them up with what was said.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest
from pyfakefs.fake_filesystem_unittest import Patcher

from chunkrecorder.audio import mp3
from chunkrecorder.objects import MIX_USER_ID, MeetingSettings, MeetingStatus, PipelineError, RecordingKind, TranscodeStatus
from chunkrecorder.pipeline import Recorder, RetryPolicy
from chunkrecorder.pipeline.encode_worker import EncodeJob, encode
from chunkrecorder.pipeline.paths import Layout
from chunkrecorder.pipeline.timeline import Grid
from chunkrecorder.store import SqlRecordingService
from tests.support.pipeline import Clock, Speaker, kill, play, wait_for
from tests.support.signals import RATE, decode_file, lag_at, snr_db, speech_like

DB = "chunkrecorder.sqlite3"
FAST = RetryPolicy(3, 0.02, 0.1)


async def open_recorder(data: Path, **kw: Any) -> Recorder:
    store = await SqlRecordingService(data / DB).open()
    rec = Recorder(store=store, data_dir=data, workers=kw.pop("workers", 1), executor=kw.pop("executor", "thread"),
                   **kw)
    await rec.start()
    return rec


async def close_recorder(rec: Recorder) -> None:
    await rec.close()
    await rec.store.close()


async def record(rec: Recorder, speakers: list[Speaker], seconds: float, clock: Clock | None = None):
    clock = clock or Clock()
    session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3, clock=clock,
                                      settings=MeetingSettings(flush_interval_s=1.0))
    await play(session, clock, speakers, until_s=seconds, tick=rec.tick)
    return session


def assert_holds(path: str | Path, speaker: Speaker, length: int, *, windows: range | None = None) -> None:
    """The decoded file is the speaker, in sync, over ``windows`` (every 1 s window by default)."""
    decoded = decode_file(path)
    assert len(decoded) == mp3.frames_for(length) * mp3.FRAME
    ref = speaker.expected(length).astype(np.float64)
    grid_samples = Grid.for_interval(1.0).chunk_samples
    for k in windows if windows is not None else range(-(-length // grid_samples)):
        lo, hi = k * grid_samples + 1200, min(length, (k + 1) * grid_samples) - 1200
        if hi - lo < 4000:
            continue
        mask = np.zeros(len(ref), dtype=bool)
        mask[lo:hi] = True
        assert snr_db(decoded, ref, mask) > 15, f"window {k} does not hold the speaker"
        lag = lag_at(decoded, ref, (lo + hi) // 2, search=480)
        assert lag is not None and lag.samples == 0


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- breach 1
DATA = Path("/srv/chunkrecorder")


@pytest.fixture
def fakefs():
    with Patcher(allow_root_user=False) as patcher:
        patcher.fs.create_dir(DATA)
        yield patcher.fs


async def test_a_failed_meetings_chunks_outlive_the_temp_ttl_and_promote_to_their_audio(tmp_path: Path,
                                                                                      fakefs: Any) -> None:
    """The recordings folder is full at stop: the meeting goes FAILED with its chunks kept.
    A day of cleanups later (here: a TTL of 0) nothing of it is gone, and once there is
    room an admin's promote gives the files with the audio, not silence."""
    recordings = Layout(DATA).recordings_dir
    fakefs.add_mount_point(str(recordings), total_size=20_000)
    async with SqlRecordingService(tmp_path / DB) as store:
        rec = Recorder(store=store, data_dir=DATA, workers=1, executor="thread")
        await rec.start()
        try:
            sp = Speaker(5, speech_like(3.0, seed=5))
            session = await record(rec, [sp], 3.0)
            with pytest.raises(PipelineError, match="Nothing was lost"):
                await rec.stop_meeting(session.meeting.id)
            mid = session.meeting.id
            assert (await store.get_meeting(mid)).status is MeetingStatus.FAILED
            chunks = await store.get_temp_recordings_for_meeting(mid)
            on_disk = sorted(p for p in Path(DATA).rglob("*") if p.is_file() and p.suffix in (".mp3", ".pcm"))

            report = await rec.cleanup(temp_ttl_s=0.0, retention_days=1)

            assert report.temp_rows_deleted == 0 and report.files_deleted == 0
            assert await store.get_temp_recordings_for_meeting(mid) == chunks
            assert sorted(p for p in Path(DATA).rglob("*") if p.is_file() and p.suffix in (".mp3", ".pcm")) == on_disk
            fakefs.set_disk_usage(10**9, path=str(recordings))
            result = await rec.promote(mid)
        finally:
            await rec.close()
    assert result.meeting.status is MeetingStatus.PROMOTED and result.failed_chunks == 0 and result.gaps == ()
    user = next(r for r in result.recordings if r.user_id == 5)
    assert_holds(user.path, sp, int(3.0 * RATE))


async def test_a_chunk_damaged_after_encoding_is_a_named_gap_not_a_silent_one(tmp_path: Path) -> None:
    """A chunk MP3 damaged on disk between its encode and its assembly: the file holds
    silence there, and the result and the database say so (main counted 0 failures)."""

    def damage_window_1(job: EncodeJob) -> mp3.ChunkMp3:
        out = encode(job)
        if Path(job.pcm_path).name == "8_1.pcm":
            with open(job.mp3_path, "r+b") as fh:
                fh.truncate(100)
        return out

    rec = await open_recorder(tmp_path, encoder=damage_window_1, retry=FAST)
    try:
        sp = Speaker(8, speech_like(3.0, seed=8))
        session = await record(rec, [sp, Speaker(9, speech_like(3.0, seed=9))], 3.0)  # the mix its own chunk
        result = await rec.stop_meeting(session.meeting.id)
        assert result.failed_chunks == 1
        (gap,) = result.gaps
        assert (gap.user_id, gap.seq, gap.start_sample) == (8, 1, session.grid.start(1))
        assert "damaged" in gap.reason
        assert await rec.gaps(session.meeting.id) == [gap]
        user = next(r for r in result.recordings if r.user_id == 8)
        decoded = decode_file(user.path)
        assert not decoded[session.grid.start(1) + 1200 : session.grid.start(2) - 1200].any()
        assert_holds(user.path, sp, int(3.0 * RATE), windows=range(0, 1))
        assert_holds(user.path, sp, int(3.0 * RATE), windows=range(2, 3))
        # its PCM went when it was encoded: a repair finds nothing to put back and says so
        repaired = await rec.repair(session.meeting.id, timeout_s=5)
        assert repaired.repaired == () and [g.seq for g in repaired.remaining] == [1]
        assert not repaired.remaining[0].repairable
    finally:
        await close_recorder(rec)


# --------------------------------------------------------------------------- breach 2
async def test_a_lost_database_loses_no_recording_they_are_adopted_back(tmp_path: Path) -> None:
    """Main: delete chunkrecorder.sqlite3, reload, and the start-up cleanup deleted the MP3s
    (3 files before, 0 after). Now they are adopted back from the meeting's manifest: same
    files, same bytes, listed in the same guild, and no cleanup touches them."""
    rec = await open_recorder(tmp_path)
    speakers = [Speaker(1, speech_like(2.5, seed=1)), Speaker(2, speech_like(2.5, seed=2))]
    session = await record(rec, speakers, 2.5)
    await rec.add_note(session.meeting.id, author_id=3, text="a chapter", at_ms=1000)  # the mix carries a tag
    result = await rec.stop_meeting(session.meeting.id)
    await close_recorder(rec)
    before = {r.path: (r.sha256, r.size_bytes, r.user_id, r.kind) for r in result.recordings}
    assert len(before) == 3
    for name in (DB, DB + "-wal", DB + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)

    rec = await open_recorder(tmp_path)
    try:
        assert rec.unknown.files == 0
        report = await rec.cleanup(temp_ttl_s=0.0)
        assert report.files_deleted == 0
        meeting = await rec.library.get_meeting(session.meeting.id, guild_id=1)
        assert meeting.status is MeetingStatus.PROMOTED and meeting.channel_id == 2 and meeting.started_by == 3
        assert meeting.length_samples == mp3.frames_for(int(2.5 * RATE)) * mp3.FRAME
        adopted = await rec.library.recordings_for_meeting(session.meeting.id)
        assert {r.path: (r.sha256, r.size_bytes, r.user_id, r.kind) for r in adopted} == before
        assert all(sha(r.path) == r.sha256 for r in adopted)
        assert all(r.duration_in_ms == round(meeting.length_samples * 1000 / RATE) for r in adopted)
        for sp in speakers:
            assert_holds(next(r.path for r in adopted if r.user_id == sp.user_id), sp, int(2.5 * RATE))
    finally:
        await close_recorder(rec)


async def test_files_no_manifest_can_place_are_kept_and_counted(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    session = await record(rec, [Speaker(1, speech_like(1.5, seed=1))], 1.5)
    result = await rec.stop_meeting(session.meeting.id)
    await close_recorder(rec)
    size = sum(r.size_bytes for r in result.recordings)
    shutil.rmtree(tmp_path / "meetings")
    for name in (DB, DB + "-wal", DB + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)

    rec = await open_recorder(tmp_path)
    try:
        assert rec.unknown.files == 2 and rec.unknown.bytes == size
        assert rec.unknown.meetings == (session.meeting.id,)
        report = await rec.cleanup(temp_ttl_s=0.0, retention_days=1)
        assert report.files_deleted == 0 and report.unknown.files == 2
        assert all(Path(r.path).exists() and sha(r.path) == r.sha256 for r in result.recordings)
    finally:
        await close_recorder(rec)


async def test_a_database_lost_mid_meeting_is_finished_from_its_files(tmp_path: Path) -> None:
    """Killed mid-meeting, and the database lost too: the meeting comes back INTERRUPTED
    from its manifest, its half-built tracks and chunks, and promotes to what was said."""
    rec = await open_recorder(tmp_path)
    sp = Speaker(4, speech_like(4.5, seed=4))
    clock = Clock()
    session = await record(rec, [sp], 4.5, clock=clock)
    await rec.wait_idle()
    flushed = session.snapshot().windows_flushed
    assert flushed >= 3
    await kill(rec)
    parts = sorted(p.name for p in (tmp_path / "recordings").iterdir())
    assert any(n.endswith(".part") for n in parts), parts
    for name in (DB, DB + "-wal", DB + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)

    rec = await open_recorder(tmp_path)
    try:
        report = await rec.start()
        assert report.readopted == (session.meeting.id,) and session.meeting.id in report.awaiting_promotion
        result = await rec.promote(session.meeting.id)
        assert result.meeting.status is MeetingStatus.PROMOTED and result.failed_chunks == 0
        user = next(r for r in result.recordings if r.user_id == 4)
        length = flushed * session.grid.chunk_samples
        assert result.meeting.length_samples is not None and result.meeting.length_samples >= length
        assert_holds(user.path, sp, result.meeting.length_samples, windows=range(flushed))
    finally:
        await close_recorder(rec)


# --------------------------------------------------------------------------- erasure and deletion leftovers
async def test_an_erased_members_leftover_chunk_is_removed_not_adopted(tmp_path: Path) -> None:
    """An erasure deletes rows, then files; a crash in between used to leave chunk files the
    next start adopted back: the erased member's voice, recorded again into a file."""
    rec = await open_recorder(tmp_path)
    session = await record(rec, [Speaker(1, speech_like(2.5, seed=1)), Speaker(2, speech_like(2.5, seed=2))], 2.5)
    await kill(rec)  # INTERRUPTED, its chunks on disk
    rec = await open_recorder(tmp_path)
    try:
        mid = session.meeting.id
        chunk_dir = rec.layout.meeting_dir(mid)
        # the erasure's rows go, and a crash comes before its files do:
        await rec.store.erase_user_tracks(1)
        await rec.store.delete_user_rows(1)
        leftover = rec.layout.pcm_path(mid, 1, 0)
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"\0" * 9000)
        os.utime(leftover, (leftover.stat().st_mtime - 60,) * 2)
        await close_recorder(rec)

        rec = await open_recorder(tmp_path)
        result = await rec.promote(mid)
        assert not leftover.exists()
        assert sorted(r.user_id or MIX_USER_ID for r in result.recordings) == [MIX_USER_ID, 2]
        assert not any(p.name.startswith("1_") for p in chunk_dir.glob("*")) if chunk_dir.exists() else True
    finally:
        await close_recorder(rec)


# --------------------------------------------------------------------------- repair
class DiskFull:
    """The data folder's disk is full for the encoders while ``on`` (ENOSPC from their writes)."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self.refused = 0

    def __call__(self, job: EncodeJob) -> mp3.ChunkMp3:
        if self.on.is_set():
            self.refused += 1
            raise OSError(errno.ENOSPC, "No space left on device", job.mp3_path)
        return encode(job)


async def test_the_issues_disk_full_case_is_marked_and_repaired_in_place(tmp_path: Path) -> None:
    """Issue 8: 40 s of ENOSPC under the data folder at stop made seconds 0-1 silent for good
    (and the bot said "kept for a retry" with nothing able to retry). Now the meeting is
    finished with its gaps named (times and reason), their chunks kept, and a repair puts
    the audio back into the same files once there is room: same ids, new sha256."""
    disk = DiskFull()
    disk.on.set()
    rec = await open_recorder(tmp_path, encoder=disk, retry=FAST)
    try:
        sp = Speaker(6, speech_like(3.0, seed=6))
        session = await record(rec, [sp], 3.0)
        await rec.add_note(session.meeting.id, author_id=3, text="the decision", at_ms=1500)  # a chapter tag
        result = await rec.stop_meeting(session.meeting.id, timeout_s=1.0)
        mid = session.meeting.id
        assert disk.refused > 0
        assert result.meeting.status is MeetingStatus.PROMOTED
        windows = session.grid.windows_for(int(3.0 * RATE))
        assert sorted((g.user_id, g.seq) for g in result.gaps) == [(u, k) for u in (MIX_USER_ID, 6)
                                                                   for k in range(windows)]
        assert result.failed_chunks == len(result.gaps)
        assert result.gaps[0].start_sample == 0 and result.gaps[0].sample_count == session.grid.chunk_samples
        assert all(g.repairable and "No space left" in g.reason for g in result.gaps)
        ids = {r.id: r.sha256 for r in result.recordings}
        user = next(r for r in result.recordings if r.user_id == 6)
        length = result.meeting.length_samples
        assert length == int(3.0 * RATE)
        assert not decode_file(user.path).any()  # silent, but full length and named as gaps

        disk.on.clear()
        repaired = await rec.repair(mid, timeout_s=30)

        # (the transcoder's own retries may have put some back already: it keeps retrying)
        assert repaired.remaining == () and 0 < len(repaired.repaired) <= len(result.gaps)
        assert await rec.gaps(mid) == []
        after = {r.id: r for r in repaired.recordings}
        assert set(after) == set(ids)  # the same recordings, repaired in place
        for r in after.values():
            assert sha(r.path) == r.sha256 != ids[r.id] and Path(r.path).stat().st_size == r.size_bytes
        assert_holds(after[user.id].path, sp, length)
        mix = next(r for r in after.values() if r.kind is RecordingKind.MIXED)
        assert_holds(mix.path, sp, length)  # one speaker: the mix is them
        assert Path(mix.path).read_bytes().startswith(b"ID3") and b"the decision" in Path(mix.path).read_bytes()
        assert await rec.store.get_temp_recordings_for_meeting(mid) == []  # the kept chunks went with the repair
        folder = rec.layout.meeting_dir(mid)
        assert not folder.exists() or not any(folder.iterdir())
    finally:
        await close_recorder(rec)


async def test_a_full_disk_is_retried_past_the_attempt_limit_and_the_gaps_fill_themselves(tmp_path: Path) -> None:
    """A transient failure (ENOSPC) is retried for as long as the PCM is kept, well past
    ``max_attempts``; the stop does not wait for ever (the files come with their gaps
    named), and once the disk has room the retries succeed and the files are repaired
    without anyone asking."""
    disk = DiskFull()
    disk.on.set()
    rec = await open_recorder(tmp_path, encoder=disk, retry=RetryPolicy(2, 0.01, 0.05))
    try:
        sp = Speaker(6, speech_like(2.5, seed=6))
        session = await record(rec, [sp], 2.5)
        result = await rec.stop_meeting(session.meeting.id, timeout_s=0.5)
        mid = session.meeting.id
        assert result.failed_chunks == len(result.gaps) > 0
        await wait_for(lambda: disk.refused >= 4 * len(result.gaps), timeout_s=30)  # far past 2 attempts each
        chunks = await rec.store.gap_chunks(mid)
        assert chunks and all(c.pending for c in chunks) and max(c.attempts for c in chunks) > 2

        disk.on.clear()

        async def repaired() -> bool:
            return await rec.gaps(mid) == []

        await wait_for(repaired, timeout_s=30)
        user = next(r for r in await rec.library.recordings_for_meeting(mid) if r.user_id == 6)
        assert sha(user.path) == user.sha256
        assert_holds(user.path, sp, int(2.5 * RATE))
    finally:
        await close_recorder(rec)


async def test_an_input_the_encoder_rejects_gives_up_after_the_attempts(tmp_path: Path) -> None:
    calls: list[str] = []

    def rejects_window_1(job: EncodeJob) -> mp3.ChunkMp3:
        if Path(job.pcm_path).name == "6_1.pcm":
            calls.append(job.pcm_path)
            raise mp3.EncodeError("encoder gave 3 frames for the body, expected 42")
        return encode(job)

    rec = await open_recorder(tmp_path, encoder=rejects_window_1, retry=RetryPolicy(3, 0.01, 0.05),
                              )
    try:
        session = await record(rec, [Speaker(6, speech_like(2.5, seed=6)), Speaker(7, speech_like(2.5, seed=7))],
                               2.5)
        result = await rec.stop_meeting(session.meeting.id)
        assert len(calls) == 3  # the attempt limit, no more
        (gap,) = result.gaps
        assert (gap.user_id, gap.seq) == (6, 1) and gap.chunk_status is TranscodeStatus.FAILED
        assert "EncodeError" in gap.reason and gap.repairable
    finally:
        await close_recorder(rec)


async def test_gaps_survive_a_lost_database_and_are_repaired_from_their_kept_chunks(tmp_path: Path) -> None:
    """Found by the fault injection (seed 1017): a meeting finished with gaps, then its
    database lost. Its files came back, and the chunks kept for the gaps were adopted as
    ordinary chunks and deleted at the next promotion: the silence stayed for good. Now a
    chunk beside a finished file is a gap again, and the repair fills it."""
    disk = DiskFull()
    disk.on.set()
    rec = await open_recorder(tmp_path, encoder=disk, retry=RetryPolicy(2, 0.01, 0.05))
    sp = Speaker(6, speech_like(2.5, seed=6))
    session = await record(rec, [sp, Speaker(7, speech_like(2.5, seed=7))], 2.5)
    result = await rec.stop_meeting(session.meeting.id, timeout_s=0.3)
    assert result.gaps
    await close_recorder(rec)
    for name in (DB, DB + "-wal", DB + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    disk.on.clear()

    rec = await open_recorder(tmp_path, encoder=disk, retry=RetryPolicy(2, 0.01, 0.05))
    try:
        mid = session.meeting.id
        assert (await rec.library.get_meeting(mid)).status is MeetingStatus.PROMOTED
        assert {(g.user_id, g.seq) for g in await rec.gaps(mid)} <= {(g.user_id, g.seq) for g in result.gaps}

        async def repaired() -> bool:
            return await rec.gaps(mid) == []

        await wait_for(repaired, timeout_s=30)
        user = next(r for r in await rec.library.recordings_for_meeting(mid) if r.user_id == 6)
        assert sha(user.path) == user.sha256
        assert_holds(user.path, sp, int(2.5 * RATE))
    finally:
        await close_recorder(rec)


# --------------------------------------------------------------------------- found by the fault injection
async def _killed_while_finishing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, speakers: list[Speaker],
                                  seconds: float, *, finished_files: int) -> str:
    """Record, stop, and die (the kill -9 of ``tests.support.kill``) while the tracks are being
    renamed from ``.part`` to their final names, after ``finished_files`` of them; then the
    database is lost. Every window, the meeting's short last one included, is assembled by then."""
    from chunkrecorder.pipeline.assembler import Assembler

    finalize = Assembler.finalize
    reached = asyncio.Event()
    calls = 0

    async def dies_at_a_rename(self: Assembler, *args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > finished_files:
            reached.set()
            await asyncio.Future()  # the process is gone: nothing after this point runs
        return await finalize(self, *args, **kw)

    monkeypatch.setattr(Assembler, "finalize", dies_at_a_rename)
    rec = await open_recorder(tmp_path)
    session = await record(rec, speakers, seconds)
    stop = asyncio.ensure_future(rec.stop_meeting(session.meeting.id))
    await asyncio.wait_for(reached.wait(), 30)
    stop.cancel()
    await asyncio.gather(stop, return_exceptions=True)
    await kill(rec)
    monkeypatch.setattr(Assembler, "finalize", finalize)
    mid = session.meeting.id
    assert not list((tmp_path / "chunks" / mid).glob("*_2.*")), "the last window is only in the .part files"
    assert len(list((tmp_path / "recordings").glob("*.part"))) == len(speakers) + 1 - finished_files
    for name in (DB, DB + "-wal", DB + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    return mid


@pytest.mark.parametrize("finished_files", [1, 0], ids=["mix-finished", "none-finished"])
async def test_a_lost_database_keeps_the_short_last_window_a_part_file_already_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finished_files: int
) -> None:
    """Found by the fault injection (seed 2026): killed while a meeting's tracks were being
    renamed (the mix already finished), then the database lost. Adoption measured each
    ``.part`` in whole windows and cut off the rest, but a meeting's last window is short:
    that rest was its last window, whose chunk had gone into the ``.part`` (and been deleted,
    as it should). The promotion truncated the ``.part`` and filled the window with silence,
    with no gap: 0.0 dB where the speaker was. Now the rest of a ``.part`` whose chunk is no
    longer on disk is the meeting's last window, and the meeting's length is taken from it."""
    seconds = 2.5  # windows of 1.008 s: the third is short
    speakers = [Speaker(1, speech_like(seconds, seed=1)), Speaker(2, speech_like(seconds, seed=2))]
    mid = await _killed_while_finishing(tmp_path, monkeypatch, speakers, seconds, finished_files=finished_files)

    rec = await open_recorder(tmp_path)
    try:
        assert rec.unknown.files == 0
        result = await rec.promote(mid)
        assert result.meeting.status is MeetingStatus.PROMOTED
        assert result.gaps == () and result.failed_chunks == 0
        assert result.meeting.length_samples == mp3.frames_for(int(seconds * RATE)) * mp3.FRAME
        for sp in speakers:
            user = next(r for r in result.recordings if r.user_id == sp.user_id)
            assert sha(user.path) == user.sha256
            assert_holds(user.path, sp, int(seconds * RATE))  # the short last window included
        assert (await rec.cleanup(temp_ttl_s=0.0)).files_deleted == 0
    finally:
        await close_recorder(rec)
