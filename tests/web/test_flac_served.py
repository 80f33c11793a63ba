"""A FLAC meeting over the download server: ``audio/flac``, ``.flac`` names, the page's
links and the zip hold the FLACs byte for byte, and ``?format=opus`` makes Opus from FLAC."""

from __future__ import annotations

import asyncio
import hashlib
import io
import urllib.parse
import zipfile
from pathlib import Path
from typing import AsyncIterator

import pytest

from harness.simulate import SimulateOptions, SimulationResult, simulate
from tests.web.test_server import Served, _serve


@pytest.fixture(scope="module")
def recorded_flac(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    folder = tmp_path_factory.mktemp("flac-meeting")
    return asyncio.run(simulate(SimulateOptions(speakers=2, seconds=4.0, flush_interval=2.0, seed=3,
                                                data_dir=folder, workers=1, archive="flac")))


@pytest.fixture
async def served(recorded_flac: SimulationResult, tmp_path: Path) -> AsyncIterator[Served]:
    async for s in _serve(recorded_flac, tmp_path):
        yield s


async def test_flac_recordings_are_served_as_flac_and_zipped_whole(served: Served) -> None:
    recs = await served.recorder.library.recordings_for_meeting(served.result.meeting_id)
    assert len(recs) == 3 and all(r.path.endswith(".flac") for r in recs)
    for rec in recs:
        status, body, headers = await served.get(served.link("r", rec.id))
        assert status == 200 and headers["Content-Type"] == "audio/flac"
        assert hashlib.sha256(body).hexdigest() == rec.sha256 and body.startswith(b"fLaC")
        name = urllib.parse.unquote(headers["Content-Disposition"].split("filename*=UTF-8''")[1])
        assert name.endswith(".flac"), name
    page_url = served.link("m", served.result.meeting_id)
    status, body, _h = await served.get(page_url)
    html = body.decode()
    for rec in recs:
        assert f'href="{rec.id}.flac"' in html
        status, data, headers = await served.get(page_url + f"{rec.id}.flac")
        assert status == 200 and headers["Content-Type"] == "audio/flac"
        assert hashlib.sha256(data).hexdigest() == rec.sha256
    status, data, _h = await served.get(page_url + "all.zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert all(n.endswith(".flac") for n in zf.namelist())
        assert sorted(hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()) == sorted(r.sha256 for r in recs)
    status, data, headers = await served.get(served.link("r", recs[0].id, fmt="opus"))
    assert status == 200 and data[:4] == b"OggS" and headers["Content-Type"].startswith("audio/ogg")
