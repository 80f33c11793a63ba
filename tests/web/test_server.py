"""The download server, as a browser or a download manager meets it: a real aiohttp client
against the real server on localhost, serving a meeting the harness recorded through the
real pipeline.

What a member notices: the download is the stored file, byte for byte; a resumed
download gets exactly the rest; a forged, expired, revoked or dead link is refused
with the status and sentence that say why; the meeting page lists every track and the
zip holds them all; the Opus copy is made once, lines up, and goes with the recording.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import logging
import shutil
import sqlite3
import urllib.parse
import zipfile
from pathlib import Path
from typing import AsyncIterator, Optional

import aiohttp
import numpy as np
import pytest

from chunkrecorder.audio import mp3
from chunkrecorder.pipeline.recorder import Recorder
from chunkrecorder.store import SqlRecordingService
from chunkrecorder.web import Catalog, LinkSigner, WebServer, WebServerError, new_secret
from harness.simulate import CHANNEL_ID, SimulateOptions, SimulationResult, simulate

SECRET = bytes.fromhex(new_secret())


class _Names:
    """The harness's speakers, one with a name that must be escaped on the page."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names

    def speaker(self, guild_id: int, user_id: int) -> Optional[str]:
        return self.names.get(user_id)

    def channel(self, guild_id: int, channel_id: int) -> Optional[str]:
        return "Stand<up>" if channel_id == CHANNEL_ID else None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    folder = tmp_path_factory.mktemp("meeting")
    return asyncio.run(simulate(SimulateOptions(speakers=2, seconds=6.0, flush_interval=2.0, seed=3,
                                                data_dir=folder, workers=1)))


class Served:
    def __init__(self, result: SimulationResult, recorder: Recorder, server: WebServer) -> None:
        self.result = result
        self.recorder = recorder
        self.server = server
        self.http: aiohttp.ClientSession

    def link(self, kind: str, ident: str, ttl_s: float = 3600, fmt: Optional[str] = None) -> str:
        return self.server.link(kind, ident, ttl_s=ttl_s, fmt=fmt)  # type: ignore[arg-type]

    async def get(self, url: str, **headers: str) -> tuple[int, bytes, "aiohttp.typedefs.LooseHeaders"]:
        async with self.http.get(url, headers=headers, allow_redirects=False) as r:
            return r.status, await r.read(), r.headers


async def _serve(result: SimulationResult, tmp_path: Path, *, executor: str = "thread") -> AsyncIterator[Served]:
    # Each test gets its own copy of the meeting (some delete files); rows hold absolute paths.
    data = tmp_path / "data"
    shutil.copytree(result.data_dir, data)
    with sqlite3.connect(data / "chunkrecorder.sqlite3") as db:
        db.execute("UPDATE recordings SET path = replace(path, ?, ?)", (str(result.data_dir), str(data)))
    store = SqlRecordingService(data / "chunkrecorder.sqlite3")
    await store.open()
    recorder = Recorder(store=store, data_dir=data, workers=1, executor=executor)  # type: ignore[arg-type]
    await recorder.start()
    names = {p.user_id: (f"<b>{p.name}</b>" if i == 0 else str(p.name)) for i, p in enumerate(result.plans)}
    server = WebServer(Catalog(recorder, _Names(names)), LinkSigner(SECRET), host="127.0.0.1", port=0)
    await server.start()
    served = Served(result, recorder, server)
    try:
        async with aiohttp.ClientSession() as http:
            served.http = http
            yield served
    finally:
        await server.stop()
        await recorder.close()
        await store.close()


@pytest.fixture
async def served(recorded: SimulationResult, tmp_path: Path) -> AsyncIterator[Served]:
    async for s in _serve(recorded, tmp_path):
        yield s


async def _recordings(s: Served) -> list:
    return await s.recorder.library.recordings_for_meeting(s.result.meeting_id)


async def test_a_recording_link_downloads_the_stored_file_with_its_name_and_validators(served: Served) -> None:
    for rec in await _recordings(served):
        status, body, headers = await served.get(served.link("r", rec.id))
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == rec.sha256 == hashlib.sha256(Path(rec.path).read_bytes()).hexdigest()
        assert headers["Content-Type"] == "audio/mpeg" and int(headers["Content-Length"]) == len(body)
        assert headers["ETag"] == f'"{rec.sha256}"' and headers["Accept-Ranges"] == "bytes"
        disposition = headers["Content-Disposition"]
        assert disposition.startswith("attachment;")
        name = urllib.parse.unquote(disposition.split("filename*=UTF-8''")[1])
        date = await _date(served)
        who = "mixed" if rec.user_id is None or rec.kind.value == "mixed" else None
        assert name.startswith(f"Stand_up_ {date} ") and name.endswith(".mp3"), name
        if who:
            assert name == f"Stand_up_ {date} mixed.mp3"
        # The player asks for it inline.
        _s, _b, h = await served.get(served.link("r", rec.id) + "?play=1")
        assert h["Content-Disposition"].startswith("inline;")
        assert h["Referrer-Policy"] == "no-referrer" and h["X-Content-Type-Options"] == "nosniff"


async def _date(s: Served) -> str:
    meeting = await s.recorder.library.get_meeting(s.result.meeting_id)
    return dt.datetime.fromtimestamp(meeting.started_at, dt.timezone.utc).strftime("%Y-%m-%d")


async def test_ranges_resume_exactly_and_a_range_outside_the_file_is_416(served: Served) -> None:
    rec = (await _recordings(served))[0]
    whole = Path(rec.path).read_bytes()
    url = served.link("r", rec.id)
    status, body, headers = await served.get(url, Range="bytes=1000-")
    assert status == 206 and body == whole[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
    status, body, _h = await served.get(url, Range="bytes=-500")
    assert status == 206 and body == whole[-500:]
    status, body, _h = await served.get(url, Range="bytes=10-19")
    assert status == 206 and body == whole[10:20]
    status, body, headers = await served.get(url, Range=f"bytes={len(whole)}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    # Several ranges, or a range of another version (If-Range), get the whole file.
    status, body, _h = await served.get(url, Range="bytes=0-1,5-6")
    assert status == 200 and body == whole
    status, body, _h = await served.get(url, Range="bytes=0-1", **{"If-Range": '"another"'})
    assert status == 200 and body == whole
    status, body, _h = await served.get(url, **{"If-None-Match": f'"{rec.sha256}"'})
    assert status == 304 and body == b""


async def test_forged_expired_revoked_and_dead_links_are_refused_with_the_right_status(served: Served) -> None:
    recs = await _recordings(served)
    rec, other = recs[0], recs[1]
    good = served.link("r", rec.id)
    assert (await served.get(good))[0] == 200
    # A MAC with one character changed, or a valid token moved to another id: forged.
    head, mac = good.rsplit(".", 1)
    forged = head + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    status, body, _h = await served.get(forged)
    assert status == 403 and b"not valid" in body
    assert (await served.get(good.replace(rec.id, other.id)))[0] == 403
    # Expired: a link made an hour ago with a one-minute life.
    past = LinkSigner(SECRET, clock=lambda: __import__("time").time() - 3600)
    old = served.server.base_url + past.path("r", rec.id, ttl_s=60)
    status, body, _h = await served.get(old)
    assert status == 410 and b"expired" in body
    # Revoked: the owner rotates the secret; old links say so, new ones work.
    served.server.signer = LinkSigner(bytes.fromhex(new_secret()), retired=[served.server.signer.kid])
    status, body, _h = await served.get(good)
    assert status == 410 and b"revoked" in body
    fresh = served.link("r", rec.id)
    assert (await served.get(fresh))[0] == 200
    # A key id nobody ever had: forged, not revoked.
    assert (await served.get(good.replace(f".{past.kid}.", ".AAAAAAAA."))) [0] == 403
    # Deleted: the link was genuine, the recording is gone.
    await served.recorder.delete_recording(rec.id, guild_id=rec.guild_id or 0)
    status, body, _h = await served.get(fresh)
    assert status == 410 and b"deleted" in body
    # No such page, no listing, no path into the file system.
    base = served.server.base_url
    for path in ("/", "/r/", f"/r/{rec.id}", "/recordings/", "/m/../../etc/passwd", f"/r/{rec.id}/../x"):
        assert (await served.get(base + path))[0] == 404, path
    async with served.http.post(fresh) as r:
        assert r.status == 405


async def test_the_meeting_page_lists_every_track_and_the_zip_holds_them_all(served: Served) -> None:
    recs = await _recordings(served)
    page_url = served.link("m", served.result.meeting_id)
    assert page_url.endswith("/")
    status, body, headers = await served.get(page_url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = body.decode()
    assert "<b>" not in html and "&lt;b&gt;speaker1&lt;/b&gt;" in html  # names are escaped
    assert "Stand&lt;up&gt;" in html and "<script" not in html
    for rec in recs:
        assert f'href="{rec.id}.mp3"' in html
        status, data, _h = await served.get(page_url + f"{rec.id}.mp3")
        assert status == 200 and hashlib.sha256(data).hexdigest() == rec.sha256
    # Without the trailing slash the page redirects to it (relative links need it).
    status, _b, headers = await served.get(page_url.rstrip("/"))
    assert status == 302 and headers["Location"].endswith("/")
    # A recording of another meeting is not reachable through this meeting's link.
    assert (await served.get(page_url + "0123456789abcdef.mp3"))[0] == 404
    status, data, headers = await served.get(page_url + "all.zip")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert len(names) == len(recs) == len(set(names))
        contents = sorted(hashlib.sha256(zf.read(n)).hexdigest() for n in names)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert contents == sorted(r.sha256 for r in recs)
    # A recording link does not open the meeting, nor the other way round.
    token = page_url.rstrip("/").rsplit("/", 1)[1]
    assert (await served.get(f"{served.server.base_url}/r/{recs[0].id}/{token}"))[0] == 403


async def test_links_are_logged_by_id_never_by_token(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    rec = (await _recordings(served))[0]
    url = served.link("r", rec.id)
    token = url.rsplit("/", 1)[1]
    with caplog.at_level(logging.DEBUG):
        await served.get(url)
        await served.get(served.link("m", served.result.meeting_id))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert rec.id in text and served.result.meeting_id in text
    assert token not in text and token.split(".")[2] not in text


async def test_a_port_in_use_is_one_sentence(served: Served) -> None:
    other = WebServer(served.server.catalog, served.server.signer, host="127.0.0.1", port=served.server.bound_port)
    with pytest.raises(WebServerError, match=rf"^Port {served.server.bound_port} on 127.0.0.1 is already in use"):
        await other.start()
    assert not other.running


async def test_the_opus_copy_is_made_once_lines_up_and_goes_with_the_recording(
        recorded: SimulationResult, tmp_path: Path) -> None:
    # The real encoder processes make the copy (the job kind beside the MP3 chunks).
    async for s in _serve(recorded, tmp_path, executor="process"):
        recs = await _recordings(s)
        rec = recs[0]
        url = s.link("r", rec.id, fmt="opus")
        (status, first, headers), (status2, second, _h) = await asyncio.gather(s.get(url), s.get(url))
        assert status == status2 == 200 and first == second
        assert s.recorder.compactor.made == 1  # two requests, one conversion
        assert headers["Content-Type"].startswith("audio/ogg") and headers["ETag"] == f'"{hashlib.sha256(first).hexdigest()}"'
        copy = Path(rec.path).with_suffix(".opus")
        assert copy.read_bytes() == first
        status, tail, _h = await s.get(url, Range="bytes=1000-")
        assert status == 206 and tail == first[1000:]
        # It decodes to the MP3's length and lines up with it.
        import av

        with av.open(io.BytesIO(first)) as f:
            pcm = np.concatenate([fr.to_ndarray() for fr in f.decode(audio=0)], axis=1)[0]
        ref = mp3.decode(Path(rec.path).read_bytes(), channels=1)[:, 0]
        assert len(pcm) == len(ref)
        # Asked again later: served from the cache, no new conversion.
        assert (await s.get(url))[1] == first and s.recorder.compactor.made == 1
        # The page in Opus, and the zip in Opus.
        page = s.link("m", s.result.meeting_id)
        status, body, _h = await s.get(page + "?format=opus")
        assert status == 200 and f'href="{rec.id}.opus"' in body.decode()
        status, data, _h = await s.get(page + "all.zip?format=opus")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert all(n.endswith(".opus") for n in zf.namelist()) and len(zf.namelist()) == len(recs)
        # Deleting the meeting deletes every copy with it.
        copies = [Path(r.path).with_suffix(".opus") for r in recs]
        assert all(c.is_file() for c in copies)
        await s.recorder.delete_meeting(s.result.meeting_id, guild_id=rec.guild_id or 0)
        assert not any(c.exists() for c in copies)
        assert (await s.get(page))[0] == 410


async def test_without_sendfile_the_thread_reads_serve_the_same_bytes(served: Served,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the kernel cannot copy file to socket (TLS in the bot, some platforms).
    monkeypatch.setenv("AIOHTTP_NOSENDFILE", "1")
    rec = (await _recordings(served))[0]
    whole = Path(rec.path).read_bytes()
    status, body, _h = await served.get(served.link("r", rec.id))
    assert status == 200 and body == whole
    status, body, _h = await served.get(served.link("r", rec.id), Range="bytes=1000-")
    assert status == 206 and body == whole[1000:]


async def test_stopping_with_a_download_in_flight_ends_it_and_frees_the_port(served: Served) -> None:
    # A member's slow download must not hold the cog's unload: the server stops, the
    # client's connection ends (the download can resume later with a Range request).
    rec = (await _recordings(served))[0]
    big = Path(rec.path).with_name("big.mp3")
    big.write_bytes(Path(rec.path).read_bytes() * 700)  # ~30 MiB: more than the sockets buffer
    meeting = await served.recorder.library.get_meeting(rec.meeting_id)
    store = served.recorder.store
    from chunkrecorder.store import NewRecording

    large = await store.insert_persistent_recording(meeting.id, NewRecording(
        kind=rec.kind, user_id=12345, filename=big.name, path=str(big), duration_in_ms=1,
        sha256=hashlib.sha256(big.read_bytes()).hexdigest(), size_bytes=big.stat().st_size))
    server = WebServer(served.server.catalog, served.server.signer, host="127.0.0.1", port=0, shutdown_s=0.2)
    await server.start()
    port = server.bound_port
    async with served.http.get(server.link("r", large.id, ttl_s=60)) as r:
        assert r.status == 200
        await r.content.read(10)  # started, then reading slowly
        await server.stop()
        with pytest.raises(aiohttp.ClientError):
            await r.read()
    # The port is free for the next server (a reload, `web on` again), as aiohttp binds it.
    again = WebServer(served.server.catalog, served.server.signer, host="127.0.0.1", port=port)
    await again.start()
    try:
        assert again.bound_port == port
    finally:
        await again.stop()
