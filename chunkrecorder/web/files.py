"""Sending one file over HTTP: ranges, validators, a readable name, streamed from disk.

Our own ``StreamResponse`` rather than aiohttp's ``FileResponse``, because the ETag
must be the recording's sha256 (what ``[p]recordings info`` shows, and stable across
a restore from backup), which ``FileResponse`` replaces with mtime and size.

What a browser or a download manager relies on:

* ``Range: bytes=a-b`` / ``a-`` / ``-n`` answers 206 with exactly those bytes (resume,
  seeking in the ``<audio>`` player); a range starting past the end answers 416; a
  range we do not understand, or several ranges, is ignored (RFC 9110 allows it) and
  the whole file is sent; ``If-Range`` with another validator sends the whole file.
* ``If-None-Match`` with the ETag answers 304.
* ``Content-Disposition`` names the file (RFC 6266: an ASCII fallback and the UTF-8
  name), ``attachment`` for a download and ``inline`` for the player.

The bytes go from file to socket with ``sendfile`` (the kernel copies; the event loop
only waits for the socket, and a slow client costs nothing but an open file); where
that is not possible (TLS in the bot itself, some platforms) they are read in a thread,
never on the event loop, 256 KiB at a time and written with the response's flow
control, so a slow client holds one buffer, not the file. Measured in
``bench/web.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from aiohttp import web

__all__ = ["CHUNK", "RangeNotSatisfiable", "ServedFile", "content_disposition", "parse_range",
           "safe_filename", "send_file"]

#: Bytes per read and write.
CHUNK = 256 * 1024

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


class RangeNotSatisfiable(Exception):
    """A range that starts past the end of the file (answered 416)."""


@dataclass(frozen=True, slots=True)
class ServedFile:
    """What the server knows about a file before it opens it."""

    path: Path
    size: int
    #: A strong validator (quoted), from the content's sha256.
    etag: str
    content_type: str
    filename: str


def parse_range(header: Optional[str], size: int) -> Optional[tuple[int, int]]:
    """``(first, last)`` inclusive for one satisfiable byte range; ``None`` for the whole file."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip().replace(" ", ""))
    if m is None:
        return None  # several ranges or another unit: ignored, the whole file is sent
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable()
        return max(0, size - n), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored
    if start >= size:
        raise RangeNotSatisfiable()
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def safe_filename(name: str, *, limit: int = 120) -> str:
    """A name every file system and browser accepts: no separators or control characters."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip(" .")
    if len(cleaned) > limit:
        stem, dot, ext = cleaned.rpartition(".")
        cleaned = (stem[: limit - len(ext) - 1].rstrip() + dot + ext) if dot and len(ext) <= 5 else cleaned[:limit]
    return cleaned or "recording"


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """RFC 6266/5987: an ASCII fallback for old clients, the real name for the rest."""
    kind = "inline" if inline else "attachment"
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = ascii_name.replace('"', "").replace("\\", "") or "recording"
    quoted = urllib.parse.quote(filename, safe="")
    return f'{kind}; filename="{ascii_name}"; filename*=UTF-8\'\'{quoted}'


def _etag_matches(header: Optional[str], etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in header.split(","))


async def send_file(request: web.Request, served: ServedFile, *, executor: concurrent.futures.Executor,
                    inline: bool = False, extra_headers: Optional[dict[str, str]] = None) -> web.StreamResponse:
    """Answer ``request`` with ``served`` (200, 206, 304 or 416); ``FileNotFoundError`` if it vanished."""
    loop = asyncio.get_running_loop()
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": served.etag,
        "Cache-Control": "private, no-cache",
        "Content-Disposition": content_disposition(served.filename, inline=inline),
        **(extra_headers or {}),
    }
    if _etag_matches(request.headers.get("If-None-Match"), served.etag):
        return web.Response(status=304, headers=headers)
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != served.etag:
        wanted = None  # the client's copy is another version: send the whole file
    try:
        span = parse_range(wanted, served.size)
    except RangeNotSatisfiable:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{served.size}"},
                            text="The requested range is not inside the file.\n")
    fh: IO[bytes] = await loop.run_in_executor(executor, open, served.path, "rb")
    try:
        size = await loop.run_in_executor(executor, lambda: os.fstat(fh.fileno()).st_size)
        if size != served.size:
            raise FileNotFoundError(served.path)  # replaced meanwhile: not the file we described
        first, last = span if span is not None else (0, served.size - 1)
        length = last - first + 1 if served.size else 0
        response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
        response.content_type = served.content_type
        response.content_length = length
        if span is not None:
            response.headers["Content-Range"] = f"bytes {first}-{last}/{served.size}"
        await response.prepare(request)
        if request.method == "HEAD" or length == 0:
            return response
        transport = request.transport
        try:
            if transport is None or os.environ.get("AIOHTTP_NOSENDFILE"):
                raise NotImplementedError
            # The kernel copies file to socket (sendfile): the loop only waits for the
            # socket to take more, whatever the file's size and the client's speed.
            await loop.sendfile(transport, fh, first, length)
        except NotImplementedError:  # TLS, or a platform without it: read in a thread, write
            await loop.run_in_executor(executor, fh.seek, first)
            left = length
            while left > 0:
                chunk = await loop.run_in_executor(executor, fh.read, min(CHUNK, left))
                if not chunk:
                    raise FileNotFoundError(served.path) from None  # truncated while we sent it
                await response.write(chunk)
                left -= len(chunk)
        await response.write_eof()
        return response
    finally:
        await loop.run_in_executor(executor, fh.close)
