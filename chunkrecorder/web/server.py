"""The opt-in download server: a small aiohttp app on the bot's own event loop.

Off unless the bot owner turns it on (``[p]recordingset web``), because only they know
how their host is reached: bound to localhost behind a reverse proxy or a tunnel, or
to a LAN address. What it serves, and nothing else:

    GET {base}/r/<recording>/<token>                 one recording (``?format=opus``,
                                                     ``?play=1`` to play instead of save)
    GET {base}/m/<meeting>/<token>/                  the meeting's page
    GET {base}/m/<meeting>/<token>/<recording>.mp3   one of its tracks (or ``.opus``)
    GET {base}/m/<meeting>/<token>/all.zip           every track, one zip (``?format=opus``)

Ids only: no path from the URL reaches the file system, and there is no listing.
Every link is checked (``links``) before anything is looked up; the answers are words
with the right status: 403 a forged link, 410 an expired or revoked link or a deleted
recording, 404 no such page, 416 a range outside the file. The access log is off (a
URL holds its token); each answer is logged by recording or meeting id instead.

The server owns its threads (file reads, one per zip being made) and runs on whatever
loop starts it: the cog's (``core/weblinks.py`` starts and stops it with the cog) or
the harness's (``python -m harness simulate --web``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import errno
import logging
from typing import Awaitable, Callable, Optional

from aiohttp import web

from ..i18n import _
from ..objects.errors import NotFound, PipelineError
from ..objects.records import Meeting, Recording
from .catalog import FORMATS, Catalog, Format, parse_format
from .files import content_disposition, send_file
from .links import Kind, LinkRefused, LinkSigner, Verified
from .page import TrackRow, meeting_page
from .zipstream import ZipEntry, stream_zip

__all__ = ["WebServer", "WebServerError"]

log = logging.getLogger("red.chunkrecorder.web")

_ID = r"[0-9a-f]{16}"
_TOKEN = r"[0-9]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Seconds ``stop()`` lets downloads in flight finish before it closes their connections.
SHUTDOWN_S = 5.0


class WebServerError(Exception):
    """The server could not start; ``str()`` is one sentence for the bot owner."""


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _clock(ms: int) -> str:
    total = int(round(ms / 1000))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _refusal_text(exc: LinkRefused) -> str:
    if exc.reason == "expired":
        return _("This link has expired. Ask for a new one in Discord.")
    if exc.reason == "revoked":
        return _("This link was revoked by the bot's owner.")
    if exc.reason == "deleted":
        return _("This recording was deleted.")
    return _("This link is not valid.")


class WebServer:
    """``start()`` binds ``host:port``; links are made and checked with ``signer``."""

    def __init__(self, catalog: Catalog, signer: LinkSigner, *, host: str, port: int, base_url: str = "",
                 read_threads: int = 4, shutdown_s: float = SHUTDOWN_S) -> None:
        self.catalog = catalog
        self.signer = signer
        self.host = host
        self.port = port
        #: Where links point; empty: ``http://host:port`` as bound (the harness, tests).
        self._base_url = base_url.rstrip("/")
        self._read_threads = read_threads
        self._shutdown_s = shutdown_s
        self._runner: Optional[web.AppRunner] = None
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        #: Answers given, by status (diagnostics, tests, the bench).
        self.answers: dict[int, int] = {}

    # ------------------------------------------------------------------ lifetime
    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def base_url(self) -> str:
        if self._base_url:
            return self._base_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.bound_port}"

    @property
    def bound_port(self) -> int:
        """The port listened on (the one the OS chose when ``port`` was 0)."""
        if self._runner is None:
            return self.port
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                return int(address[1])
        return self.port

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._answers])
        app.router.add_get(rf"/r/{{rid:{_ID}}}/{{token:{_TOKEN}}}", self._recording)
        app.router.add_get(rf"/m/{{mid:{_ID}}}/{{token:{_TOKEN}}}", self._meeting_slash)
        app.router.add_get(rf"/m/{{mid:{_ID}}}/{{token:{_TOKEN}}}/", self._meeting_page)
        app.router.add_get(rf"/m/{{mid:{_ID}}}/{{token:{_TOKEN}}}/all.zip", self._meeting_zip)
        app.router.add_get(rf"/m/{{mid:{_ID}}}/{{token:{_TOKEN}}}/{{rid:{_ID}}}.{{ext:mp3|opus|flac}}", self._track)
        app.router.add_get("/robots.txt", self._robots)
        app.on_response_prepare.append(self._secure)
        # No access log (URLs hold tokens); the bot's own signals stay the bot's; an unload
        # waits at most a few seconds for downloads in flight (a client resumes with Range).
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_s)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise WebServerError(_("Port {port} on {host} is already in use: pick another port, or stop what "
                                       "uses it.").format(port=self.port, host=self.host)) from None
            if exc.errno == errno.EACCES:
                raise WebServerError(_("Not allowed to listen on {host}:{port} (ports below 1024 need privileges): "
                                       "pick a port above 1024.").format(port=self.port, host=self.host)) from None
            raise WebServerError(_("Cannot listen on {host}:{port}: {error}.").format(
                host=self.host, port=self.port, error=exc.strerror or exc)) from None
        self._executor = concurrent.futures.ThreadPoolExecutor(self._read_threads,
                                                               thread_name_prefix="chunkrecorder-web")
        self._runner = runner
        log.info("download links served on %s:%d as %s", self.host, self.bound_port, self.base_url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ links
    def link(self, kind: Kind, ident: str, *, ttl_s: float, fmt: Optional[Format] = None) -> str:
        """A new link to a meeting (``m``) or a recording (``r``), valid ``ttl_s`` seconds."""
        url = self.base_url + self.signer.path(kind, ident, ttl_s=ttl_s)
        return f"{url}?format={fmt}" if fmt and fmt != "mp3" else url

    # ------------------------------------------------------------------ plumbing
    @web.middleware
    async def _answers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except LinkRefused as exc:
            response = web.Response(status=exc.status, text=_refusal_text(exc) + "\n")
        except FileNotFoundError:
            response = web.Response(status=410, text=_("This recording is no longer available.") + "\n")
        except PipelineError as exc:
            log.warning("web: %s", exc)
            response = web.Response(status=503, text=_("The recorder is busy or restarting; try again in a "
                                                       "minute.") + "\n")
        except web.HTTPException as exc:
            if exc.status == 404:
                text = _("Nothing here: check the link.")
            elif exc.status == 405:
                text = _("Only GET and HEAD are answered here.")
            else:
                text = exc.reason
            response = web.Response(status=exc.status, text=text + "\n", headers=exc.headers)
        self.answers[response.status] = self.answers.get(response.status, 0) + 1
        return response

    @staticmethod
    async def _secure(request: web.Request, response: web.StreamResponse) -> None:
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)

    def _verify(self, kind: Kind, ident: str, request: web.Request) -> Verified:
        return self.signer.verify(kind, ident, request.match_info["token"])

    def _format(self, request: web.Request, default: Format = "mp3") -> Format:
        given = request.query.get("format")
        if given is None:
            return default
        fmt = parse_format(given)
        if fmt is None:
            raise web.HTTPBadRequest(reason=_("Unknown format: use mp3 or opus."))
        return fmt

    def _io(self) -> concurrent.futures.Executor:
        if self._executor is None:
            raise PipelineError("the web server is stopping")
        return self._executor

    async def _meeting_of(self, mid: str) -> Meeting:
        try:
            return await self.catalog.meeting(mid)
        except NotFound:
            raise LinkRefused("deleted") from None

    async def _send(self, request: web.Request, meeting: Meeting, rec: Recording, fmt: Format,
                    filename: Optional[str] = None) -> web.StreamResponse:
        served = await self.catalog.served(meeting, rec, fmt, filename)
        response = await send_file(request, served, executor=self._io(), inline=request.query.get("play") == "1")
        log.info("web: recording %s (%s) of meeting %s: %d %s", rec.id, fmt, meeting.id, response.status,
                 response.headers.get("Content-Range", ""))
        return response

    # ------------------------------------------------------------------ handlers
    async def _robots(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="User-agent: *\nDisallow: /\n")

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        rid = request.match_info["rid"]
        self._verify("r", rid, request)
        fmt = self._format(request)
        try:
            rec = await self.catalog.recording(rid)
        except NotFound:
            raise LinkRefused("deleted") from None
        meeting = await self._meeting_of(rec.meeting_id)
        return await self._send(request, meeting, rec, fmt)

    async def _meeting_slash(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.path + "/" + (f"?{request.query_string}" if request.query_string else ""))

    async def _meeting_page(self, request: web.Request) -> web.StreamResponse:
        mid = request.match_info["mid"]
        verified = self._verify("m", mid, request)
        fmt = self._format(request)
        meeting = await self._meeting_of(mid)
        tracks = await self.catalog.tracks(meeting, fmt)
        length_ms = round((meeting.length_samples or 0) * 1000 / meeting.sample_rate)
        rows = [TrackRow(t.speaker, _clock(t.recording.duration_in_ms), _human_size(t.recording.size_bytes),
                         f"{t.recording.id}.{_ext(t.recording, fmt)}") for t in tracks]
        started = dt.datetime.fromtimestamp(meeting.started_at, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        expires = dt.datetime.fromtimestamp(verified.expires, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body = meeting_page(
            title=_("{channel}, {date}").format(channel=self.catalog.channel(meeting), date=self.catalog.date(meeting)),
            started=started, length=_clock(length_ms), tracks=rows, fmt=fmt, formats=FORMATS,
            zip_href=f"all.zip?format={fmt}", expires=expires)
        log.info("web: page of meeting %s (%d tracks)", meeting.id, len(rows))
        return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "private, no-cache"})

    async def _track(self, request: web.Request) -> web.StreamResponse:
        mid, rid = request.match_info["mid"], request.match_info["rid"]
        self._verify("m", mid, request)
        fmt = parse_format(request.match_info["ext"]) or "mp3"
        meeting = await self._meeting_of(mid)
        for track in await self.catalog.tracks(meeting, fmt):
            if track.recording.id == rid:
                return await self._send(request, meeting, track.recording, fmt, track.filename)
        raise web.HTTPNotFound()

    async def _meeting_zip(self, request: web.Request) -> web.StreamResponse:
        mid = request.match_info["mid"]
        self._verify("m", mid, request)
        fmt = self._format(request)
        meeting = await self._meeting_of(mid)
        entries = []
        for track in await self.catalog.tracks(meeting, fmt):
            served = await self.catalog.served(meeting, track.recording, fmt, track.filename)
            entries.append(ZipEntry(track.filename, served.path, served.size, track.recording.created_at))
        name = self.catalog.zip_name(meeting, fmt)
        response = await stream_zip(request, entries, filename_header=content_disposition(name))
        log.info("web: zip of meeting %s (%s, %d tracks)", meeting.id, fmt, len(entries))
        return response

    def __repr__(self) -> str:
        return f"<WebServer {self.host}:{self.bound_port} {'running' if self.running else 'stopped'}>"



def _ext(rec: Recording, fmt: Format) -> str:
    """A track link's extension: the format asked for, ``flac`` for a FLAC meeting's originals."""
    return "flac" if fmt == "mp3" and rec.path.endswith(".flac") else fmt
