"""The transcode queue: the store's QUEUED rows, drained by a bounded pool of workers.

The store is the queue (``claim_next_job`` atomically moves the oldest due row to
IN_PROGRESS), so jobs survive a restart and a job is never taken twice. Each async
worker claims a row, has a process encode it (see ``encode_worker`` for why a process
and not a thread), and records the outcome in the order that keeps every crash
recoverable: MP3 written and verified → row DONE with path, sha256, duration → PCM
deleted → row marked cleaned. A failure re-queues the row with exponential backoff
(capped at ``RetryPolicy.max_delay_s``): a transient one (a full disk, a busy database:
``failures.is_transient``) for as long as the PCM is kept, any other one up to
``RetryPolicy.max_attempts``, after which the row is FAILED. The PCM stays either way:
a FAILED chunk becomes a gap that a repair retries (``repair.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import logging
import os
import sqlite3
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, TypeVar

from ..audio import flac, mp3
from ..objects.records import TempRecording
from ..store.service import NotFound, SqlRecordingService
from ..utils.background import BackgroundTasks
from ..utils.waiting import wait_event
from .blocking import run_blocking
from .encode_worker import EncodeJob, bootstrap_source, encode
from .encoder_pool import EncoderPool
from .errors import PipelineError
from .failures import is_transient
from .paths import remove_files

__all__ = ["Transcoder", "RetryPolicy", "ChunkEncoder", "ExecutorKind"]

log = logging.getLogger("red.chunkrecorder.pipeline.transcoder")

ChunkEncoder = Callable[[EncodeJob], "mp3.ChunkMp3 | flac.ChunkFlac"]
T = TypeVar("T")
ExecutorKind = Literal["process", "thread"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts before a chunk that fails deterministically stays FAILED, and the backoff.

    A transient failure (``failures.is_transient``) is retried without a limit, every
    ``max_delay_s`` at most once the backoff has grown to it.
    """

    max_attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 120.0

    def delay(self, attempts: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * 2.0 ** min(40, max(0, attempts - 1))))


@dataclass(frozen=True, slots=True)
class _Params:
    channels: int
    bitrate: int
    quality: int
    sample_rate: int
    archive: str = "mp3"


def _shared_file(path: str) -> Optional[tuple[int, int]]:
    """``(device, inode)`` of a file with more than one name, else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st.st_nlink > 1 else None


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


class Transcoder:
    """``workers`` concurrent encodes; ``on_settled`` hears of every DONE or FAILED row."""

    #: Longest sleep between looks at the queue when nothing woke the workers.
    POLL_S = 5.0

    def __init__(
        self,
        store: SqlRecordingService,
        *,
        workers: Optional[int] = None,
        executor: ExecutorKind = "process",
        encoder: ChunkEncoder = encode,
        retry: RetryPolicy = RetryPolicy(),
        on_settled: Optional[Callable[[TempRecording], None]] = None,
        tasks: Optional[BackgroundTasks] = None,
    ) -> None:
        self._store = store
        #: Where the worker tasks live: the recorder's one ``BackgroundTasks``.
        self._background = tasks if tasks is not None else BackgroundTasks("chunkrecorder.transcoder")
        self.workers = workers or default_workers()
        self._kind = executor
        self._encoder = encoder
        self.retry = retry
        self._on_settled = on_settled
        self._pool: Optional[cf.Executor] = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._params: dict[str, _Params] = {}
        #: PCM files with several names (dev, inode) being encoded now: see _encode_once
        self._shared: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._busy = 0
        #: per worker: settled when its current round (claim, encode, outcome) has ended
        self._tickets: dict[int, asyncio.Future[None]] = {}
        self.completed = 0
        self.failed = 0

    # ------------------------------------------------------------------ lifecycle
    def _make_pool(self) -> cf.Executor:
        if self._kind == "thread":
            return cf.ThreadPoolExecutor(self.workers, thread_name_prefix="chunkrecorder-encode")
        # Our own small processes, not multiprocessing's: see encoder_pool for why.
        return EncoderPool(self.workers, bootstrap_source())

    async def start(self) -> None:
        if self._tasks:
            return
        notice = await run_blocking(mp3.engine_notice)
        if notice:
            log.warning(notice)
        if self._kind == "process":
            await self._check_processes()
        else:
            self._pool = self._make_pool()
        self._tasks = [
            self._background.spawn(self._worker(i), name=f"chunkrecorder-transcode-{i}")
            for i in range(self.workers)
        ]

    async def _check_processes(self) -> None:
        """Have an encoder process answer now; if processes cannot run here, encode in threads.

        A host where ``sys.executable`` cannot be started as Python (an embedded
        interpreter) or where the cog's folder cannot be imported from a child breaks
        the pool. Recording then still works, in threads (LAME through ctypes releases
        the GIL), and the log says why.
        """
        loop = asyncio.get_running_loop()
        try:
            self._pool = await run_blocking(self._make_pool)
            await asyncio.wait_for(loop.run_in_executor(self._pool, os.getpid), 60)
        except (BrokenProcessPool, OSError, asyncio.TimeoutError) as exc:
            log.error("encoder processes cannot start here (%s: %s); encoding in threads instead",
                      type(exc).__name__, exc)
            broken, self._pool = self._pool, None
            if broken is not None:
                await run_blocking(broken.shutdown, wait=False, cancel_futures=True)
            self._kind = "thread"
            self._pool = self._make_pool()

    async def close(self) -> None:
        """Stop taking jobs; rows left IN_PROGRESS are re-queued by the next start's recovery."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await run_blocking(pool.shutdown, wait=True, cancel_futures=True)

    def wake(self) -> None:
        """New or re-queued rows: let idle workers look at once."""
        self._wake.set()

    @property
    def busy(self) -> int:
        return self._busy

    def worker_pids(self) -> list[int]:
        """PIDs of the encoder processes running now (diagnostics and the crash tests)."""
        pool = self._pool
        return pool.pids() if isinstance(pool, EncoderPool) else []

    def owns(self, task: "asyncio.Task[Any]") -> bool:
        """Whether ``task`` is one of the workers (which never end by themselves)."""
        return task in self._tasks

    def forget(self, meeting_id: str) -> None:
        self._params.pop(meeting_id, None)

    # ------------------------------------------------------------------ work
    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # The ticket is settled once this round's job (claimed or being claimed)
            # has ended: see ``settle``.
            ticket: asyncio.Future[None] = loop.create_future()
            self._tickets[index] = ticket
            worked: Optional[bool]
            try:
                worked = await self._claim_and_run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a worker must outlive any one job
                log.exception("transcode worker %d: unexpected error", index)
                worked = None
            finally:
                if not ticket.done():
                    ticket.set_result(None)
            if worked is None:
                await asyncio.sleep(1.0)
            elif not worked:
                await self._idle()

    async def _claim_and_run(self) -> bool:
        """Claim the next due row and see it through; False when there was none."""
        self._wake.clear()
        row = await self._store.claim_next_job(now=time.time())
        if row is None:
            return False
        self._busy += 1
        try:
            await self._run(row)
        finally:
            self._busy -= 1
        return True

    async def settle(self) -> None:
        """Wait until every job claimed, or being claimed, when this is called has ended.

        A removal deletes rows first and files after; an encode already running when
        the rows went still writes its MP3 (and links it under the other names of its
        PCM file) before it finds its row gone. Waiting here between the two steps
        means the removal's files include whatever those encodes wrote, so nothing is
        left once the removal returns. Jobs claimed after this call cannot see the
        deleted rows. Costs at most one encode per worker (a fraction of a second).
        """
        pending = [t for t in self._tickets.values() if not t.done()]
        if pending:
            await asyncio.wait(pending)

    async def _idle(self) -> None:
        timeout = self.POLL_S
        due = await self._store.next_retry_at()
        if due is not None:
            timeout = min(timeout, max(0.0, due - time.time()) + 0.01)
        await wait_event(self._wake, timeout)

    async def _params_for(self, meeting_id: str) -> _Params:
        p = self._params.get(meeting_id)
        if p is None:
            meeting = await self._store.get_meeting(meeting_id)
            extra = await self._store.meeting_pipeline(meeting_id)
            p = self._params[meeting_id] = _Params(
                meeting.channels, meeting.bitrate, extra.quality, meeting.sample_rate, extra.archive
            )
        return p

    async def _run(self, row: TempRecording) -> None:
        try:
            params = await self._params_for(row.meeting_id)
        except NotFound:
            return  # meeting deleted meanwhile; its rows went with it
        job = EncodeJob(
            pcm_path=row.pcm_path,
            mp3_path=str(Path(row.pcm_path).with_suffix(".flac" if params.archive == "flac" else ".mp3")),
            prime=row.prime_samples,
            body=row.sample_count,
            channels=params.channels,
            bitrate=params.bitrate,
            quality=params.quality,
            sample_rate=params.sample_rate,
            archive=params.archive,
            first_sample=row.start_sample,
        )
        try:
            result = await self._encode_once(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            await self._failed(row, exc)
            return
        try:
            done = await self._store.update_temp_recording_transcode_completed(
                row.id, mp3_path=job.mp3_path, sha256=result.sha256, duration_ms=result.duration_ms
            )
        except NotFound:
            # the row went while it was encoding (its meeting or its user was deleted)
            await run_blocking(remove_files, [job.mp3_path])
            return
        except sqlite3.Error as exc:
            # a busy database: the verified MP3 stays under the chunk's name, and the next
            # attempt reuses it (encode_worker.encode) instead of encoding again
            await self._failed(row, exc)
            return
        await run_blocking(remove_files, [row.pcm_path])
        try:
            done = await self._store.mark_temp_recording_cleaned(row.id)
        except NotFound:
            await run_blocking(remove_files, [job.mp3_path])  # deleted just now: nothing may stay of it
            return
        self.completed += 1
        self._settled(done)

    async def _encode_once(self, job: EncodeJob) -> "mp3.ChunkMp3 | flac.ChunkFlac":
        """Encode, unless another name of the same PCM file is being encoded right now.

        A one-speaker window's mix chunk is a hard link of the speaker's (see
        ``session``); their rows are queued together and two workers would claim
        them together. The second waits for the first, whose job links the MP3 under
        its name too, and its own job then only checks and reuses that file.
        """
        key = await run_blocking(_shared_file, job.pcm_path)
        if key is None:
            return await self._encode(job)
        first = self._shared.get(key)
        if first is not None:
            await asyncio.wait([first])  # its outcome is its own row's business
            return await self._encode(job)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._shared[key] = mine
        try:
            return await self._encode(job)
        finally:
            del self._shared[key]
            mine.set_result(None)

    async def _encode(self, job: EncodeJob) -> "mp3.ChunkMp3 | flac.ChunkFlac":
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._encoder, job)
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory): the pool starts a new one for the
            # next job; this one is retried like any failure.
            log.error("%s; a new one takes over", exc)
            raise

    async def run_job(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Another kind of job in the same encoder processes (the compact Opus copies).

        ``fn`` and its arguments must be picklable by reference, as for a chunk; a worker
        that dies takes this job with it (the caller may ask again).
        """
        if self._pool is None:
            raise PipelineError("The encoders are not running (the recorder is closed).")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except BrokenProcessPool as exc:
            log.error("%s during a job; a new one takes over", exc)  # the pool restarts it
            raise

    async def _failed(self, row: TempRecording, exc: BaseException) -> None:
        """Back to QUEUED after a backoff (never visibly FAILED) while it may still pass;
        FAILED once a deterministic failure reached the attempt limit.

        Recording the outcome is tried a few times: a database busy right now must not
        leave the row IN_PROGRESS (nothing would claim it again before a restart).
        """
        error = f"{type(exc).__name__}: {exc}"
        self.failed += 1
        for wait_s in (0.5, 1.0, 2.0, None):
            try:
                settled = await self._record_failure(row, error, transient=is_transient(exc))
                break
            except NotFound:
                return  # the row went while it was encoding
            except sqlite3.Error as db_exc:
                if wait_s is None:
                    log.error("chunk %s: its failure could not be recorded (%s); the next start re-queues it",
                              row.id, db_exc)
                    return
                await asyncio.sleep(wait_s)
        self._settled(settled)

    async def _record_failure(self, row: TempRecording, error: str, *, transient: bool) -> TempRecording:
        if transient or row.attempts < self.retry.max_attempts:
            delay = self.retry.delay(row.attempts)
            log.warning("chunk %s (attempt %d) failed%s: %s; retrying in %.1f s",
                        row.id, row.attempts, " (it may pass)" if transient else "", error, delay)
            return await self._store.requeue_failed_attempt(
                row.id, error=error, not_before=time.time() + delay
            )
        log.error("chunk %s failed %d times, giving up: %s; it is kept and a repair can retry it",
                  row.id, row.attempts, error)
        return await self._store.update_temp_recording_transcode_failed(row.id, error=error)

    def _settled(self, row: TempRecording) -> None:
        if self._on_settled is not None:
            try:
                self._on_settled(row)
            except Exception:  # noqa: BLE001
                log.exception("on_settled hook failed")
