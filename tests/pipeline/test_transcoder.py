"""The transcode queue: the store's QUEUED rows, encoded by a bounded pool, with retries."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from chunkrecorder.audio import mp3
from chunkrecorder.objects import TranscodeStatus
from chunkrecorder.pipeline.encode_worker import EncodeJob, encode
from chunkrecorder.pipeline.paths import Layout
from chunkrecorder.pipeline.transcoder import RetryPolicy, Transcoder
from chunkrecorder.store import SqlRecordingService
from tests.support.pipeline import encode_but_die_once, queued_chunks, wait_for
from tests.support.signals import read_pcm


@pytest.fixture
async def store(tmp_path: Path):
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as s:
        yield s


async def settled(store, meeting_id: str) -> bool:
    """Every chunk DONE and cleaned, or FAILED for good (a retry never shows as FAILED)."""
    rows = await store.get_temp_recordings_for_meeting(meeting_id)
    return all(r.cleaned or r.transcode_status is TranscodeStatus.FAILED for r in rows)


async def test_queued_chunks_become_verified_mp3s_and_their_pcm_goes(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    session, speakers, length = await queued_chunks(store, layout, users=(1, 2), seconds=2.5)
    before = await store.get_temp_recordings_for_meeting(session.meeting.id)
    pcm = {r.id: read_pcm(r.pcm_path) for r in before}
    seen = []
    tc = Transcoder(store, workers=2, on_settled=seen.append)
    await tc.start()
    try:
        tc.wake()
        await wait_for(lambda: len(seen) == len(before))  # told after DONE, PCM gone, cleaned
    finally:
        await tc.close()
    rows = await store.get_temp_recordings_for_meeting(session.meeting.id)
    assert len(rows) == len(before) == 6
    for r in rows:
        assert r.transcode_status is TranscodeStatus.DONE and r.cleaned and r.attempts == 1
        assert not Path(r.pcm_path).exists()
        data = Path(r.mp3_path).read_bytes()
        assert r.sha256 == hashlib.sha256(data).hexdigest()
        frames = mp3.frames_for(r.sample_count)
        assert mp3.count_frames(data) == frames
        assert r.duration_ms == round(frames * mp3.FRAME * 1000 / 48_000)
        decoded = mp3.decode(data, channels=1)[:, 0].astype(np.float64)
        body = pcm[r.id][r.prime_samples : r.prime_samples + r.sample_count, 0].astype(np.float64)
        err = decoded[: len(body)] - body
        assert 10 * np.log10(np.dot(body, body) / np.dot(err, err)) > 15  # the chunk's own audio


async def test_a_failing_encoder_is_retried_with_backoff_until_it_succeeds(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    session, _, _ = await queued_chunks(store, layout, seconds=1.0)
    (row,) = await store.get_temp_recordings_for_meeting(session.meeting.id)
    calls: list[float] = []
    lock = threading.Lock()

    def flaky(job: EncodeJob):
        with lock:
            calls.append(time.monotonic())
            n = len(calls)
        if n <= 2:
            raise RuntimeError(f"encoder crashed (attempt {n})")
        return encode(job)

    policy = RetryPolicy(max_attempts=5, base_delay_s=0.2, max_delay_s=5)
    tc = Transcoder(store, workers=1, executor="thread", encoder=flaky, retry=policy)
    await tc.start()
    try:
        tc.wake()
        mid_states = []
        async def done() -> bool:
            r = await store.get_temp_recording(row.id)
            mid_states.append((r.transcode_status, r.last_error))
            assert r.transcode_status is not TranscodeStatus.FAILED  # retries never look settled
            return r.cleaned
        await wait_for(done, timeout_s=20)
    finally:
        await tc.close()
    final = await store.get_temp_recording(row.id)
    assert final.attempts == 3 and final.last_error is None and final.cleaned
    assert any(s is TranscodeStatus.QUEUED and e and "attempt 1" in e for s, e in mid_states)
    assert calls[1] - calls[0] >= 0.2 - 0.02  # backoff 0.2 s, then 0.4 s
    assert calls[2] - calls[1] >= 0.4 - 0.02


async def test_a_chunk_that_never_encodes_ends_failed_with_its_error_and_keeps_its_pcm(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    session, _, _ = await queued_chunks(store, layout, seconds=1.0)
    (row,) = await store.get_temp_recordings_for_meeting(session.meeting.id)
    with open(row.pcm_path, "ab") as fh:
        fh.write(b"\x00")  # a torn sample: the real encoder refuses it
    tc = Transcoder(store, workers=1, retry=RetryPolicy(max_attempts=3, base_delay_s=0.05))
    await tc.start()
    try:
        tc.wake()
        await wait_for(lambda: settled(store, session.meeting.id))
    finally:
        await tc.close()
    failed = await store.get_temp_recording(row.id)
    assert failed.transcode_status is TranscodeStatus.FAILED
    assert failed.attempts == 3
    assert "EncodeError" in failed.last_error and "whole" in failed.last_error
    assert Path(row.pcm_path).exists() and not failed.cleaned
    assert not Path(row.pcm_path).with_suffix(".mp3").exists()


async def test_a_dead_worker_process_is_replaced_and_its_job_retried(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    session, _, _ = await queued_chunks(store, layout, seconds=1.0)
    (row,) = await store.get_temp_recordings_for_meeting(session.meeting.id)
    tc = Transcoder(store, workers=1, encoder=encode_but_die_once,
                    retry=RetryPolicy(max_attempts=3, base_delay_s=0.05))
    await tc.start()
    try:
        tc.wake()
        await wait_for(lambda: settled(store, session.meeting.id), timeout_s=30)
    finally:
        await tc.close()
    done = await store.get_temp_recording(row.id)
    assert done.transcode_status is TranscodeStatus.DONE and done.attempts == 2
    assert Path(row.pcm_path).with_suffix(".died").exists()


async def test_the_pool_is_bounded(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    session, _, _ = await queued_chunks(store, layout, users=(1, 2, 3), seconds=3.0)
    running = peak = 0
    lock = threading.Lock()

    def counting(job: EncodeJob):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.05)
            return encode(job)
        finally:
            with lock:
                running -= 1

    tc = Transcoder(store, workers=2, executor="thread", encoder=counting)
    await tc.start()
    try:
        tc.wake()
        await wait_for(lambda: settled(store, session.meeting.id))
    finally:
        await tc.close()
    assert peak == 2
    assert (await store.chunk_counts(session.meeting.id)).done == 9


async def test_close_leaves_claimed_rows_for_recovery(store, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    session, _, _ = await queued_chunks(store, layout, seconds=1.0)
    started = threading.Event()
    release = threading.Event()

    def slow(job: EncodeJob):
        started.set()
        release.wait(10)
        return encode(job)

    tc = Transcoder(store, workers=1, executor="thread", encoder=slow)
    await tc.start()
    tc.wake()
    await asyncio.to_thread(started.wait, 10)
    closing = asyncio.create_task(tc.close())
    await asyncio.sleep(0.05)
    release.set()
    await closing
    (row,) = await store.get_temp_recordings_for_meeting(session.meeting.id)
    assert row.transcode_status is TranscodeStatus.IN_PROGRESS  # nobody will finish it now…
    assert await store.requeue_in_progress() == 1  # …so recovery puts it back in the queue
    assert Path(row.pcm_path).exists()
