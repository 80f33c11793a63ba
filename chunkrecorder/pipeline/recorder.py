"""The pipeline's one entry point for the cog, the harness, tests and the bench.

``Recorder`` owns the moving parts and wires them together:

* one :class:`RecordingSession` per live meeting, advanced every ``tick_s`` by a
  ticker task (the harness may also call ``advance`` itself with its own clock);
* the :class:`Transcoder` (a bounded process pool draining the store's queue);
* the :class:`Assembler`, kicked whenever a window is flushed or a chunk settles, so
  tracks grow while the meeting runs and stop has only the tail end left to do;
* the :class:`Promoter`, :class:`Recovery` and :class:`Cleaner`.

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
from ..objects.records import MeetingStatus, TempRecording
from ..store.service import SqlRecordingService
from .blocking import run_blocking
from .assembler import Assembler
from .cleanup import Cleaner, CleanupReport
from .encode_worker import encode
from .errors import FlushError, PipelineError, PromotionTimeout
from .paths import Layout, unlink_quiet
from .promoter import Progress, ProgressCallback, Promoter, PromotionResult, report
from .recovery import Recovery, RecoveryReport, settle_length
from .session import RecordingSession, SessionSnapshot
from .transcoder import ChunkEncoder, ExecutorKind, RetryPolicy, Transcoder

__all__ = [
    "Recorder",
    "RecordingSession",
    "SessionSnapshot",
    "Progress",
    "ProgressCallback",
    "PromotionResult",
    "RecoveryReport",
    "CleanupReport",
    "PipelineError",
    "PromotionTimeout",
    "FlushError",
    "RetryPolicy",
]

log = logging.getLogger("red.chunkrecorder.pipeline.recorder")

PromotedHook = Callable[[PromotionResult], Union[Awaitable[None], None]]


class Recorder:
    """Start/stop meetings, run the queue, recover after crashes, clean up.

    Keyword arguments beyond the documented four are for the cog's settings and for
    tests: ``auto_promote`` (promote interrupted meetings found at start),
    ``executor`` ("process", or "thread" for tests that inject an ``encoder``),
    ``retry`` (attempts and backoff), ``tick_s`` (how often live sessions are
    advanced), ``jitter_margin_s`` (how long a window waits for late frames),
    ``temp_ttl_s``/``retention_days``/``cleanup_interval_s`` (the background
    cleanup; ``None`` interval = only when ``cleanup`` is called), and
    ``on_promoted`` (told about promotions that finish in the background).
    """

    def __init__(
        self,
        *,
        store: SqlRecordingService,
        data_dir: Path,
        workers: Optional[int] = None,
        auto_promote: bool = True,
        executor: ExecutorKind = "process",
        encoder: ChunkEncoder = encode,
        retry: RetryPolicy = RetryPolicy(),
        tick_s: float = 0.5,
        jitter_margin_s: float = 0.5,
        temp_ttl_s: float = 24 * 3600.0,
        retention_days: int = 0,
        cleanup_interval_s: Optional[float] = 3600.0,
        on_promoted: Optional[PromotedHook] = None,
    ) -> None:
        self.store = store
        self.layout = Layout(data_dir)
        self.auto_promote = auto_promote
        self.temp_ttl_s = temp_ttl_s
        self.retention_days = retention_days
        self.on_promoted = on_promoted
        self._tick_s = tick_s
        self._margin_s = jitter_margin_s
        self._cleanup_interval_s = cleanup_interval_s
        self._changed = asyncio.Event()
        self.transcoder = Transcoder(
            store, workers=workers, executor=executor, encoder=encoder, retry=retry,
            on_settled=self._settled,
        )
        self.assembler = Assembler(store, self.layout)
        self.promoter = Promoter(store, self.layout, self.assembler, changes=lambda: self._changed)
        self.cleaner = Cleaner(store, self.layout)
        self._sessions: dict[str, RecordingSession] = {}
        self._tickers: dict[str, asyncio.Task[None]] = {}
        self._assembling: dict[str, asyncio.Task[None]] = {}
        self._assembly_dirty: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._stop_locks: dict[str, asyncio.Lock] = {}
        self._started = False
        self._recovery: Optional[RecoveryReport] = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> RecoveryReport:
        """Recover what a crash left, start the workers, promote interrupted meetings."""
        if self._started and self._recovery is not None:
            return self._recovery
        for d in (self.layout.chunks_dir, self.layout.recordings_dir):
            await run_blocking(d.mkdir, parents=True, exist_ok=True)
        rec = await Recovery(self.store, self.layout, max_attempts=self.transcoder.retry.max_attempts).run()
        await self.transcoder.start()
        self.transcoder.wake()
        self._started = True
        promoting: tuple[str, ...] = ()
        if self.auto_promote and rec.awaiting_promotion:
            promoting = rec.awaiting_promotion
            for mid in promoting:
                self._spawn(self._promote_in_background(mid), f"chunkrecorder-promote-{mid}")
        if self._cleanup_interval_s:
            self._spawn(self._cleanup_loop(self._cleanup_interval_s), "chunkrecorder-cleanup")
        self._recovery = RecoveryReport(
            interrupted=rec.interrupted, requeued=rec.requeued, adopted=rec.adopted,
            cleaned=rec.cleaned, promoting=promoting,
            awaiting_promotion=() if self.auto_promote else rec.awaiting_promotion,
        )
        if self._recovery.anything:
            log.warning("recovery: %s", self._recovery)
        return self._recovery

    async def close(self) -> None:
        """Flush live sessions (their meetings become INTERRUPTED), stop every task and worker.

        Everything is left recoverable: the next ``start`` re-queues what was being
        encoded and promotes (or lists) the interrupted meetings.
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
        tasks = [*self._tickers.values(), *self._assembling.values(), *self._background]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tickers.clear()
        self._assembling.clear()
        self._background.clear()
        await self.transcoder.close()
        self._started = False
        self._recovery = None

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
        """Create the meeting (ACTIVE) and its session; t=0 is ``clock()`` now."""
        if not self._started:
            raise PipelineError("The recorder is not running (it failed to start or was closed).")
        for s in self._sessions.values():
            if s.meeting.guild_id == guild_id and s.meeting.channel_id == channel_id:
                raise PipelineError(f"This channel is already being recorded (meeting `{s.meeting.id}`).")
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
            meeting.id, quality=settings.quality, keep_temp=settings.keep_temp_rows
        )
        session = RecordingSession(
            meeting=meeting,
            settings=settings,
            store=self.store,
            layout=self.layout,
            clock=clock or time.monotonic,
            accept_user=accept_user,
            on_flushed=self._flushed,
            jitter_margin_s=self._margin_s,
        )
        self._sessions[meeting.id] = session
        if self._tick_s:
            self._tickers[meeting.id] = asyncio.create_task(
                self._tick(session), name=f"chunkrecorder-tick-{meeting.id}"
            )
        return session

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
        async with lock:
            session = self._sessions.get(meeting_id)
            if session is not None:
                await report(progress, "flushing", 0, 1)
                length = await session.finish()
                ticker = self._tickers.pop(meeting_id, None)
                if ticker is not None:
                    ticker.cancel()
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
                return await self.promoter.promote(meeting_id, progress=progress, timeout_s=timeout_s)
            except PromotionTimeout:
                self._spawn(self._promote_in_background(meeting_id), f"chunkrecorder-promote-{meeting_id}")
                raise

    async def promote(self, meeting_id: str, *, progress: Optional[ProgressCallback] = None) -> PromotionResult:
        """The admin's promote: finish an interrupted or failed meeting (idempotent)."""
        if meeting_id in self._sessions:
            raise PipelineError(f"Meeting `{meeting_id}` is still being recorded; stop it instead.")
        self.transcoder.wake()
        return await self.promoter.promote(meeting_id, progress=progress, timeout_s=24 * 3600.0)

    async def cleanup(self, *, temp_ttl_s: float, retention_days: int) -> CleanupReport:
        return await self.cleaner.run(temp_ttl_s=temp_ttl_s, retention_days=retention_days)

    async def erase_user(self, user_id: int) -> int:
        """Remove a user's voice from everything not yet a finished recording; returns files removed.

        Live sessions drop the user's buffered audio and refuse their frames; unfinished
        meetings lose the user's track (its ``.part`` file and assembly row) and their
        chunk rows and files. Mixes already computed are kept, as finished mixes are.
        Finished per-user recordings are rows in ``recordings``: the caller deletes those.
        """
        for session in self._sessions.values():
            session.forget_user(user_id)
        removed = 0
        for mid in await self.store.erase_user_tracks(user_id):
            async with self.assembler.lock(mid):
                self.assembler.forget_track(mid, user_id)
                for path in (self.layout.part_path(mid, user_id), self.layout.recording_path(mid, user_id)):
                    removed += int(await run_blocking(unlink_quiet, path) > 0)
        _, temps = await self.store.user_data(user_id)
        if temps:
            await self.store.delete_temp_recordings(ids=[t.id for t in temps])
            for t in temps:
                for path in (t.pcm_path, t.mp3_path):
                    removed += int(await run_blocking(unlink_quiet, path) > 0)
        return removed

    def session(self, meeting_id: str) -> Optional[RecordingSession]:
        return self._sessions.get(meeting_id)

    def sessions(self) -> list[RecordingSession]:
        return list(self._sessions.values())

    async def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Until the queue is empty and no background work runs (tests, harness, bench)."""
        deadline = time.monotonic() + timeout_s
        while True:
            pending = await self.store.pending_temp_recordings()
            busy = [t for t in (*self._assembling.values(), *self._background) if not t.done()]
            if not pending and not busy and not self.transcoder.busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"still busy: {len(pending)} chunk(s) pending, {len(busy)} task(s)")
            await asyncio.sleep(0.02)

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
        """Run the assembler for a meeting soon; coalesces kicks that come while it runs."""
        if meeting_id in self._assembling:
            self._assembly_dirty.add(meeting_id)
            return
        self._assembling[meeting_id] = asyncio.create_task(
            self._assemble(meeting_id), name=f"chunkrecorder-assemble-{meeting_id}"
        )

    async def _assemble(self, meeting_id: str) -> None:
        try:
            while True:
                self._assembly_dirty.discard(meeting_id)
                try:
                    await self.assembler.run(meeting_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - retried at the next kick and at promotion
                    log.exception("assembling meeting %s failed", meeting_id)
                    return
                if meeting_id not in self._assembly_dirty:
                    return
        finally:
            self._assembling.pop(meeting_id, None)

    async def _tick(self, session: RecordingSession) -> None:
        while not session.finished:
            await asyncio.sleep(self._tick_s)
            try:
                await session.advance()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("advancing meeting %s failed", session.meeting.id)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _promote_in_background(self, meeting_id: str) -> None:
        try:
            result = await self.promoter.promote(meeting_id, timeout_s=24 * 3600.0)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("background promotion of meeting %s failed", meeting_id)
            return
        log.info("meeting %s promoted in the background: %d file(s)", meeting_id, len(result.recordings))
        if self.on_promoted is not None:
            try:
                out = self.on_promoted(result)
                if asyncio.iscoroutine(out) or isinstance(out, asyncio.Future):
                    await out
            except Exception:  # noqa: BLE001
                log.exception("on_promoted hook failed")

    async def _cleanup_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.cleanup(temp_ttl_s=self.temp_ttl_s, retention_days=self.retention_days)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("cleanup failed")
