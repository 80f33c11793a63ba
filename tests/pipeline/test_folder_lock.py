"""One process owns a data folder (issue 8): a second recorder, ``harness recover`` or a
cog load on a folder in use is refused in one sentence naming the holder, and a holder
killed with SIGKILL leaves nothing locked.

The holder is a real second Python process running a real ``Recorder`` with a meeting
being recorded, as a second bot (or a forgotten ``harness simulate``) would be.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from chunkrecorder.objects import MeetingSettings, MeetingStatus
from chunkrecorder.pipeline import Recorder
from chunkrecorder.pipeline.folder_lock import FolderInUse
from chunkrecorder.store import SqlRecordingService
from tests.store.test_errors import assert_one_sentence

ROOT = Path(__file__).resolve().parents[2]

_HOLDER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from chunkrecorder.objects import MeetingSettings
    from chunkrecorder.pipeline import Recorder
    from chunkrecorder.store import SqlRecordingService

    async def main() -> None:
        folder = Path(sys.argv[1])
        async with SqlRecordingService(folder / "chunkrecorder.sqlite3") as store:
            rec = Recorder(store=store, data_dir=folder, workers=1, executor="thread")
            await rec.start()
            session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings())
            print(session.meeting.id, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            await rec.close()

    if __name__ == "__main__":
        asyncio.run(main())
""")


class Holder:
    """A second process recording a meeting in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.meeting_id = self.proc.stdout.readline().strip()
        assert len(self.meeting_id) == 16, "the holder did not start"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    h = Holder(tmp_path / "data")
    try:
        yield h
    finally:
        if h.proc.poll() is None:
            h.kill()


def _check_refusal(text: str, folder: Path, pid: int) -> None:
    assert_one_sentence(text)
    assert f"The data folder {folder} is in use by process {pid} on {socket.gethostname()} since 20" in text, text


async def test_a_recorder_refuses_a_folder_another_process_records_in(holder: Holder, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    async with SqlRecordingService(folder / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=folder, workers=1, executor="thread")
        with pytest.raises(FolderInUse) as caught:
            await rec.start()
        _check_refusal(str(caught.value), folder, holder.pid)
        # nothing was touched: the other process's meeting is still recording
        assert (await store.get_meeting(holder.meeting_id)).status is MeetingStatus.ACTIVE
        await rec.close()
        holder.stop()
        await rec.start()  # free once the holder has closed its recorder
        try:
            assert (await store.get_meeting(holder.meeting_id)).status is MeetingStatus.INTERRUPTED
        finally:
            await rec.close()


async def test_a_holder_killed_with_sigkill_leaves_the_folder_free(holder: Holder, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    holder.kill()
    async with SqlRecordingService(folder / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=folder, workers=1, executor="thread")
        report = await rec.start()
        try:
            assert report.interrupted == (holder.meeting_id,)  # its crash is recovered, by the new owner
        finally:
            await rec.close()


async def test_a_second_recorder_in_the_same_process_is_refused(tmp_path: Path) -> None:
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as store:
        first = Recorder(store=store, data_dir=tmp_path, workers=1, executor="thread")
        second = Recorder(store=store, data_dir=tmp_path, workers=1, executor="thread")
        await first.start()
        try:
            session = await first.start_meeting(guild_id=1, channel_id=2, started_by=3, settings=MeetingSettings())
            with pytest.raises(FolderInUse) as caught:
                await second.start()
            _check_refusal(str(caught.value), tmp_path, os.getpid())
            assert (await store.get_meeting(session.meeting.id)).status is MeetingStatus.ACTIVE
        finally:
            await first.close()
        await second.start()
        await second.close()


def test_harness_recover_refuses_a_folder_in_use(holder: Holder, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "harness", "recover", "--db", str(folder / "chunkrecorder.sqlite3"),
         "--data-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1
    line = out.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, out.stderr
    _check_refusal(line.removeprefix("error: "), folder, holder.pid)
    holder.stop()
    import sqlite3

    with sqlite3.connect(folder / "chunkrecorder.sqlite3") as db:  # the live meeting was not taken
        (status,) = db.execute("SELECT status FROM meetings WHERE id = ?", (holder.meeting_id,)).fetchone()
    assert status == "INTERRUPTED"  # closed by its own process, not promoted by the other
