"""Promotion: a stopped (or interrupted) meeting's chunks become its recordings.

1. adopt chunk files that lost their row (cheap, and makes promotion self-repairing);
2. wait for the meeting's QUEUED/IN_PROGRESS chunks, reporting progress, up to a timeout;
3. assemble the tracks to the end (most of each track was assembled while recording);
4. rename each complete ``.part`` to its final name and describe it (sha256, size, duration);
   every file gets its tags (``tagging``: title, speaker, server, date, track number;
   the mix of a meeting with notes also their chapters), written before the rows so a
   row's sha256 and size are the tagged file's, and the notes become ``labels.txt``;
5. one transaction: ``recordings`` rows in, temp rows out (unless kept), meeting PROMOTED;
6. remove the meeting's chunk folder.

Every step is idempotent, so a promotion interrupted at any point is simply run
again and yields the same files and rows; a PROMOTED meeting returns its recordings.

Missing audio is never silent without saying so. A chunk that failed for good, or
that is still failing (a transient error, retried with backoff) when the wait's
deadline comes and nothing else is left to wait for, becomes silence of its length
(the file keeps its length and sync) recorded as a *gap* (``gaps``), counted in
``failed_chunks`` and listed in the result; its row and PCM are kept, the transcoder
goes on retrying a transient failure, and ``repair`` (or any later promotion of the
finished meeting) splices the encoded chunk into the file (``repair.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Optional, Sequence, Union

from ..objects.records import Meeting, MeetingStatus, Note
from ..objects.results import NewGap, NewRecording, Phase, Progress, PromotionResult, RepairResult, TrackAssembly
from ..store.service import SqlRecordingService, StoreError
from ..utils.waiting import wait_event
from .blocking import run_blocking
from .assembler import Assembler
from .errors import PipelineError, PromotionTimeout
from . import markers, tagging
from .paths import Layout, clear_folder, remove_files, write_atomic
from .recovery import adopt_orphans, expected_frames, settle_length
from .repair import Repairer

__all__ = [
    "write_labels",
    "Progress",
    "ProgressCallback",
    "PromotionResult",
    "Promoter",
]

log = logging.getLogger("red.chunkrecorder.pipeline.promoter")
#: Tracks tagged at once at promotion (each a copy, a sync and a hash: mostly waiting on the disk).
_TAG_THREADS = 4



ProgressCallback = Callable[[Progress], Union[Awaitable[None], None]]


async def report(progress: Optional[ProgressCallback], phase: Phase, done: int, total: int) -> None:
    """Call the progress callback; a failing callback (a Discord edit) never stops promotion."""
    if progress is None:
        return
    try:
        result = progress(Progress(phase, done, total))
        if inspect.isawaitable(result):
            await result
    except Exception:  # noqa: BLE001
        log.exception("progress callback failed")


async def write_labels(layout: Layout, meeting_id: str, notes: Sequence[Note]) -> Optional[Path]:
    """The meeting's Audacity label track from its notes (removed when it has none left)."""
    path = layout.labels_path(meeting_id)
    if not notes:
        await run_blocking(remove_files, [path])
        return None
    await run_blocking(write_atomic, path, markers.labels_text(notes).encode("utf-8"))
    return path


class Promoter:
    """Drives one meeting from STOPPING/INTERRUPTED/FAILED to PROMOTED."""

    def __init__(
        self,
        store: SqlRecordingService,
        layout: Layout,
        assembler: Assembler,
        *,
        changes: Callable[[], asyncio.Event],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._layout = layout
        self._assembler = assembler
        self._changes = changes
        self._wake = wake  # the transcoder: chunks were re-queued
        self._locks: dict[str, asyncio.Lock] = {}
        self.repairer = Repairer(store, layout)
        #: Display names for the tags (the owner's, through ``Recorder.names``); None: ids only.
        self.names: Optional[tagging.NameSource] = None

    def busy(self, meeting_id: str) -> bool:
        """Whether a promotion of the meeting is running (or waiting for the running one)."""
        lock = self._locks.get(meeting_id)
        return lock is not None and lock.locked()

    @contextlib.asynccontextmanager
    async def exclusive(self, meeting_id: str) -> AsyncIterator[None]:
        """Hold off promotions of a meeting (its deletion); refuses while one runs.

        A promotion asked for meanwhile waits, then finds the meeting gone (``NotFound``).
        """
        if self.busy(meeting_id):
            raise PipelineError(f"Meeting `{meeting_id}` is being finished right now; try again when it is done.")
        lock = self._locks.setdefault(meeting_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked():
                self._locks.pop(meeting_id, None)

    async def promote(
        self, meeting_id: str, *, progress: Optional[ProgressCallback] = None, timeout_s: float = 300.0
    ) -> PromotionResult:
        """One promotion per meeting at a time; a second caller waits and gets the same result."""
        lock = self._locks.setdefault(meeting_id, asyncio.Lock())
        try:
            async with lock:
                return await self._promote(meeting_id, progress, timeout_s)
        finally:
            if not lock.locked():
                self._locks.pop(meeting_id, None)

    async def _promote(
        self, meeting_id: str, progress: Optional[ProgressCallback], timeout_s: float
    ) -> PromotionResult:
        store = self._store
        meeting = await store.get_meeting(meeting_id)
        if meeting.status is MeetingStatus.PROMOTED:
            await self.repairer.splice_ready(meeting)  # gaps whose chunk got encoded since
            try:
                await run_blocking(self._clear_chunks, meeting_id, await self._kept_files(meeting_id))
            except OSError as exc:
                log.warning("meeting %s: chunk folder not removed: %s", meeting_id, exc)
            await report(progress, "done", 1, 1)
            return await self._result(meeting)
        if meeting.status is MeetingStatus.ACTIVE:
            raise PipelineError(f"Meeting `{meeting_id}` is still being recorded; stop it first.")
        if meeting.status is MeetingStatus.FAILED:
            meeting = await store.set_meeting_status(meeting_id, MeetingStatus.STOPPING)
        await adopt_orphans(store, self._layout, meeting)
        if meeting.length_samples is None:
            await settle_length(store, meeting)
            meeting = await store.get_meeting(meeting_id)
        await self._wait(meeting_id, progress, timeout_s)
        try:
            return await self._finish(meeting_id, progress)
        except (PipelineError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("promotion of meeting %s failed", meeting_id)
            note = f"promotion failed: {type(exc).__name__}: {exc}"
            try:
                await store.set_meeting_status(meeting_id, MeetingStatus.FAILED, note=note)
            except (StoreError, ValueError):
                pass  # already PROMOTED (the failure came after the rows), or gone
            raise PipelineError(
                f"Could not finish meeting `{meeting_id}` ({type(exc).__name__}: {exc}). "
                f"Nothing was lost; an admin can run promote again."
            ) from exc

    async def _wait(self, meeting_id: str, progress: Optional[ProgressCallback], timeout_s: float) -> None:
        """Until no chunk that is not a gap is pending; at the deadline, chunks that are
        all failing become gaps, and anything else is a :class:`PromotionTimeout`."""
        deadline = time.monotonic() + timeout_s
        total: Optional[int] = None
        last = -1
        while True:
            changed = self._changes()
            counts = await self._store.chunk_counts(meeting_id)
            pending = await self._store.pending_not_gap_count(meeting_id)
            if total is None:
                total = counts.total
            total = max(total, counts.total)
            done = total - pending
            if done != last:
                await report(progress, "transcoding", done, total)
                last = done
            if not pending:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if await self._give_up_failing(meeting_id):
                    return
                raise PromotionTimeout(
                    f"{pending} chunk(s) of meeting `{meeting_id}` are still being encoded. "
                    f"The recording will be finished when they are done."
                )
            await wait_event(changed, min(remaining, 1.0))

    async def _give_up_failing(self, meeting_id: str) -> bool:
        """At the deadline: if every chunk still pending has failed at least once (a disk
        that stays full, say), they become gaps and the promotion goes on (the members get
        their files now; the transcoder keeps retrying and the repair puts them in). A
        chunk merely waiting its turn (a backlog) is waited for instead: False."""
        gapped = {(g.user_id, g.seq) for g in await self._store.gaps_for_meeting(meeting_id)}
        waiting = [r for r in await self._store.pending_temp_recordings(meeting_id)
                   if (r.user_id, r.seq) not in gapped]
        if not waiting or not all(r.last_error for r in waiting):
            return False
        await self._store.add_gaps(meeting_id, [
            NewGap(r.user_id, r.seq, r.start_sample, r.sample_count, r.last_error or "") for r in waiting
        ])
        log.error("meeting %s: %d chunk(s) still failing at the deadline (%s); finished with gaps, "
                  "their audio is kept and retried", meeting_id, len(waiting), waiting[0].last_error)
        return True

    async def _finish(self, meeting_id: str, progress: Optional[ProgressCallback]) -> PromotionResult:
        store = self._store
        tracks = await store.tracks_for_meeting(meeting_id)
        await report(progress, "assembling", 0, len(tracks))
        status = await self._assembler.run(meeting_id, final=True)
        if not status.complete:
            raise PipelineError(
                f"Meeting `{meeting_id}` has chunks that are neither done nor failed; try again."
            )
        meeting = await store.get_meeting(meeting_id)
        want = expected_frames(meeting)
        tracks = await store.tracks_for_meeting(meeting_id)
        notes = await store.notes_for_meeting(meeting_id)
        pipe = await store.meeting_pipeline(meeting_id)
        async with self._assembler.lock(meeting_id):
            made_files = []
            for track in tracks:
                if want is not None and track.assembled_frames != want:
                    raise PipelineError(
                        f"Track {track.user_id} of meeting `{meeting_id}` has {track.assembled_frames} "
                        f"frames, expected {want}."
                    )
                made_files.append(await self._assembler.finalize(meeting, track, archive=pipe.archive))
            # The tags go on before the rows (a row's sha256 and size are the tagged
            # file's). Writing one is a copy, a sync and a hash of the file (~0.1 s per
            # hour of a track): the tracks are tagged side by side, so a stop waits for
            # the longest of them rather than for their sum.
            done = 0
            gate = asyncio.Semaphore(_TAG_THREADS)

            async def tag(i: int, track: TrackAssembly, made: NewRecording) -> NewRecording:
                nonlocal done
                tags = tagging.track_tags(meeting, track.user_id, track=i + 1, total=len(tracks), names=self.names)
                chapters = markers.track_chapters(meeting, track.user_id, notes)
                async with gate:
                    sha, size = await run_blocking(tagging.tag_and_describe, Path(made.path), tags, chapters)
                done += 1
                await report(progress, "assembling", done, len(tracks))
                return dataclasses.replace(made, sha256=sha, size_bytes=size)

            # every tagging ends before an error is raised: none may still be writing when a
            # re-run (or a repair) takes the meeting's lock again
            outcomes = await asyncio.gather(*(tag(i, t, m) for i, (t, m) in enumerate(zip(tracks, made_files))),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            files = [o for o in outcomes if isinstance(o, NewRecording)]
        await write_labels(self._layout, meeting_id, notes)
        # the gaps' chunk rows stay (and every row, if kept for audit)
        await store.promote_temp_recordings_to_persistent(
            meeting_id, files, length_samples=meeting.length_samples, keep_temp=pipe.keep_temp
        )
        try:
            await run_blocking(self._clear_chunks, meeting_id, await self._kept_files(meeting_id))
        except OSError as exc:  # the recordings are done; leftovers go with the cleanup job
            log.warning("meeting %s promoted, but its chunk folder was not removed: %s", meeting_id, exc)
        self._assembler.forget(meeting_id)
        meeting = await store.get_meeting(meeting_id)
        await report(progress, "done", len(tracks), len(tracks))
        return await self._result(meeting)

    async def _kept_files(self, meeting_id: str) -> set[str]:
        """Files of the chunk rows a promotion keeps (the gaps' chunks, for the repair)."""
        out: set[str] = set()
        for r in await self._store.get_temp_recordings_for_meeting(meeting_id):
            out.add(r.pcm_path)
            out.add(r.mp3_path or r.pcm_path[: -len(".pcm")] + ".mp3")
            out.add(r.pcm_path[: -len(".pcm")] + ".flac")  # a FLAC meeting's chunk body
        return out

    async def _result(self, meeting: Meeting) -> PromotionResult:
        recordings = await self._store.recordings_for_meeting(meeting.id)
        notes = await self._store.notes_for_meeting(meeting.id)
        labels = self._layout.labels_path(meeting.id)
        has_labels: bool = bool(notes) and await run_blocking(labels.is_file)
        gaps = await self._store.gaps_for_meeting(meeting.id)
        length = meeting.length_samples or 0
        return PromotionResult(
            meeting=meeting,
            recordings=recordings,
            failed_chunks=len(gaps),
            length_ms=round(length * 1000 / meeting.sample_rate),
            notes=tuple(notes),
            labels_path=str(labels) if has_labels else None,
            gaps=tuple(gaps),
        )

    def _clear_chunks(self, meeting_id: str, keep: set[str]) -> None:
        """Delete the meeting's chunk folder except the chunks kept for a repair (worker thread).

        The recordings hold the rest of its audio now (their rows committed first).
        """
        clear_folder(self._layout.meeting_dir(meeting_id), keep=keep)

    # ------------------------------------------------------------------ repair
    async def repair(
        self, meeting_id: str, *, timeout_s: float = 300.0, progress: Optional[ProgressCallback] = None
    ) -> RepairResult:
        """An admin's repair of a finished meeting: every gap's chunk is encoded again now
        (waiting up to ``timeout_s``), and what got encoded is spliced into the files."""
        lock = self._locks.setdefault(meeting_id, asyncio.Lock())
        try:
            async with lock:
                meeting = await self._store.get_meeting(meeting_id)
                if meeting.status is not MeetingStatus.PROMOTED:
                    raise PipelineError(f"Meeting `{meeting_id}` is not finished yet, so promote it first.")
                before = await self._store.gaps_for_meeting(meeting_id)
                await self._store.requeue_gap_chunks(meeting_id)
                self._wake()
                await self._wait_gap_chunks(meeting_id, progress, timeout_s)
                repaired = await self.repairer.splice_ready(meeting)
                await run_blocking(self._clear_chunks, meeting_id, await self._kept_files(meeting_id))
                remaining = await self._store.gaps_for_meeting(meeting_id)
                await report(progress, "done", len(before) - len(remaining), len(before))
                return RepairResult(
                    meeting=await self._store.get_meeting(meeting_id), repaired=tuple(repaired),
                    remaining=tuple(remaining), recordings=await self._store.recordings_for_meeting(meeting_id),
                )
        finally:
            if not lock.locked():
                self._locks.pop(meeting_id, None)

    async def _wait_gap_chunks(
        self, meeting_id: str, progress: Optional[ProgressCallback], timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            changed = self._changes()
            chunks = await self._store.gap_chunks(meeting_id)
            pending = sum(1 for c in chunks if c.pending)
            await report(progress, "transcoding", len(chunks) - pending, len(chunks))
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return  # what is still failing stays a gap, retried in the background
            await wait_event(changed, min(remaining, 1.0))

    async def splice_ready(self, meeting_id: str) -> None:
        """A gap's chunk of a finished meeting got encoded: put it in its file now."""
        lock = self._locks.setdefault(meeting_id, asyncio.Lock())
        try:
            async with lock:
                meeting = await self._store.get_meeting(meeting_id)
                if meeting.status is MeetingStatus.PROMOTED:
                    await self.repairer.splice_ready(meeting)
        finally:
            if not lock.locked():
                self._locks.pop(meeting_id, None)
