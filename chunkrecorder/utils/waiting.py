"""Waiting for an ``asyncio.Event`` with a timeout, without losing a cancellation.

``asyncio.wait_for`` on Python 3.11 returns the inner result when the task is cancelled
at the instant the awaited thing completes, and the cancellation is gone: a worker
loop whose owner cancels it right after waking it (the recorder's close, which flushes
and so wakes the encoders, then cancels them) keeps running, and the owner waits for
it forever. ``asyncio.wait`` does not swallow the cancellation; this wraps it.
"""

from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` has passed; whether it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(0.0, timeout_s))
    finally:
        waiter.cancel()
    return event.is_set()
