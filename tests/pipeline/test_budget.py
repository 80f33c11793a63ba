"""The bot-wide audio budget (issue 8): memory for live audio is bounded whatever the
guilds choose. A meeting that cannot fit one more speaker is refused in one sentence; in
a live meeting a speaker who does not fit is not recorded (counted, and said in the
snapshot) while everyone else is, whole; a disk that refuses writes cannot make the
sessions hold more than the budget."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
from pyfakefs.fake_filesystem_unittest import Patcher

from chunkrecorder.objects import MeetingSettings, PipelineError
from chunkrecorder.pipeline import Recorder
from chunkrecorder.pipeline.budget import AudioBudget, speaker_cost
from chunkrecorder.pipeline.paths import Layout
from chunkrecorder.pipeline.session import RecordingSession
from chunkrecorder.store import SqlRecordingService
from tests.store.test_errors import assert_one_sentence
from tests.support.pipeline import Clock, Speaker, play
from tests.support.signals import RATE, decode_file, snr_db, speech_like

SETTINGS = MeetingSettings(flush_interval_s=1.0)
COST = speaker_cost(1.0, 1)


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=tmp_path, workers=1, executor="thread", audio_budget_bytes=2 * COST)
        await rec.start()
        try:
            yield rec
        finally:
            await rec.close()


def test_a_speaker_costs_three_windows_of_samples() -> None:
    assert speaker_cost(10.0, 1) == 3 * 480_384 * 2
    assert speaker_cost(60.0, 2) == 3 * 2_880_000 * 2 * 2  # the cap, stereo: 34.6 MB


async def test_a_speaker_over_the_budget_is_refused_and_counted_the_others_are_whole(recorder: Recorder) -> None:
    clock = Clock()
    session = await recorder.start_meeting(guild_id=1, channel_id=2, started_by=3, settings=SETTINGS, clock=clock)
    speakers = [Speaker(u, speech_like(2.5, seed=u)) for u in (1, 2, 3)]
    await play(session, clock, speakers, until_s=2.5, tick=recorder.tick)
    snap = session.snapshot()
    assert snap.speakers == (1, 2) and snap.speakers_over_budget == (3,)
    assert snap.frames_over_budget == speakers[2].n_frames  # every frame of theirs, counted
    assert recorder.budget.reserved == 2 * COST and recorder.budget.refused == 1
    assert recorder.budget.held <= recorder.budget.limit

    with pytest.raises(PipelineError) as refused:
        await recorder.start_meeting(guild_id=1, channel_id=5, started_by=3, settings=SETTINGS, clock=clock)
    assert_one_sentence(str(refused.value))
    assert "memory budget for live audio" in str(refused.value)

    result = await recorder.stop_meeting(session.meeting.id)
    assert recorder.budget.reserved == 0 and recorder.budget.held == 0
    assert sorted(r.user_id for r in result.recordings if r.user_id) == [1, 2]
    length = int(2.5 * RATE)
    for sp in speakers[:2]:
        path = next(r.path for r in result.recordings if r.user_id == sp.user_id)
        assert snr_db(decode_file(path), sp.expected(length).astype(np.float64)) > 15
    # room again once it ended
    other = await recorder.start_meeting(guild_id=1, channel_id=5, started_by=3, settings=SETTINGS, clock=clock)
    await recorder.stop_meeting(other.meeting.id)


DATA = Path("/srv/chunkrecorder")


async def test_a_full_disk_cannot_make_the_sessions_hold_more_than_the_budget(tmp_path: Path) -> None:
    """Unwritten windows are held for a retry only while the buffers stay within the
    budget; past it the oldest is given up (counted), well before the backlog limit."""
    budget = AudioBudget(COST + 2 * COST // 3)  # one speaker, plus two more windows
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as store:
        with Patcher(allow_root_user=False) as patcher:
            patcher.fs.create_dir(DATA)
            meeting = await store.create_meeting(guild_id=1, channel_id=2, started_by=3, flush_interval_s=1.0)
            clock = Clock()
            session = RecordingSession(meeting=meeting, settings=SETTINGS, store=store, layout=Layout(DATA),
                                       clock=clock, budget=budget, max_backlog_windows=6)
            patcher.fs.set_disk_usage(50_000)  # not one window fits
            await play(session, clock, [Speaker(1, speech_like(8.0, seed=1))], until_s=8.0)
            snap = session.snapshot()
            assert snap.windows_lost >= 3 and snap.flush_errors > 0
            assert budget.held <= budget.limit + COST // 3  # at most one block over, never a backlog of six
            assert snap.buffered_bytes <= budget.limit + COST // 3


async def test_a_finished_meeting_leaves_nothing_of_itself_in_the_recorders_memory(recorder: Recorder) -> None:
    """Issue 8: per-meeting maps (stop locks, the encoder's settings per meeting, assembly
    state) grew with every meeting a bot ever recorded."""
    for channel in range(3):
        clock = Clock()
        session = await recorder.start_meeting(guild_id=1, channel_id=10 + channel, started_by=3,
                                               settings=SETTINGS, clock=clock)
        await play(session, clock, [Speaker(1, speech_like(1.5, seed=1))], until_s=1.5, tick=recorder.tick)
        mid = session.meeting.id
        await recorder.stop_meeting(mid)
        await recorder.wait_idle()
        assert mid not in recorder._stop_locks and mid not in recorder.transcoder._params
        assert mid not in recorder.assembler._locks and not any(k[0] == mid for k in recorder.assembler._hashes)
        assert mid not in recorder.promoter._locks and mid not in recorder._assembling
    assert recorder.budget.reserved == 0 and recorder.budget.held == 0
