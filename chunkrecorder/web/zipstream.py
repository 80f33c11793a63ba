"""A meeting's files as one zip, streamed while it is made: nothing is written to disk first.

``zipfile`` writes to any object with ``write``; given one that cannot ``seek`` or
``tell``, it puts each entry's CRC and sizes in a data descriptor after the entry,
which is what lets it stream. Entries are stored, not deflated: MP3 and Opus do not
compress, and deflating would cost CPU for nothing. Entries over 2 GiB use Zip64.

The zip is built in a thread of its own (reading files and the CRC are blocking
work), which hands the bytes to the event loop through a small bounded queue: the
thread waits when the client is slow, so memory stays at a few buffers per download,
and it stops when the client goes away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from aiohttp import web

__all__ = ["ZipEntry", "stream_zip"]

#: Bytes the thread gathers before handing them over (zip headers are a few dozen bytes).
_BUFFER = 256 * 1024
#: Buffers in flight between the thread and the client.
_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class ZipEntry:
    name: str
    path: Path
    size: int
    modified: float  # unix seconds


class _Abort(Exception):
    """The client went away: the producer thread stops."""


class _Sink:
    """``zipfile``'s output: gathers small writes, hands full buffers to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[Optional[bytes]]") -> None:
        self._loop = loop
        self._queue = queue
        self._buffer = bytearray()
        self.slots = threading.Semaphore(_IN_FLIGHT)
        self.aborted = threading.Event()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _BUFFER:
            self._hand_over()
        return len(data)

    def flush(self) -> None:
        pass

    def _hand_over(self) -> None:
        if not self._buffer:
            return
        self.slots.acquire()
        if self.aborted.is_set():
            raise _Abort()
        chunk, self._buffer = bytes(self._buffer), bytearray()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)

    def close(self) -> None:
        self._hand_over()


def _produce(entries: list[ZipEntry], sink: _Sink) -> None:
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for entry in entries:
            stamp = dt.datetime.fromtimestamp(max(entry.modified, 315532800.0), tz=dt.timezone.utc)
            info = zipfile.ZipInfo(entry.name, date_time=stamp.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = entry.size
            with open(entry.path, "rb") as src, zf.open(info, "w", force_zip64=entry.size >= 2**31) as dst:
                shutil.copyfileobj(src, dst, _BUFFER)
    sink.close()


async def stream_zip(request: web.Request, entries: list[ZipEntry], *, filename_header: str) -> web.StreamResponse:
    """Send ``entries`` as one zip (chunked: its length is not known before it is made)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Optional[bytes]] = asyncio.Queue()
    sink = _Sink(loop, queue)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _produce(entries, sink)
        except _Abort:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, which ends the response
            failure.append(exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    response = web.StreamResponse(status=200, headers={"Content-Disposition": filename_header,
                                                       "Cache-Control": "private, no-cache"})
    response.content_type = "application/zip"
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    thread = threading.Thread(target=run, name="chunkrecorder-web-zip", daemon=True)
    thread.start()
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            await response.write(chunk)
            sink.slots.release()
        if failure:
            raise failure[0]
        await response.write_eof()
        return response
    finally:
        sink.aborted.set()
        for _ in range(_IN_FLIGHT + 1):
            sink.slots.release()  # a producer waiting for room wakes, sees the abort, stops
        await asyncio.to_thread(thread.join, 30)
