"""Background tasks with an owner: every task is referenced, named, logged and cancelled.

``asyncio.create_task`` keeps only a weak reference to its task, so a task nobody holds
can vanish mid-run, and an exception in a task nobody awaits is reported only when the
task is garbage collected, if at all. Every part of the cog that starts work it does not
await (the recorder's background promotions and assembly, the voice events' listeners,
the cog's loops) holds it in one :class:`BackgroundTasks`, which keeps the reference,
logs the exception the moment the task dies of one, and cancels and awaits them all
when its owner closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, Iterator, Optional, TypeVar

__all__ = ["BackgroundTasks"]

T = TypeVar("T")

log = logging.getLogger("red.chunkrecorder.background")


class BackgroundTasks:
    """The tasks one owner started and has not awaited."""

    def __init__(self, owner: str = "chunkrecorder") -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str,
              loop: Optional[asyncio.AbstractEventLoop] = None) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name`` that this owner keeps until it ends."""
        task = (loop or asyncio.get_running_loop()).create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: background task %s failed", self._owner, task.get_name(), exc_info=exc)

    async def cancel_all(self) -> None:
        """Cancel every task and wait until each has ended (the caller's own task is skipped)."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def busy(self) -> bool:
        """Whether any task is still running."""
        return any(not t.done() for t in self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator["asyncio.Task[Any]"]:
        return iter(list(self._tasks))
