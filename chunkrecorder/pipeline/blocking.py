"""The pipeline's own two threads for blocking file work (writes, fsyncs, appends, unlinks).

Not the event loop's default executor: that one grows a thread whenever all of its
threads are busy, and every new thread gets its own malloc arena, in which the
megabyte-sized buffers of chunk writes fragment. Measured in bench/pipeline.py: the
recorder's resident memory stepped up by 18 MiB twenty minutes into an hour-long
meeting that way, and stayed flat with a fixed pair of threads. Two, so that a slow
fsync of one chunk does not hold up the next flush behind it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from typing import Any, Callable, Optional, TypeVar

__all__ = ["run_blocking"]

T = TypeVar("T")

_lock = threading.Lock()
_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="chunkrecorder-io")
        return _pool


async def run_blocking(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` on the pipeline's fixed pair of I/O threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))
