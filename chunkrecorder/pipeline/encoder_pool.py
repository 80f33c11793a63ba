"""A pool of small encoder processes, each a plain ``python -c`` child fed through a pipe.

Not ``multiprocessing``: a multiprocessing child (spawn or forkserver) first re-imports
the parent's main script, and a bot's main script is Red's launcher, so every encoder
process imported Red and discord.py before encoding anything (measured: 75 MiB and 877
modules per worker under a launcher that imports ``redbot.__main__``, against about
12 MiB here), and the fork server was one more process. These children import only
``encode_worker`` (LAME through ctypes; see its docstring) and exit on their own when
the parent is gone, because their job pipe reaches end-of-file.

Protocol, one job at a time per child: the parent writes a length-prefixed pickle of
``(fn, args, kwargs)`` on the child's stdin, the child answers on a private copy of
its stdout with a length-prefixed pickle of ``(ok, value)``; anything the child or a
library prints goes to stderr, never into the protocol. One thread per child waits on
its pipes (releasing the GIL), so the pool costs the event loop nothing while it encodes.
A child that dies mid-job fails that job with :class:`BrokenProcessPool` (the caller
retries it) and is started again for the next one.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import pickle
import queue
import subprocess
import sys
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Optional, TypeVar

from .encode_worker import read_message, write_message

__all__ = ["EncoderPool"]

log = logging.getLogger("red.chunkrecorder.pipeline.encoder_pool")

T = TypeVar("T")

class _Job:
    __slots__ = ("future", "fn", "args", "kwargs")

    def __init__(self, future: "cf.Future[Any]", fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs


class _Child:
    """One encoder process and the thread that talks to it."""

    def __init__(self, pool: "EncoderPool", index: int) -> None:
        self._pool = pool
        self.index = index
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.thread = threading.Thread(target=self._run, name=f"chunkrecorder-encoder-{index}", daemon=True)

    def start(self) -> None:
        self._spawn()
        self.thread.start()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self._pool.bootstrap],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )

    def _run(self) -> None:
        while True:
            job = self._pool._jobs.get()
            if job is None:
                break
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._spawn()
                job.future.set_result(self._call(job))
            except BaseException as exc:  # noqa: BLE001 - everything goes to the caller's future
                job.future.set_exception(exc)
        self._stop()

    def _call(self, job: _Job) -> Any:
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            write_message(proc.stdin, (job.fn, job.args, job.kwargs))
            ok, value = read_message(proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            code = proc.wait()
            self.proc = None
            raise BrokenProcessPool(f"encoder process {proc.pid} died (exit code {code})") from exc
        if ok:
            return value
        raise value

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - an encode never takes this long
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> Optional[int]:
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None


class EncoderPool(cf.Executor):
    """``workers`` child processes running ``bootstrap`` (which serves jobs on its stdin).

    A ``concurrent.futures.Executor``: ``loop.run_in_executor(pool, fn, arg)`` works, with
    ``fn`` and its arguments picklable by reference, as for a ``ProcessPoolExecutor``.
    """

    def __init__(self, workers: int, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._jobs: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()
        self._shutdown = False
        self._lock = threading.Lock()
        self._children = [_Child(self, i) for i in range(max(1, workers))]
        for child in self._children:
            child.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> "cf.Future[T]":
        future: "cf.Future[T]" = cf.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new jobs after shutdown")
            self._jobs.put(_Job(future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._shutdown:
                already = True
            else:
                already = False
                self._shutdown = True
        if not already:
            if cancel_futures:
                pending: list[_Job] = []
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is not None:
                        pending.append(job)
                for job in pending:
                    job.future.cancel()
            for _ in self._children:
                self._jobs.put(None)
        if wait:
            for child in self._children:
                child.thread.join()

    def pids(self) -> list[int]:
        """PIDs of the encoder processes alive now."""
        return sorted(p for p in (c.pid for c in self._children) if p is not None)
