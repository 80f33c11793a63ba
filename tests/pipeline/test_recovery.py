"""Crashes: a recorder dies (its tasks stop where they are, nothing is finished) and a new
one opens the same database and data directory. Nothing that reached disk may be lost,
and no row may be left in a state the code cannot move on from.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from chunkrecorder.audio import id3, mp3
from chunkrecorder.objects import MeetingSettings, MeetingStatus, RecordingKind
from chunkrecorder.pipeline import PipelineError, Recorder
from chunkrecorder.pipeline.paths import Layout
from chunkrecorder.store import SqlRecordingService, StoreError
from tests.support.pipeline import Clock, Speaker, kill, play, wait_for
from tests.support.signals import RATE, boundaries, decode_file, lag_at, speech_like

DB = "chunkrecorder.sqlite3"


async def open_recorder(data: Path, **kw) -> Recorder:
    store = await SqlRecordingService(data / DB).open()
    kw.setdefault("workers", 2)
    rec = Recorder(store=store, data_dir=data, **kw)
    return rec


async def close_recorder(rec: Recorder) -> None:
    await rec.close()
    await rec.store.close()


async def live_meeting(rec: Recorder, speakers, seconds: float, clock: Clock | None = None):
    clock = clock or Clock()
    session = await rec.start_meeting(
        guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
    await play(session, clock, speakers, until_s=seconds, tick=rec.tick)
    return session, clock


def check_tracks(recordings, speakers, length: int, grid) -> None:
    """Per-user files: the meeting's length, in sync with the source at every boundary."""
    by_user = {r.user_id: r for r in recordings if r.kind is RecordingKind.PER_USER}
    assert set(by_user) == {sp.user_id for sp in speakers}
    for sp in speakers:
        decoded = decode_file(by_user[sp.user_id].path)
        assert len(decoded) == mp3.frames_for(length) * mp3.FRAME
        ref = sp.expected(length).astype(np.float64)
        for b in boundaries(grid, length)[1:]:
            if np.abs(ref[b - int(0.125 * RATE) : b + int(0.125 * RATE)]).max() < 1000:
                continue  # nothing said around this boundary
            assert lag_at(decoded, ref, b, search=int(0.01 * RATE))[0] == 0
        n = min(len(ref), len(decoded))
        err = decoded[:n] - ref[:n]
        assert 10 * np.log10(np.dot(ref, ref) / np.dot(err, err)) > 15


async def test_a_crash_mid_meeting_loses_only_the_unflushed_audio(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    await rec.start()
    speakers = [Speaker(1, speech_like(4.3, seed=1)), Speaker(2, speech_like(3.0, seed=2), start_s=1.2)]
    session, _ = await live_meeting(rec, speakers, 4.3)
    grid, mid = session.grid, session.meeting.id
    flushed = session.snapshot().windows_flushed
    assert flushed == 3  # window 3 (3.024-4.032 s) is not due before 4.58 s
    await kill(rec)

    rec2 = await open_recorder(tmp_path)
    report = await rec2.start()
    try:
        assert report.interrupted == (mid,) and report.awaiting_promotion == (mid,)
        (result,) = [await rec2.promote(m) for m in report.awaiting_promotion]  # the owner's promotion
        meeting = await rec2.store.get_meeting(mid)
        assert meeting.status is MeetingStatus.PROMOTED
        length = flushed * grid.chunk_samples
        assert meeting.length_samples == length
        check_tracks(result.recordings, speakers, length, grid)
    finally:
        await close_recorder(rec2)


async def test_a_chunk_written_but_never_inserted_is_adopted(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    await rec.start()
    speakers = [Speaker(1, speech_like(3.0, seed=3))]
    clock = Clock()
    session = await rec.start_meeting(
        guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
    real_insert = rec.store.insert_temp_recording

    async def dies_on_window_1(**kw):
        if kw["seq"] == 1:
            raise ConnectionError("the process died here")
        return await real_insert(**kw)

    rec.store.insert_temp_recording = dies_on_window_1  # type: ignore[method-assign]
    await play(session, clock, speakers, until_s=2.7, tick=rec.tick)
    mid = session.meeting.id
    assert session.snapshot().windows_flushed == 1
    on_disk = sorted(p.name for p in Layout(tmp_path).meeting_dir(mid).iterdir())
    assert "1_1.pcm" in on_disk and "0_1.pcm" in on_disk
    await kill(rec)

    rec2 = await open_recorder(tmp_path)
    report = await rec2.start()
    try:
        assert report.adopted == 2  # the speaker's and the mix's chunk 1
        assert report.awaiting_promotion == (mid,)
        rows = await rec2.store.get_temp_recordings_for_meeting(mid, user_id=1)
        assert [r.seq for r in rows] == [0, 1]
        assert rows[1].sample_count == session.grid.chunk_samples
        result = await rec2.promote(mid)
        length = 2 * session.grid.chunk_samples
        assert result.length_ms == round(length / 48)
        check_tracks(result.recordings, speakers, length, session.grid)
    finally:
        await close_recorder(rec2)


async def test_chunks_being_encoded_at_the_crash_are_encoded_again(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    await rec.start()
    speakers = [Speaker(1, speech_like(3.0, seed=4))]
    session, clock = await live_meeting(rec, speakers, 3.0)
    clock.t = session.t0 + 3.0
    length = await session.finish()
    await rec.store.set_meeting_status(session.meeting.id, MeetingStatus.STOPPING, length_samples=length)
    await kill(rec)
    # as if two workers had claimed jobs and died with them, one leaving a torn MP3 behind
    store = await SqlRecordingService(tmp_path / DB).open()
    await store.requeue_in_progress()
    claimed = [await store.claim_next_job(), await store.claim_next_job()]
    claimed = [c for c in claimed if c is not None]
    assert claimed
    Path(claimed[0].pcm_path).with_suffix(".mp3.tmp").write_bytes(b"\xff\xfb half")
    await store.close()

    rec2 = await open_recorder(tmp_path)
    report = await rec2.start()
    try:
        assert report.requeued >= len(claimed)
        assert report.interrupted == (session.meeting.id,)
        result = await rec2.promote(session.meeting.id)
        check_tracks(result.recordings, speakers, length, session.grid)
        assert not list(Layout(tmp_path).chunks_dir.rglob("*.tmp"))
    finally:
        await close_recorder(rec2)


CRASH_POINTS = ["append", "rows", "clear"]


@pytest.mark.parametrize("where", CRASH_POINTS)
async def test_a_promotion_interrupted_anywhere_completes_with_the_same_bytes(tmp_path: Path, where: str) -> None:
    speakers = [Speaker(1, speech_like(3.3, seed=5)), Speaker(2, speech_like(2.0, seed=6), start_s=0.8)]

    async def run(data: Path, crash: str | None):
        rec = await open_recorder(data)
        await rec.start()
        session, clock = await live_meeting(rec, speakers, 3.3)
        mid = session.meeting.id
        if crash is None:
            result = await rec.stop_meeting(mid)
            await close_recorder(rec)
            return result, session
        if crash == "append":
            # the appends reach the .part files, their bookkeeping never does
            async def lost(*a, **kw):
                raise ConnectionError("died after writing the .part")
            rec.store.advance_track = lost  # type: ignore[method-assign]
        elif crash == "rows":
            async def lost(*a, **kw):
                raise ConnectionError("died after renaming the files")
            rec.store.promote_temp_recordings_to_persistent = lost  # type: ignore[method-assign]
        else:
            def lost(*a, **kw):
                raise OSError("died after the rows")
            rec.promoter._clear_chunks = lost  # type: ignore[method-assign]
        if crash == "clear":
            # the rows are in: the user has the recording; only the chunk folder is left
            await rec.stop_meeting(mid)
            assert Layout(data).meeting_dir(mid).exists()
        else:
            with pytest.raises(StoreError):
                await rec.stop_meeting(mid)
        await kill(rec)
        rec2 = await open_recorder(data)
        report = await rec2.start()
        if crash != "clear":
            status = (await rec2.store.get_meeting(mid)).status
            assert status in (MeetingStatus.INTERRUPTED, MeetingStatus.FAILED)
            assert mid in report.awaiting_promotion or status is MeetingStatus.FAILED
        result = await rec2.promote(mid)
        again = await rec2.promote(mid)
        assert [r.id for r in again.recordings] == [r.id for r in result.recordings]
        await close_recorder(rec2)
        return result, session

    clean, _ = await run(tmp_path / "clean", None)
    repaired, session = await run(tmp_path / "crashed", where)
    assert repaired.meeting.status is MeetingStatus.PROMOTED
    # the same frames (each meeting's tags name its own id and start, so whole files differ)
    def frames(path: str) -> str:
        data = Path(path).read_bytes()
        return hashlib.sha256(data[id3.tag_length(data[: id3.HEADER_SIZE]) :]).hexdigest()

    digest = lambda rs: sorted((r.kind.value, r.user_id, frames(r.path), r.size_bytes, r.duration_in_ms) for r in rs)  # noqa: E731
    assert digest(repaired.recordings) == digest(clean.recordings)
    for r in repaired.recordings:
        assert hashlib.sha256(Path(r.path).read_bytes()).hexdigest() == r.sha256
    layout = Layout(tmp_path / "crashed")
    assert not layout.meeting_dir(session.meeting.id).exists()
    assert not list(layout.recordings_dir.glob("*.part"))


async def test_start_promotes_nothing_interrupted_meetings_wait_for_the_owner(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    await rec.start()
    session, _ = await live_meeting(rec, [Speaker(1, speech_like(2.7, seed=7))], 2.7)
    await kill(rec)
    rec2 = await open_recorder(tmp_path)
    report = await rec2.start()
    try:
        mid = session.meeting.id
        assert report.awaiting_promotion == (mid,)
        await asyncio.sleep(0.3)
        assert (await rec2.store.get_meeting(mid)).status is MeetingStatus.INTERRUPTED
        assert await rec2.store.recordings_for_meeting(mid) == []
        result = await rec2.promote(mid)
        assert result.meeting.status is MeetingStatus.PROMOTED and len(result.recordings) == 2
    finally:
        await close_recorder(rec2)


async def test_close_while_recording_keeps_everything_up_to_the_close(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    await rec.start()
    speakers = [Speaker(1, speech_like(2.6, seed=8))]
    session, clock = await live_meeting(rec, speakers, 2.6)
    await close_recorder(rec)  # a graceful shutdown (cog unload) mid-meeting
    rec2 = await open_recorder(tmp_path)
    report = await rec2.start()
    try:
        mid = session.meeting.id
        assert report.awaiting_promotion == (mid,) and report.interrupted == ()
        result = await rec2.promote(mid)
        length = int(2.6 * RATE)
        assert result.meeting.length_samples == length
        check_tracks(result.recordings, speakers, length, session.grid)
    finally:
        await close_recorder(rec2)


async def test_a_done_chunk_whose_pcm_survived_is_cleaned(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    await rec.start()
    session, clock = await live_meeting(rec, [Speaker(1, speech_like(2.0, seed=9))], 2.0)
    mid = session.meeting.id
    await wait_for(lambda: _all_cleaned(rec, mid))
    await kill(rec)
    store = await SqlRecordingService(tmp_path / DB).open()
    row = (await store.get_temp_recordings_for_meeting(mid))[0]
    await store.conn.execute("UPDATE temp_recordings SET cleaned = 0 WHERE id = ?", (row.id,))
    Path(row.pcm_path).write_bytes(b"\0" * 64)  # the delete never happened
    await store.close()
    rec2 = await open_recorder(tmp_path)
    report = await rec2.start()
    try:
        assert report.cleaned == 1
        assert not Path(row.pcm_path).exists()
        assert (await rec2.store.get_temp_recording(row.id)).cleaned
    finally:
        await close_recorder(rec2)


async def _all_cleaned(rec: Recorder, mid: str) -> bool:
    """Settled and every PCM deleted: under load a DONE chunk may still be mid-cleanup."""
    rows = await rec.store.get_temp_recordings_for_meeting(mid)
    return bool(rows) and all(r.cleaned for r in rows)


async def _no_pending(rec: Recorder, mid: str) -> bool:
    counts = await rec.store.chunk_counts(mid)
    return counts.total > 0 and counts.pending == 0


async def test_promote_of_a_meeting_still_recording_elsewhere_is_refused_cleanly(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    await rec.start()
    try:
        session, _ = await live_meeting(rec, [Speaker(1, speech_like(1.0, seed=10))], 1.0)
        with pytest.raises(PipelineError, match="still being recorded"):
            await rec.promoter.promote(session.meeting.id)
        assert (await rec.store.get_meeting(session.meeting.id)).status is MeetingStatus.ACTIVE
    finally:
        await close_recorder(rec)


KILLED_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from chunkrecorder.objects import MeetingSettings
    from chunkrecorder.pipeline import Recorder
    from chunkrecorder.store import SqlRecordingService
    from tests.support.pipeline import Clock, Speaker, play
    from tests.support.signals import speech_like

    async def main(data):
        store = await SqlRecordingService(data / "chunkrecorder.sqlite3").open()
        rec = Recorder(store=store, data_dir=data, workers=1)
        await rec.start()
        clock = Clock()
        session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3,
                                          settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
        print(session.meeting.id, flush=True)
        await play(session, clock, [Speaker(1, speech_like(6.0, seed=11))], until_s=4.3, tick=rec.tick)
        while (await store.chunk_counts(session.meeting.id)).done < 2:
            await asyncio.sleep(0.01)
        print(*rec.transcoder.worker_pids(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # mid-meeting, mid-encode, mid-assembly

    if __name__ == "__main__":
        asyncio.run(main(Path(sys.argv[1])))
    """
)


async def test_a_real_sigkill_mid_meeting(tmp_path: Path) -> None:
    script = tmp_path / "record_then_die.py"
    script.write_text(KILLED_SCRIPT)
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path]))
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # files, not pipes: nothing the dead process left could keep us waiting on them
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(data), stdout=out, stderr=err, env=env)
        try:
            await asyncio.wait_for(proc.wait(), 120)
        except asyncio.TimeoutError:
            proc.kill()
            raise
    assert proc.returncode == -signal.SIGKILL, err_path.read_text()
    lines = out_path.read_text().split("\n")
    mid, workers = lines[0].strip(), [int(p) for p in lines[1].split()]
    assert workers
    # the encoder processes notice their parent is gone and exit: no orphans
    await wait_for(lambda: not any(Path(f"/proc/{p}").exists() and _not_zombie(p) for p in workers),
                   timeout_s=15)

    rec = await open_recorder(data)
    report = await rec.start()
    try:
        assert report.interrupted == (mid,)
        result = await rec.promote(mid)
        grid_chunk = 48_384
        length = result.meeting.length_samples
        assert length == 3 * grid_chunk  # the three windows flushed before the kill
        from chunkrecorder.pipeline.timeline import Grid
        check_tracks(result.recordings, [Speaker(1, speech_like(6.0, seed=11))], length, Grid.for_interval(1.0))
    finally:
        await close_recorder(rec)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
