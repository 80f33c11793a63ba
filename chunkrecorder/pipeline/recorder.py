"""The pipeline's one entry point for the cog, the harness, tests and the bench.

``Recorder`` is passive: it owns the pipeline's own work and nothing that runs on a
timetable. Its owner (the cog's ``tasks/``, the harness with its simulated clock, a
test, a bench) schedules the rest by calling it:

* ``tick()`` every ~0.2 s advances every live :class:`RecordingSession` once (each
  flushes the windows that are due);
* ``cleanup()`` now and then applies retention and sweeps stale files (the one
  implementation: :class:`Cleaner`);
* ``start()`` repairs what a crash left (``recover()``) and reports the interrupted
  meetings in ``awaiting_promotion``; promoting them is the owner's decision.

What it does run by itself is work it started and must see through: the
:class:`Transcoder`'s workers, the :class:`Assembler` runs kicked whenever a window is
flushed or a chunk settles (so tracks grow while the meeting runs and stop has only
the tail end left to do), and promotions that outlived a stop's wait
(:class:`PromotionTimeout`) with their ``on_promoted`` hook. Those tasks live in one
:class:`BackgroundTasks` and end with ``close()``.

It also holds the one implementation of every removal: ``erase_user`` (a member's
data), ``delete_recording`` and ``delete_meeting``, each rows first and then files
through ``paths.remove_files``, each answering with a :class:`RemovalReport`; and the
read queries the cog shows (``library``), so that the cog never imports the store.

Nothing here touches Discord. Errors meant for users are :class:`PipelineError`
(a ``StoreError``): the cog prints their message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Awaitable, Callable, Optional, Union

from ..objects.frames import MeetingSettings
from ..audio import id3
from ..objects.records import MIX_USER_ID, MeetingStatus, Note, Recording, RecordingKind, TempRecording
from ..objects.results import Gap, RemovalReport, RepairResult, UnknownFiles
from ..store.service import NotFound, SqlRecordingService
from ..utils.background import BackgroundTasks
from ..utils.waiting import wait_event
from .assembler import Assembler
from .blocking import run_blocking
from .budget import DEFAULT_BUDGET_BYTES, AudioBudget, speaker_cost
from .cleanup import Cleaner, CleanupReport, Retention, chunk_files
from .compact import CompactCopy, Compactor
from .encode_worker import encode
from .errors import FlushError, PipelineError, PromotionTimeout
from .folder_lock import DataFolderLock, FolderInUse
from .library import Library
from .manifest import remove_manifest, write_manifest
from .paths import Layout, clear_folder, folder_size, remove_files
from . import markers, tagging
from .promoter import Progress, ProgressCallback, Promoter, PromotionResult, report, write_labels
from .recovery import Recovery, RecoveryReport, settle_length
from .session import RecordingSession, SessionSnapshot
from .transcoder import ChunkEncoder, ExecutorKind, RetryPolicy, Transcoder

__all__ = [
    "Recorder",
    "RecordingSession",
    "SessionSnapshot",
    "Progress",
    "ProgressCallback",
    "PromotedHook",
    "PromotionResult",
    "RecoveryReport",
    "CleanupReport",
    "RemovalReport",
    "PipelineError",
    "PromotionTimeout",
    "FlushError",
    "FolderInUse",
    "RetryPolicy",
    "RepairResult",
]

log = logging.getLogger("red.chunkrecorder.pipeline.recorder")

#: Told about each promotion that finished in the background (after a ``PromotionTimeout``).
PromotedHook = Callable[[PromotionResult], Union[Awaitable[None], None]]

#: How long a promotion may wait for its chunks when nobody is waiting for it.
_BACKGROUND_PROMOTION_S = 24 * 3600.0
#: How long an assembly pass waits for more of a window's chunks to settle (see _kick_assembly).
ASSEMBLY_COALESCE_S = 0.25

#: Meeting statuses during which the meeting's rows and files are in use.
_BUSY = (MeetingStatus.ACTIVE, MeetingStatus.STOPPING)


class Recorder:
    """Start/stop meetings, run the queue, recover after crashes; the owner ticks and cleans.

    ``workers`` encoder processes (default: one per core); ``executor="thread"`` and
    ``encoder`` let tests inject an encoder; ``retry`` is the attempts and backoff of a
    failing chunk; ``jitter_margin_s`` how long a window waits for late frames;
    ``on_promoted`` is told about promotions that finish in the background; ``names``
    gives the display names the files' tags carry (also settable later: ``names``).
    """

    def __init__(
        self,
        *,
        store: SqlRecordingService,
        data_dir: Path,
        workers: Optional[int] = None,
        executor: ExecutorKind = "process",
        encoder: ChunkEncoder = encode,
        retry: RetryPolicy = RetryPolicy(),
        jitter_margin_s: float = 0.5,
        on_promoted: Optional[PromotedHook] = None,
        audio_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        names: Optional[tagging.NameSource] = None,
    ) -> None:
        self.store = store
        self.layout = Layout(data_dir)
        #: Held from ``start()`` (or ``recover()``) to ``close()``: one process per data folder.
        self.folder_lock = DataFolderLock(self.layout.data_dir)
        self.library = Library(store)
        #: bot-wide: the audio every live meeting holds in memory (see budget.py)
        self.budget = AudioBudget(audio_budget_bytes)
        self.on_promoted = on_promoted
        self._margin_s = jitter_margin_s
        self._changed = asyncio.Event()
        self._tasks = BackgroundTasks("chunkrecorder.recorder")
        self.transcoder = Transcoder(
            store, workers=workers, executor=executor, encoder=encoder, retry=retry,
            on_settled=self._settled, tasks=self._tasks,
        )
        self.assembler = Assembler(store, self.layout)
        self.promoter = Promoter(store, self.layout, self.assembler, changes=lambda: self._changed,
                                 wake=self.transcoder.wake)
        self.promoter.names = names
        self.cleaner = Cleaner(store, self.layout)
        self.compactor = Compactor(store, self.layout, self.transcoder)
        self._sessions: dict[str, RecordingSession] = {}
        self._assembling: dict[str, asyncio.Task[None]] = {}
        self._assembly_dirty: set[str] = set()
        self._stop_locks: dict[str, asyncio.Lock] = {}
        self._started = False
        self._recovery: Optional[RecoveryReport] = None
        #: Files of meetings the database does not know, as last counted (start-up, cleanup).
        self.unknown = UnknownFiles()

    @property
    def names(self) -> Optional[tagging.NameSource]:
        """Display names for the tags of the files promotion writes (None: ids only)."""
        return self.promoter.names

    @names.setter
    def names(self, source: Optional[tagging.NameSource]) -> None:
        self.promoter.names = source

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> RecoveryReport:
        """Take the data folder, ``recover()``, then start the encoder workers.

        Raises :class:`FolderInUse` (one sentence naming the holder) if another process
        or another ``Recorder`` owns the folder; nothing is read or changed then.
        Promotes nothing: the report's ``awaiting_promotion`` lists the interrupted
        meetings for the owner to promote.
        """
        if self._started and self._recovery is not None:
            return self._recovery
        try:
            rec = await self.recover()
            await self.transcoder.start()
        except BaseException:
            await self._release_folder()
            raise
        self.transcoder.wake()
        self._started = True
        return rec

    async def recover(self) -> RecoveryReport:
        """The start-up repairs (see ``recovery``): every row movable again, every file accounted for.

        Runs once per start: repairs assume nobody records, so once this recorder runs
        meetings of its own, a second call returns the first report instead of
        marking them interrupted.
        """
        if self._recovery is not None:
            return self._recovery
        await run_blocking(self.folder_lock.acquire)  # before anything is read: see folder_lock
        for d in (self.layout.chunks_dir, self.layout.recordings_dir):
            await run_blocking(d.mkdir, parents=True, exist_ok=True)
        await self._settle_staged()  # re-tags a crash interrupted (see _erase_notes)
        self._recovery = await Recovery(
            self.store, self.layout, max_attempts=self.transcoder.retry.max_attempts
        ).run()
        self.unknown = self._recovery.unknown
        if self._recovery.anything:
            log.warning("recovery: %s", self._recovery)
        return self._recovery

    async def tick(self, now: Optional[float] = None) -> None:
        """Advance every live session once: place the frames queued so far, flush what is due.

        The owner calls it every ~0.2 s (the cog's ticker, ``net.run(on_tick=recorder.tick)``
        in the harness). ``now`` is the sessions' clock reading (default: each session
        reads its own clock). A session's failure is logged, never raised: one meeting's
        trouble must not stop the others' flushes or the owner's loop.
        """
        sessions = list(self._sessions.values())
        if not sessions:
            return
        results = await asyncio.gather(*(s.advance(now) for s in sessions), return_exceptions=True)
        for session, result in zip(sessions, results):
            if isinstance(result, asyncio.CancelledError):
                continue
            if isinstance(result, Exception):
                log.error("advancing meeting %s failed", session.meeting.id, exc_info=result)
            elif isinstance(result, BaseException):
                raise result

    async def cleanup(self, *, temp_ttl_s: float, retention_days: Retention = 0) -> CleanupReport:
        """Retention and the janitor (see ``cleanup``); ``retention_days`` is one number of
        days for every guild or a mapping guild id → days (0 or absent: keep forever)."""
        report = await self.cleaner.run(temp_ttl_s=temp_ttl_s, retention_days=retention_days)
        self.unknown = report.unknown
        return report

    async def close(self) -> None:
        """Flush live sessions (their meetings become INTERRUPTED), stop every task and worker.

        Everything is left recoverable: the next ``start`` re-queues what was being
        encoded and lists the interrupted meetings for promotion.
        """
        for mid, session in list(self._sessions.items()):
            try:
                length = await session.finish()
                await self.store.set_meeting_status(
                    mid, MeetingStatus.INTERRUPTED, length_samples=length,
                    note="the bot shut down while recording",
                )
            except Exception:  # noqa: BLE001 - stays ACTIVE; recovery takes it from there
                log.exception("meeting %s could not be flushed at close", mid)
        self._sessions.clear()
        self.budget.reset()
        self._stop_locks.clear()
        try:
            await self._tasks.cancel_all()
            self._assembling.clear()
            self._assembly_dirty.clear()
            await self.transcoder.close()
        finally:
            self._started = False
            self._recovery = None
            # whatever failed above, this process no longer owns the folder (a reload takes it)
            self.folder_lock.release()

    async def _release_folder(self) -> None:
        await run_blocking(self.folder_lock.release)

    # ------------------------------------------------------------------ meetings
    async def start_meeting(
        self,
        *,
        guild_id: int,
        channel_id: int,
        started_by: int,
        settings: MeetingSettings,
        clock: Optional[Callable[[], float]] = None,
        accept_user: Optional[Callable[[int], bool]] = None,
    ) -> RecordingSession:
        """Create the meeting (ACTIVE) and its session; t=0 is ``clock()`` now.

        The session records from then on; it flushes when the owner calls ``tick()``.
        """
        if not self._started:
            raise PipelineError("The recorder is not running (it failed to start or was closed).")
        for s in self._sessions.values():
            if s.meeting.guild_id == guild_id and s.meeting.channel_id == channel_id:
                raise PipelineError(f"This channel is already being recorded (meeting `{s.meeting.id}`).")
        if not self.budget.fits(speaker_cost(settings.flush_interval_s, settings.channels)):
            raise PipelineError(
                f"The bot's memory budget for live audio ({self.budget.reserved >> 20} of "
                f"{self.budget.limit >> 20} MiB in use) has no room for another meeting, so try again "
                f"when a recording ends, or with shorter chunks."
            )
        meeting = await self.store.create_meeting(
            guild_id=guild_id,
            channel_id=channel_id,
            started_by=started_by,
            strategy=settings.strategy,
            flush_interval_s=settings.flush_interval_s,
            channels=settings.channels,
            bitrate=settings.bitrate,
        )
        await self.store.set_meeting_pipeline(
            meeting.id, quality=settings.quality, keep_temp=settings.keep_temp_rows, archive=settings.archive
        )
        # what a lost database knew of it, before any audio (see manifest.py)
        await run_blocking(write_manifest, self.layout, meeting, quality=settings.quality,
                           archive=settings.archive)
        session = RecordingSession(
            meeting=meeting,
            settings=settings,
            store=self.store,
            layout=self.layout,
            clock=clock or time.monotonic,
            accept_user=accept_user,
            on_flushed=self._flushed,
            jitter_margin_s=self._margin_s,
            budget=self.budget,
        )
        self._sessions[meeting.id] = session
        return session

    def end_here(self, meeting_id: str) -> None:
        """A stop was asked for: the meeting's files end now, however long leaving
        voice and the last flush take (a retried stop keeps this first end)."""
        session = self._sessions.get(meeting_id)
        if session is not None:
            session.end_here()

    async def stop_meeting(
        self,
        meeting_id: str,
        *,
        progress: Optional[ProgressCallback] = None,
        timeout_s: float = 300.0,
    ) -> PromotionResult:
        """Flush the rest, wait for the encoders, and promote.

        On :class:`FlushError` the meeting is still recording (nothing lost; retry the
        stop). On :class:`PromotionTimeout` it is STOPPING and the recorder finishes it
        in the background (``on_promoted`` is told).
        """
        lock = self._stop_locks.setdefault(meeting_id, asyncio.Lock())
        try:
            async with lock:
                return await self._stop(meeting_id, progress, timeout_s)
        finally:
            if not lock.locked():
                self._stop_locks.pop(meeting_id, None)

    async def _stop(
        self, meeting_id: str, progress: Optional[ProgressCallback], timeout_s: float
    ) -> PromotionResult:
        session = self._sessions.get(meeting_id)
        if session is not None:
            await report(progress, "flushing", 0, 1)
            length = await session.finish()
            self._sessions.pop(meeting_id, None)
            await self.store.set_meeting_status(meeting_id, MeetingStatus.STOPPING, length_samples=length)
            await report(progress, "flushing", 1, 1)
            self._flushed(meeting_id)
        else:
            meeting = await self.store.get_meeting(meeting_id)
            if meeting.status is MeetingStatus.ACTIVE:
                # Not recorded by this process: a crash the recovery has not seen.
                length = await settle_length(self.store, meeting)
                await self.store.set_meeting_status(
                    meeting_id, MeetingStatus.INTERRUPTED, length_samples=length
                )
        try:
            result = await self.promoter.promote(meeting_id, progress=progress, timeout_s=timeout_s)
            self.transcoder.forget(meeting_id)
            return result
        except PromotionTimeout:
            self._tasks.spawn(self._promote_in_background(meeting_id), name=f"chunkrecorder-promote-{meeting_id}")
            raise

    async def promote(self, meeting_id: str, *, progress: Optional[ProgressCallback] = None) -> PromotionResult:
        """Finish an interrupted, failed or stopped meeting (idempotent).

        The owner's call for each of ``start()``'s ``awaiting_promotion`` and the
        admin's promote command; a second call while one runs waits for the same result.
        """
        if meeting_id in self._sessions:
            raise PipelineError(f"Meeting `{meeting_id}` is still being recorded; stop it instead.")
        self.transcoder.wake()
        result = await self.promoter.promote(meeting_id, progress=progress, timeout_s=_BACKGROUND_PROMOTION_S)
        self.transcoder.forget(meeting_id)
        return result

    async def repair(
        self, meeting_id: str, *, progress: Optional[ProgressCallback] = None, timeout_s: float = 300.0
    ) -> RepairResult:
        """Put the audio back into a finished meeting's gaps (see ``repair``).

        Every gap whose chunk is kept is encoded again now (a chunk that failed for good
        gets a new round of attempts), waiting up to ``timeout_s``; what got encoded is
        spliced into its file in place (same recording ids; sha256 and size updated).
        What is still failing stays a gap and keeps being retried. :class:`PipelineError`
        for a meeting that is not finished.
        """
        return await self.promoter.repair(meeting_id, timeout_s=timeout_s, progress=progress)

    async def gaps(self, meeting_id: str) -> list[Gap]:
        """The windows of a meeting's tracks that are silent in its files though audio was recorded."""
        return await self.store.gaps_for_meeting(meeting_id)

    # ------------------------------------------------------------------ notes
    async def add_note(self, meeting_id: str, *, author_id: int, text: str,
                       at_ms: Optional[int] = None) -> Note:
        """A note in a meeting being recorded, at its current time (or at ``at_ms``).

        The note becomes a line of the meeting's label track and a chapter of its mix
        when the meeting is promoted. :class:`PipelineError` if the meeting is not being
        recorded here.
        """
        session = self._sessions.get(meeting_id)
        if session is None or session.finished:
            raise PipelineError(f"Meeting `{meeting_id}` is not being recorded; notes are taken while it runs.")
        if at_ms is None:
            at_ms = int(round(session.elapsed_s() * 1000))
        return await self.store.add_note(meeting_id, at_ms=max(0, int(at_ms)), author_id=author_id, text=text)

    async def _erase_notes(self, user_id: int) -> tuple[int, int]:
        """A user's notes, and what finished files were made of them: each such promoted
        meeting's label track is rewritten and its mix re-tagged without them.

        The re-tagged mixes are staged (``tagging``: complete files beside the old ones)
        before the notes are deleted: a crash anywhere after that leaves a staged file,
        and start-up (:meth:`_settle_staged`) re-tags that mix from the notes the database
        holds then, so the file, its row and the notes end up agreeing.
        """
        staged: list[tuple[Recording, list[Note], str, int]] = []
        for mid in await self.store.meetings_with_notes_of(user_id):
            try:
                meeting = await self.store.get_meeting(mid)
            except NotFound:
                continue
            if meeting.status is not MeetingStatus.PROMOTED:
                continue  # promotion reads the notes left when it runs
            notes = [n for n in await self.store.notes_for_meeting(mid) if n.author_id != user_id]
            for rec in await self.store.recordings_for_meeting(mid):
                if rec.kind is RecordingKind.MIXED:
                    chapters = markers.track_chapters(meeting, MIX_USER_ID, notes)
                    sha, size = await run_blocking(tagging.stage_retag, Path(rec.path), chapters)
                    staged.append((rec, notes, sha, size))
        await self.store.delete_notes_of_author(user_id)
        for rec, notes, sha, size in staged:
            await self._commit_retag(rec, notes, sha, size)
        return len(staged), 0

    async def _commit_retag(self, rec: Recording, notes: list[Note], sha: str, size: int) -> None:
        """A staged re-tag of ``rec`` made final: labels, row, then the file; its Opus copy goes
        (made again from the new file when asked for)."""
        path = Path(rec.path)
        # the Opus copy before (a crash later must not leave one naming what was erased) and after
        await run_blocking(remove_files, self.layout.derived_paths(path))
        await write_labels(self.layout, rec.meeting_id, notes)
        await self.store.set_recording_file(rec.id, sha256=sha, size_bytes=size)
        await run_blocking(tagging.commit_retag, path)
        await run_blocking(remove_files, self.layout.derived_paths(path))  # one made meanwhile

    async def _settle_staged(self) -> None:
        """Start-up: every re-tag a crash interrupted is done again from the database's notes
        (a staged file without a row is dropped: its recording is gone)."""
        for staged in await run_blocking(tagging.staged_files, self.layout):
            final = tagging.final_path(staged)
            parsed = self.layout.parse_recording(final.name)
            rec = None
            if parsed is not None:
                recs = await self.store.recordings_for_meeting(parsed[0])
                rec = next((r for r in recs if Path(r.path).name == final.name), None)
            if rec is None or not await run_blocking(final.exists):
                await run_blocking(remove_files, [staged])
                continue
            meeting = await self.store.get_meeting(rec.meeting_id)
            notes = await self.store.notes_for_meeting(rec.meeting_id)
            user = MIX_USER_ID if rec.kind is RecordingKind.MIXED else int(rec.user_id or 0)
            chapters = markers.track_chapters(meeting, user, notes)
            sha, size = await run_blocking(tagging.stage_retag, final, chapters)
            await self._commit_retag(rec, notes, sha, size)
            log.warning("recovery: the re-tag of %s a crash interrupted is done", final.name)

    async def _drop_labels_if_empty(self, meeting_ids: set[str]) -> int:
        """A meeting's label track goes with its last recording (the notes stay with the meeting)."""
        removed = 0
        for mid in meeting_ids:
            if not await self.store.recordings_for_meeting(mid):
                n, _b = await run_blocking(remove_files, [self.layout.labels_path(mid)])
                removed += n
        return removed

    # ------------------------------------------------------------------ removal
    async def erase_user(self, user_id: int) -> RemovalReport:
        """Remove everything of a user that is not part of a mix; mixes stay.

        In order: live sessions drop the user's buffered audio and refuse their frames
        from now on (after any flush in progress); unfinished meetings lose the user's
        track (its ``.part`` file and assembly row); then every chunk row of theirs and
        every finished per-user recording row goes, and after the rows their files
        (once the encodes running at that moment have ended: see ``Transcoder.settle``).
        A mix holds everyone's voices in one track and cannot be split, so it is kept.
        """
        for session in list(self._sessions.values()):
            await session.forget_user(user_id)
        files = freed = 0
        meetings = await self.store.erase_user_tracks(user_id)
        for mid in meetings:
            async with self.assembler.lock(mid):
                self.assembler.forget_track(mid, user_id)
                n, b = await run_blocking(
                    remove_files, [p for a in ("mp3", "flac") for p in (self.layout.part_path(mid, user_id, a),
                                                                  self.layout.recording_path(mid, user_id, a))]
                )
            files, freed = files + n, freed + b
        recs, temps = await self.store.user_data(user_id)
        await self.store.delete_user_rows(user_id)  # records the erasure (removals) with the rows
        await self.transcoder.settle()  # an encode of theirs already running writes its MP3 first
        named = await run_blocking(self._files_of_user, user_id)
        n, b = await run_blocking(remove_files, [*self.layout.with_derived([*(r.path for r in recs), *named]),
                                                 *chunk_files(temps)])
        n += await self._drop_labels_if_empty({r.meeting_id for r in recs})
        await self._erase_notes(user_id)
        result = RemovalReport(rows=len(meetings) + len(recs) + len(temps), files=files + n, bytes_freed=freed + b,
                               recordings=tuple(recs))
        log.info("erased user %s: %s", user_id, result)
        return result

    def _files_of_user(self, user_id: int) -> list[Path]:
        """Every audio file whose name says it is this user's (blocking): after their rows are
        gone, these are the ones no row knew (a meeting the database lost, a crash's leftover)."""
        return [path for _m, user, path in self.layout.audio_files() if user == user_id and user != MIX_USER_ID]

    async def delete_recording(self, recording_id: str, *, guild_id: int) -> RemovalReport:
        """One finished file: its row (with its track's gaps and their kept chunks), then the
        file and its Opus copy. ``NotFound`` if it is not in ``guild_id``."""
        rec, chunks = await self.store.remove_recording(recording_id, guild_id=guild_id)
        files, freed = await run_blocking(remove_files, [*self.layout.with_derived([rec.path]), *chunk_files(chunks)])
        files += await self._drop_labels_if_empty({rec.meeting_id})
        return RemovalReport(rows=1 + len(chunks), files=files, bytes_freed=freed, recordings=(rec,))

    async def delete_meeting(self, meeting_id: str, *, guild_id: int) -> RemovalReport:
        """A meeting and everything of it: its rows, then every file of it under the data dir.

        Its recordings, its chunk folder (including failed chunks kept for a retry) and
        any ``.part`` file of a half-assembled track. ``NotFound`` outside ``guild_id``;
        :class:`PipelineError` while it is being recorded or finished (stop it, or wait).
        ``rows`` counts the meeting, its recordings and its chunk rows.
        """
        meeting = await self.store.get_meeting(meeting_id, guild_id=guild_id)
        self._refuse_busy(meeting_id, meeting.status)
        async with self.promoter.exclusive(meeting_id):  # refuses while a promotion runs
            async with self.assembler.lock(meeting_id):
                # again: a stop may have begun while we waited for the assembler
                self._refuse_busy(meeting_id, (await self.store.get_meeting(meeting_id)).status)
                recs = await self.store.recordings_for_meeting(meeting_id)
                temps = await self.store.get_temp_recordings_for_meeting(meeting_id)
                await self.store.delete_meeting(meeting_id)  # records the deletion (removals) with the rows
                await self.transcoder.settle()  # an encode of it already running writes its MP3 first
                files, freed = await run_blocking(self._remove_meeting_files, meeting_id, [r.path for r in recs])
        self.assembler.forget(meeting_id)
        self.transcoder.forget(meeting_id)
        result = RemovalReport(rows=1 + len(recs) + len(temps), files=files, bytes_freed=freed,
                               recordings=tuple(recs))
        log.info("deleted meeting %s: %s", meeting_id, result)
        return result

    def _refuse_busy(self, meeting_id: str, status: MeetingStatus) -> None:
        if meeting_id in self._sessions or status is MeetingStatus.ACTIVE:
            raise PipelineError(f"Meeting `{meeting_id}` is being recorded right now; stop it first.")
        if status in _BUSY:
            raise PipelineError(f"Meeting `{meeting_id}` is being finished right now; try again when it is done.")

    def _remove_meeting_files(self, meeting_id: str, recording_paths: list[str]) -> tuple[int, int]:
        """Recordings (wherever their rows said), the rest of ``recordings/`` of it, the chunk folder."""
        remove_manifest(self.layout, meeting_id)  # not audio: not counted
        n1, b1 = remove_files(self.layout.with_derived(recording_paths))
        n2, b2 = remove_files(self.layout.meeting_recording_files(meeting_id))
        n3, b3 = clear_folder(self.layout.meeting_dir(meeting_id))
        return n1 + n2 + n3, b1 + b2 + b3

    def finishing(self, meeting_id: str) -> bool:
        """Whether a promotion (or repair) of the meeting runs now: its deletion is refused meanwhile."""
        return self.promoter.busy(meeting_id)

    def meeting_disk_usage(self, meeting_id: str) -> int:
        """Bytes a meeting holds on disk before promotion: its chunk folder and ``.part`` files.

        Blocking (it lists two folders): call it in a thread.
        """
        parts = [p for p in self.layout.meeting_recording_files(meeting_id) if p.name.endswith(".part")]
        total = folder_size(self.layout.meeting_dir(meeting_id))
        for path in parts:
            try:
                total += path.stat().st_size
            except OSError:
                continue  # renamed or removed while we looked
        return total

    # ------------------------------------------------------------------ formats
    async def compact(self, recording: Recording) -> CompactCopy:
        """The recording's Ogg Opus copy, made in the encoder processes on first request
        and kept beside it (see ``compact``)."""
        return await self.compactor.ensure(recording)

    async def listen_mp3(self, recording: Recording) -> CompactCopy:
        """The MP3 of a FLAC recording, made on first request in the encoder processes and
        kept beside it (``compact.Compactor.ensure_listen``); an MP3 recording is itself."""
        if self.layout.archive_of(recording.path) != "flac":
            return CompactCopy(Path(recording.path), recording.size_bytes, recording.sha256)
        return await self.compactor.ensure_listen(recording)

    # ------------------------------------------------------------------ reading
    def session(self, meeting_id: str) -> Optional[RecordingSession]:
        return self._sessions.get(meeting_id)

    def sessions(self) -> list[RecordingSession]:
        return list(self._sessions.values())

    async def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Until the queue is empty and no background work runs (tests, harness, bench).

        Looks again when a window is flushed, a chunk settles or an assembly pass ends
        (and at least every 0.2 s), not on a fast timer: the benches count the CPU of
        whatever waits, and real time would cost nothing.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            changed = self._changed
            pending = await self.store.pending_temp_recordings()
            busy = [t for t in self._tasks if not t.done() and not self.transcoder.owns(t)]
            if not pending and not busy and not self.transcoder.busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"still busy: {len(pending)} chunk(s) pending, {len(busy)} task(s)")
            await wait_event(changed, 0.2)

    # ------------------------------------------------------------------ wiring
    def _pulse(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _flushed(self, meeting_id: str) -> None:
        self.transcoder.wake()
        self._kick_assembly(meeting_id)
        self._pulse()

    def _settled(self, row: TempRecording) -> None:
        self._kick_assembly(row.meeting_id)
        self._pulse()

    def _kick_assembly(self, meeting_id: str) -> None:
        """Run the assembler for a meeting soon; coalesces kicks that come while it waits or runs.

        A pass starts :data:`ASSEMBLY_COALESCE_S` after the first kick: a window's chunks
        settle within a fraction of a second of each other, and one pass then appends
        them all instead of one pass per chunk (each pass reads the meeting, its tracks
        and their rows: measured with bench/pipeline.py, per-chunk passes were about a
        tenth of the recording process's CPU). Stop does not wait for it: promotion runs
        the assembler itself.
        """
        if meeting_id in self._assembling:
            self._assembly_dirty.add(meeting_id)
            return
        self._assembling[meeting_id] = self._tasks.spawn(
            self._assemble(meeting_id), name=f"chunkrecorder-assemble-{meeting_id}"
        )

    async def _assemble(self, meeting_id: str) -> None:
        finished = False
        try:
            await asyncio.sleep(ASSEMBLY_COALESCE_S)
            while True:
                self._assembly_dirty.discard(meeting_id)
                try:
                    status = await self.assembler.run(meeting_id)
                    finished = status.promoted
                    if status.promoted:
                        # a finished meeting's chunk settled: a gap's, encoded at last
                        await self.promoter.splice_ready(meeting_id)
                except NotFound:
                    return  # the meeting was deleted meanwhile
                except Exception:  # noqa: BLE001 - retried at the next kick and at promotion
                    log.exception("assembling meeting %s failed", meeting_id)
                    return
                if meeting_id not in self._assembly_dirty:
                    return
        finally:
            self._assembling.pop(meeting_id, None)
            if finished and meeting_id not in self._sessions:
                self.assembler.forget_if_idle(meeting_id)  # a pass after the meeting ended
            self._pulse()  # (wait_idle looks again)

    async def _promote_in_background(self, meeting_id: str) -> None:
        try:
            result = await self.promoter.promote(meeting_id, timeout_s=_BACKGROUND_PROMOTION_S)
            self.transcoder.forget(meeting_id)
        except Exception:  # noqa: BLE001
            log.exception("background promotion of meeting %s failed", meeting_id)
            return
        log.info("meeting %s promoted in the background: %d file(s)", meeting_id, len(result.recordings))
        if self.on_promoted is not None:
            try:
                out = self.on_promoted(result)
                if out is not None:
                    await out
            except Exception:  # noqa: BLE001
                log.exception("on_promoted hook failed")

