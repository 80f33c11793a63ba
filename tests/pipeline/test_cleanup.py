"""The cleanup job: stale temp rows, orphaned files, retention, and what it must never touch."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from chunkrecorder.objects import MeetingStatus, NewGap, RecordingKind
from chunkrecorder.pipeline import Recorder
from chunkrecorder.pipeline.cleanup import Cleaner
from chunkrecorder.pipeline.paths import Layout
from chunkrecorder.store import NewRecording, SqlRecordingService

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
DAY = 86_400.0


@pytest.fixture
async def store(tmp_path: Path):
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as s:
        yield s


def touch(path: Path, data: bytes, *, at: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (at, at))
    return path


async def promoted_meeting(store, layout: Layout, *, failed_chunk: bool = False) -> tuple[str, Path]:
    """A PROMOTED meeting that kept a temp row and its PCM (as a FAILED chunk does)."""
    m = await store.create_meeting(guild_id=1, channel_id=2, started_by=3)
    pcm = touch(layout.pcm_path(m.id, 7, 0), b"\0" * 4000, at=time.time())
    row = await store.insert_temp_recording(meeting_id=m.id, user_id=7, guild_id=1, pcm_path=str(pcm), seq=0,
                                            start_sample=0, sample_count=100)
    if failed_chunk:  # as promotion leaves it: a gap, its chunk kept
        await store.update_temp_recording_transcode_started(row.id)
        await store.update_temp_recording_transcode_failed(row.id, error="EncodeError: broken")
        await store.add_gaps(m.id, [NewGap(7, 0, 0, 100, "EncodeError: broken")])
    else:
        await store.update_temp_recording_transcode_started(row.id)
        await store.update_temp_recording_transcode_completed(row.id, mp3_path=str(pcm.with_suffix(".mp3")),
                                                              sha256="0" * 64, duration_ms=1)
    await store.set_meeting_status(m.id, MeetingStatus.STOPPING)
    path = touch(layout.recording_path(m.id, 7), b"mp3", at=time.time())
    await store.promote_temp_recordings_to_persistent(
        m.id, [NewRecording(RecordingKind.PER_USER, 7, path.name, str(path), 1000, "0" * 64, 3)], keep_temp=True)
    return m.id, pcm


async def test_stale_temp_rows_go_with_their_files_after_the_ttl(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    cleaner = Cleaner(store, layout)
    with freeze_time(T0) as frozen:
        old_id, old_pcm = await promoted_meeting(store, layout)
        gap_id, gap_pcm = await promoted_meeting(store, layout, failed_chunk=True)
        frozen.move_to(T0 + timedelta(hours=20))
        new_id, new_pcm = await promoted_meeting(store, layout)
        frozen.move_to(T0 + timedelta(hours=25))
        report = await cleaner.run(temp_ttl_s=DAY, retention_days=0)
    assert report.temp_rows_deleted == 1
    assert await store.get_temp_recordings_for_meeting(old_id) == []
    assert not old_pcm.exists()
    assert len(await store.get_temp_recordings_for_meeting(new_id)) == 1 and new_pcm.exists()
    # a gap's chunk is kept, whatever its age: it is what a repair puts back into the file
    assert len(await store.get_temp_recordings_for_meeting(gap_id)) == 1 and gap_pcm.exists()
    # recordings are untouched by the TTL
    assert len(await store.recordings_for_meeting(old_id)) == 1
    assert layout.recording_path(old_id, 7).exists()


async def test_leftover_files_go_but_never_those_of_unfinished_or_unknown_meetings(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    old = time.time() - 2 * DAY
    done_id, _ = await promoted_meeting(store, layout)
    orphan = touch(layout.mp3_path(done_id, 7, 3), b"x" * 10, at=old)
    fresh_orphan = touch(layout.mp3_path(done_id, 7, 4), b"x" * 10, at=time.time())
    # a meeting the database does not know (it was lost): never deleted, counted
    unknown = touch(layout.pcm_path("ffffffffffffffff", 1, 0), b"x" * 10, at=old)
    unknown_part = touch(layout.part_path("ffffffffffffffff", 1), b"x" * 10, at=old)
    unknown_rec = touch(layout.recording_path("eeeeeeeeeeeeeeee", 1), b"x" * 10, at=old)
    # a meeting an admin deleted, whose files a crash left behind: removed
    deleted = await store.create_meeting(guild_id=1, channel_id=2, started_by=3)
    await store.set_meeting_status(deleted.id, MeetingStatus.INTERRUPTED)
    await store.delete_meeting(deleted.id)
    leftover = touch(layout.pcm_path(deleted.id, 5, 0), b"x" * 10, at=time.time())
    # an interrupted meeting's chunk with no row is adopted later, never cleaned
    live = await store.create_meeting(guild_id=1, channel_id=2, started_by=3)
    await store.set_meeting_status(live.id, MeetingStatus.INTERRUPTED)
    unadopted = touch(layout.pcm_path(live.id, 5, 0), b"x" * 10, at=old)
    live_part = touch(layout.part_path(live.id, 5), b"x" * 10, at=old)
    active = await store.create_meeting(guild_id=1, channel_id=3, started_by=3)
    active_pcm = touch(layout.pcm_path(active.id, 5, 0), b"x" * 10, at=old)
    failed = await store.create_meeting(guild_id=1, channel_id=3, started_by=3)
    await store.set_meeting_status(failed.id, MeetingStatus.FAILED)
    failed_pcm = touch(layout.pcm_path(failed.id, 5, 0), b"x" * 10, at=old)

    report = await Cleaner(store, layout).run(temp_ttl_s=DAY, retention_days=0)
    assert not orphan.exists() and not leftover.exists() and not leftover.parent.exists()
    assert fresh_orphan.exists()
    assert unknown.exists() and unknown_part.exists() and unknown_rec.exists()
    assert unadopted.exists() and live_part.exists() and active_pcm.exists() and failed_pcm.exists()
    assert layout.recording_path(done_id, 7).exists()  # has a row
    assert report.files_deleted == 2 and report.bytes_freed == 20
    assert report.unknown.files == 3 and report.unknown.bytes == 30
    assert report.unknown.meetings == ("eeeeeeeeeeeeeeee", "ffffffffffffffff")


async def test_retention_deletes_old_recordings_and_their_files(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    cleaner = Cleaner(store, layout)
    with freeze_time(T0) as frozen:
        old_id, _ = await promoted_meeting(store, layout)
        frozen.move_to(T0 + timedelta(days=8))
        new_id, _ = await promoted_meeting(store, layout)
        frozen.move_to(T0 + timedelta(days=10))
        forever = await cleaner.run(temp_ttl_s=1e9, retention_days=0)
        assert forever.recordings_deleted == 0
        report = await cleaner.run(temp_ttl_s=1e9, retention_days=7)
    assert report.recordings_deleted == 1
    assert await store.recordings_for_meeting(old_id) == []
    assert not layout.recording_path(old_id, 7).exists()
    assert len(await store.recordings_for_meeting(new_id)) == 1
    assert layout.recording_path(new_id, 7).exists()


async def test_bad_arguments_change_nothing(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    mid, pcm = await promoted_meeting(store, layout)
    with pytest.raises(ValueError, match="must not be negative"):
        await Cleaner(store, layout).run(temp_ttl_s=-1, retention_days=0)
    assert pcm.exists() and len(await store.get_temp_recordings_for_meeting(mid)) == 1


async def test_the_recorder_cleans_up_when_its_owner_asks_and_only_then(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    mid, pcm = await promoted_meeting(store, layout, failed_chunk=True)
    orphan = touch(layout.mp3_path(mid, 7, 9), b"x", at=time.time() - 10)
    rec = Recorder(store=store, data_dir=tmp_path, workers=1)
    await rec.start()
    try:
        assert orphan.exists()  # starting cleans nothing: the owner schedules the cleanup
        report = await rec.cleanup(temp_ttl_s=5.0)
    finally:
        await rec.close()
    assert not orphan.exists()
    assert report.files_deleted == 1 and report.bytes_freed == 1
    assert pcm.exists()  # its row is younger than the TTL (5 s)


async def test_retention_per_guild_keeps_what_each_guild_asked_for(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)

    async def recording(guild_id: int) -> Path:
        m = await store.create_meeting(guild_id=guild_id, channel_id=2, started_by=3)
        await store.set_meeting_status(m.id, MeetingStatus.STOPPING)
        path = touch(layout.recording_path(m.id, 7), b"m" * 50, at=time.time())
        await store.promote_temp_recordings_to_persistent(
            m.id, [NewRecording(RecordingKind.PER_USER, 7, path.name, str(path), 1000, "0" * 64, 50)])
        return path

    with freeze_time(T0) as frozen:
        paths = {g: await recording(g) for g in (1, 2, 3, 4)}
        frozen.move_to(T0 + timedelta(days=10))
        report = await Cleaner(store, layout).run(temp_ttl_s=1e9, retention_days={1: 7, 2: 30, 3: 0})
    assert report.recordings_deleted == 1 and report.bytes_freed == 50
    assert not paths[1].exists()  # 10 days old, guild 1 keeps 7
    assert paths[2].exists() and paths[3].exists() and paths[4].exists()  # 30 days, forever, not set
    assert {r.guild_id for g in (1, 2, 3, 4) for r in (await store.list_recordings(g))[0]} == {2, 3, 4}


@pytest.mark.parametrize("retention", [-1, {1: -3}, {1: 1.5}])
async def test_a_bad_retention_changes_nothing(store, tmp_path: Path, retention) -> None:
    layout = Layout(tmp_path)
    mid, pcm = await promoted_meeting(store, layout)
    with pytest.raises(ValueError):
        await Cleaner(store, layout).run(temp_ttl_s=0, retention_days=retention)
    assert pcm.exists() and len(await store.recordings_for_meeting(mid)) == 1
