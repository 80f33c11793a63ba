"""Removal through the ``Recorder``: deleting a meeting or a recording, erasing a member.

Real recordings (frames in, the real encoder, promotion) in a real store and data
directory. What a user would notice is checked on the disk itself: after a deletion no
file of the meeting is left anywhere under the data dir, and the bytes the report says
were freed are the bytes the files held before; after an erasure nothing of the member
is left but the mixes, which are untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from chunkrecorder.objects import MeetingSettings, MeetingStatus, NotFound, RecordingKind, Strategy
from chunkrecorder.pipeline import PipelineError, PromotionTimeout, Recorder, RetryPolicy
from chunkrecorder.pipeline.encode_worker import EncodeJob, encode
from chunkrecorder.store import SqlRecordingService
from tests.support.pipeline import Clock, Speaker, play, wait_for
from tests.support.signals import speech_like

DB = "chunkrecorder.sqlite3"
GUILD = 1


async def open_recorder(data: Path, **kw: object) -> Recorder:
    store = await SqlRecordingService(data / DB).open()
    rec = Recorder(store=store, data_dir=data, workers=kw.pop("workers", 2), **kw)  # type: ignore[arg-type]
    await rec.start()
    return rec


async def close_recorder(rec: Recorder) -> None:
    await rec.close()
    await rec.store.close()


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    rec = await open_recorder(tmp_path)
    try:
        yield rec
    finally:
        await close_recorder(rec)


async def record(rec: Recorder, users: tuple[int, ...], seconds: float, *, channel_id: int = 2,
                 clock: Clock | None = None):
    clock = clock or Clock()
    session = await rec.start_meeting(guild_id=GUILD, channel_id=channel_id, started_by=3, clock=clock,
                                      settings=MeetingSettings(flush_interval_s=1.0, strategy=Strategy.HYBRID))
    speakers = [Speaker(u, speech_like(seconds, seed=u)) for u in users]
    await play(session, clock, speakers, until_s=seconds, tick=rec.tick)
    return session, clock


def files_under(data: Path, match: Callable[[Path], bool]) -> dict[Path, int]:
    """Every file under the data dir that ``match`` picks, with its size."""
    return {p: p.stat().st_size for p in data.rglob("*") if p.is_file() and match(p)}


def of_meeting(mid: str) -> Callable[[Path], bool]:
    """Its audio files (its manifest, ``meetings/<id>.json``, holds no audio and is checked apart)."""
    return lambda p: (mid in p.name or p.parent.name == mid) and p.suffix != ".json"


def of_user(user_id: int) -> Callable[[Path], bool]:
    """A per-user recording or ``.part`` file, or a chunk file (``<user>_<seq>.pcm|mp3``)."""
    return lambda p: f"_{user_id}.mp3" in p.name or p.name.startswith(f"{user_id}_")


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- meetings
async def test_deleting_a_finished_meeting_removes_every_file_and_says_what_it_freed(recorder: Recorder) -> None:
    session, _ = await record(recorder, (1, 2), 2.5)
    mid = session.meeting.id
    result = await recorder.stop_meeting(mid)
    other, _ = await record(recorder, (1,), 1.5, channel_id=5)
    kept = await recorder.stop_meeting(other.meeting.id)
    data = recorder.layout.data_dir
    before = files_under(data, of_meeting(mid))
    assert {Path(r.path) for r in result.recordings} <= set(before) and len(before) == 3

    report = await recorder.delete_meeting(mid, guild_id=GUILD)

    assert files_under(data, of_meeting(mid)) == {}
    assert not recorder.layout.meeting_dir(mid).exists()
    assert not recorder.layout.manifest_path(mid).exists()  # no adoption can bring it back
    assert report.files == len(before) and report.bytes_freed == sum(before.values())
    assert report.rows == 1 + len(result.recordings)  # the meeting and its recordings (chunks went at promotion)
    with pytest.raises(NotFound):
        await recorder.library.get_meeting(mid)
    assert await recorder.library.recordings_for_meeting(mid) == []
    assert all(Path(r.path).exists() and sha(r.path) == r.sha256 for r in kept.recordings)  # the other meeting stays


def window_1_of_user_1_never_encodes(job: EncodeJob):
    if Path(job.pcm_path).name == "1_1.pcm":
        raise RuntimeError("this chunk never encodes")
    return encode(job)


async def test_deleting_an_interrupted_meeting_removes_its_chunks_and_half_built_tracks(tmp_path: Path) -> None:
    # A chunk that fails for good holds its track's assembly back, so the chunk folder
    # keeps PCMs and MP3s and the tracks stay .part files: the state a crash leaves.
    kw = dict(workers=1, executor="thread", encoder=window_1_of_user_1_never_encodes,
              retry=RetryPolicy(1, 0.01, 0.01))
    rec = await open_recorder(tmp_path, **kw)
    session, _ = await record(rec, (1, 2), 3.4)
    mid = session.meeting.id
    await close_recorder(rec)  # shut down mid-meeting: INTERRUPTED

    rec = await open_recorder(tmp_path, **kw)
    try:
        assert (await rec.start()).awaiting_promotion == (mid,)
        await rec.wait_idle()  # nothing changes under us from here
        before = files_under(tmp_path, of_meeting(mid))
        names = {p.name for p in before}
        assert {"1_1.pcm", "1_2.mp3", f"recording_{mid}_1.mp3.part", f"recording_{mid}_mix.mp3.part"} <= names
        chunk_rows = len(await rec.store.get_temp_recordings_for_meeting(mid))

        report = await rec.delete_meeting(mid, guild_id=GUILD)

        assert files_under(tmp_path, of_meeting(mid)) == {}
        assert report.files == len(before) and report.bytes_freed == sum(before.values())
        assert report.rows == 1 + chunk_rows
        with pytest.raises(NotFound):
            await rec.promote(mid)  # nothing is left to finish
    finally:
        await close_recorder(rec)


async def test_a_meeting_is_not_deleted_while_recording_or_from_another_guild(recorder: Recorder) -> None:
    session, _ = await record(recorder, (1,), 2.2)
    mid = session.meeting.id
    with pytest.raises(PipelineError, match="being recorded right now"):
        await recorder.delete_meeting(mid, guild_id=GUILD)
    result = await recorder.stop_meeting(mid)
    with pytest.raises(NotFound):
        await recorder.delete_meeting(mid, guild_id=GUILD + 1)
    assert (await recorder.library.get_meeting(mid)).status is MeetingStatus.PROMOTED
    assert all(Path(r.path).exists() for r in result.recordings)


async def test_a_meeting_being_finished_is_not_deleted_until_it_is_done(tmp_path: Path) -> None:
    gate = threading.Event()

    def slow(job: EncodeJob):
        gate.wait(30)  # the encoders are far behind
        return encode(job)

    promoted: list = []
    rec = await open_recorder(tmp_path, workers=1, executor="thread", encoder=slow, retry=RetryPolicy(),
                              on_promoted=promoted.append)
    try:
        session, _ = await record(rec, (1,), 2.0)
        mid = session.meeting.id
        with pytest.raises(PromotionTimeout):
            await rec.stop_meeting(mid, timeout_s=0.2)  # now finished in the background
        with pytest.raises(PipelineError, match="being finished right now"):
            await rec.delete_meeting(mid, guild_id=GUILD)
        gate.set()
        await wait_for(lambda: bool(promoted), timeout_s=30)
        (result,) = promoted
        report = await rec.delete_meeting(mid, guild_id=GUILD)
        assert report.files == len(result.recordings) == 2
        assert files_under(tmp_path, of_meeting(mid)) == {}
    finally:
        gate.set()
        await close_recorder(rec)


async def test_deleting_one_recording_removes_its_row_and_file_only(recorder: Recorder) -> None:
    session, _ = await record(recorder, (1, 2), 1.5)
    result = await recorder.stop_meeting(session.meeting.id)
    target = next(r for r in result.recordings if r.user_id == 2)
    with pytest.raises(NotFound):
        await recorder.delete_recording(target.id, guild_id=GUILD + 1)
    assert Path(target.path).exists()
    size = Path(target.path).stat().st_size

    report = await recorder.delete_recording(target.id, guild_id=GUILD)

    assert (report.rows, report.files, report.bytes_freed) == (1, 1, size)
    assert not Path(target.path).exists()
    with pytest.raises(NotFound):
        await recorder.library.get_recording(target.id)
    rest = await recorder.library.recordings_for_meeting(session.meeting.id)
    assert {r.user_id for r in rest} == {1, None}
    assert all(sha(r.path) == r.sha256 for r in rest)


# --------------------------------------------------------------------------- erasure
async def test_erasure_removes_everything_of_the_member_but_the_mixes(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path)
    finished, _ = await record(rec, (1, 2), 2.5)
    done = await rec.stop_meeting(finished.meeting.id)
    unfinished, _ = await record(rec, (1, 2), 3.4, channel_id=5)
    await close_recorder(rec)  # the second meeting is INTERRUPTED with chunks and .part files of both

    rec = await open_recorder(tmp_path)
    try:
        await rec.wait_idle()
        theirs = files_under(tmp_path, of_user(2))
        assert Path(next(r.path for r in done.recordings if r.user_id == 2)) in theirs
        assert rec.layout.part_path(unfinished.meeting.id, 2) in theirs
        recs, temps = await rec.store.user_data(2)
        mixes = {r.path: r.sha256 for r in done.recordings if r.kind is RecordingKind.MIXED}
        mix_part = rec.layout.part_path(unfinished.meeting.id, 0)
        mix_part_bytes = mix_part.read_bytes()
        others = files_under(tmp_path, of_user(1))

        report = await rec.erase_user(2)

        assert files_under(tmp_path, of_user(2)) == {}
        assert report.files == len(theirs) and report.bytes_freed == sum(theirs.values())
        assert report.rows == len(recs) + len(temps) + 1  # + their track in the unfinished meeting
        assert await rec.store.user_data(2) == ([], [])
        assert all(sha(path) == digest for path, digest in mixes.items())  # mixes stay as they were
        assert mix_part.read_bytes() == mix_part_bytes
        assert files_under(tmp_path, of_user(1)) == others  # nobody else loses anything
        result = await rec.promote(unfinished.meeting.id)
        assert {r.user_id for r in result.recordings} == {1, None}
        assert files_under(tmp_path, of_user(2)) == {}
    finally:
        await close_recorder(rec)


async def test_erasure_while_recording_drops_the_buffered_audio_and_refuses_the_rest(recorder: Recorder) -> None:
    session, clock = await record(recorder, (1, 2), 2.3)
    await recorder.erase_user(2)
    assert 2 not in session.snapshot().speakers
    refused = session.snapshot().frames_refused
    late = Speaker(2, speech_like(4.0, seed=2))
    for i in range(115, 150):
        session.feed(late.frame(i, session.t0))
    clock.t = session.t0 + 3.0
    await recorder.tick()
    assert session.snapshot().frames_refused == refused + 35
    result = await recorder.stop_meeting(session.meeting.id)
    assert {r.user_id for r in result.recordings} == {1, None}
    assert files_under(recorder.layout.data_dir, of_user(2)) == {}


async def test_an_erasure_returns_only_after_an_encode_of_theirs_already_running_has_ended(tmp_path: Path) -> None:
    """The rows go first, the files after: an encode that was running when the rows went
    still writes its MP3, and the erasure must not return before it (nor leave it)."""
    gate, started, ended = threading.Event(), threading.Event(), threading.Event()

    def slow_for_user_2(job: EncodeJob):
        if not Path(job.pcm_path).name.startswith("2_") or started.is_set():
            return encode(job)
        started.set()
        gate.wait(30)
        try:
            return encode(job)
        finally:
            ended.set()

    rec = await open_recorder(tmp_path, workers=1, executor="thread", encoder=slow_for_user_2)
    try:
        session, _ = await record(rec, (1, 2), 2.3)
        await wait_for(started.is_set, timeout_s=30)
        erase = asyncio.create_task(rec.erase_user(2))
        encode_had_ended: list[bool] = []
        erase.add_done_callback(lambda _: encode_had_ended.append(ended.is_set()))

        async def rows_gone() -> bool:
            return await rec.store.user_data(2) == ([], [])

        await wait_for(rows_gone, timeout_s=30)
        gate.set()  # the encode now writes its MP3, after its row is gone
        await erase
        assert encode_had_ended == [True]
        assert files_under(tmp_path, of_user(2)) == {}
        result = await rec.stop_meeting(session.meeting.id)
        assert {r.user_id for r in result.recordings} == {1, None}
        assert files_under(tmp_path, of_user(2)) == {}
    finally:
        gate.set()
        await close_recorder(rec)


# --------------------------------------------------------------------------- the owner's tick
async def test_tick_flushes_every_live_session_and_one_failing_session_does_not_stop_the_others(
        recorder: Recorder) -> None:
    clock = Clock()
    settings = MeetingSettings(flush_interval_s=1.0)
    a = await recorder.start_meeting(guild_id=GUILD, channel_id=2, started_by=3, settings=settings, clock=clock)
    b = await recorder.start_meeting(guild_id=GUILD, channel_id=5, started_by=3, settings=settings, clock=clock)

    async def broken(now: float | None = None) -> None:
        raise OSError("the disk went away")

    a.advance = broken  # type: ignore[method-assign]
    speakers = [Speaker(1, speech_like(2.0, seed=1))]
    await play(b, clock, speakers, until_s=2.0, tick=recorder.tick)  # a's failures are logged, not raised
    assert b.snapshot().windows_flushed == 1
    assert (await recorder.library.chunk_counts(b.meeting.id)).total == 2  # the speaker's and the mix's
    assert a.snapshot().windows_flushed == 0
    del a.advance
    await recorder.stop_meeting(a.meeting.id)
    await recorder.stop_meeting(b.meeting.id)
