"""Fault injection for issue 8's invariant: seeded schedules of kills, full disks and lost databases.

A *schedule* (``Schedule.make(seed)``) records one or two meetings and then restarts as
often as it takes, in a real child process each run (``python -m tests.support.faults
child ...``):

* **kill -9 at random points**: the child sends itself SIGKILL at the N-th write the
  pipeline makes into the data folder, half-way through that write (so a ``.part`` append
  or a chunk file is cut short), or after a random number of wall seconds (a kill between
  any two statements, the database's transactions included);
* **ENOSPC windows** of random length on the chunks folder and on the recordings folder;
* **the database deleted** (with its WAL) between two runs.

How the faults get in: a *write hook*. The child wraps ``open`` (``builtins.open`` and
``io.open``): every open for writing of a file under ``chunks/`` or ``recordings/`` counts
as one write; inside an ENOSPC window of that folder it raises ``OSError(ENOSPC)`` as a
full disk would; at the kill's write it writes half the bytes and kills the process. No
FUSE and no root needed; SQLite's own writes (C code) are not hooked. Encoding runs in
threads in the child (the encoder processes would not see the hook); it is the same LAME
through ``encode_worker``. Every other part is real: store, sessions, assembly, recovery,
adoption, repair.

Ground truth is the child's *journal*: after a window's chunk files are durable (the
session's ``_write_window`` returned) the child appends a line per speaker chunk. The
final run (no faults) promotes and repairs everything, runs a cleanup with a TTL of 0,
and the parent then checks the invariant (:func:`verify`): every journaled chunk's audio
is in its speaker's final file at its place, or its window is a reported gap whose chunk
is still on disk awaiting a repair; and no file is unknown to the database.

``python -m tests.support.faults run --schedules 50 [--first-seed 1000]`` runs many
schedules from the command line; the pytest test runs a few (``--schedules N`` there too).
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import errno
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DB = "chunkrecorder.sqlite3"
JOURNAL = "journal.txt"
FLUSH_S = 1.0


# ------------------------------------------------------------------------------------------- plans
@dataclass
class MeetingPlan:
    seconds: float
    speakers: list[int]  # user ids; each speaks speech_like(seconds, seed=user id) from t=0
    stop_timeout_s: float
    channel_id: int


@dataclass
class RunPlan:
    kill_at_write: Optional[int] = None
    kill_after_s: Optional[float] = None
    enospc: list[tuple[str, int, int]] = field(default_factory=list)  # (folder, first write, writes)
    delete_db_before: bool = False

    @property
    def faulty(self) -> bool:
        return bool(self.kill_at_write or self.kill_after_s or self.enospc)


@dataclass
class Schedule:
    seed: int
    meetings: list[MeetingPlan]
    runs: list[RunPlan]

    @classmethod
    def make(cls, seed: int) -> "Schedule":
        rng = random.Random(seed)
        users = rng.sample(range(11, 40), 6)  # nobody speaks in two meetings: a voice is its speaker's
        meetings = [
            MeetingPlan(seconds=round(rng.uniform(2.5, 6.0), 2),
                        speakers=users[3 * i : 3 * i + rng.choice((1, 2, 2, 3))],
                        stop_timeout_s=rng.choice((0.5, 2.0, 10.0)), channel_id=100 + i)
            for i in range(rng.choice((1, 1, 2)))
        ]
        # about how many writes recording them takes: a PCM, an MP3 and an append per chunk
        writes = sum(3 * int(m.seconds / FLUSH_S + 1) * (len(m.speakers) + 1) for m in meetings)
        runs: list[RunPlan] = []
        for r in range(rng.randint(1, 3)):
            run = RunPlan()
            for folder in ("chunks", "recordings"):
                if rng.random() < 0.6:
                    run.enospc.append((folder, rng.randint(0, writes if r == 0 else 10), rng.randint(1, 40)))
            kind = rng.random()
            if kind < 0.5:
                run.kill_at_write = rng.randint(1, writes if r == 0 else 12)
            elif kind < 0.85:
                run.kill_after_s = round(rng.uniform(0.05, 2.0 if r == 0 else 0.8), 2)
            run.delete_db_before = r > 0 and rng.random() < 0.35
            runs.append(run)
        runs.append(RunPlan(delete_db_before=bool(runs) and rng.random() < 0.25))  # the final, clean run
        return cls(seed, meetings, runs)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Schedule":
        raw = json.loads(text)
        return cls(raw["seed"], [MeetingPlan(**m) for m in raw["meetings"]],
                   [RunPlan(**{**r, "enospc": [tuple(w) for w in r["enospc"]]}) for r in raw["runs"]])


# ------------------------------------------------------------------------------------------- the hook
class WriteHook:
    """Counts the pipeline's writes into the data folder; refuses some (ENOSPC) or kills at one."""

    def __init__(self, data: Path, run: RunPlan) -> None:
        self.chunks = str(data / "chunks") + os.sep
        self.recordings = str(data / "recordings") + os.sep
        self.run = run
        self.writes = {"chunks": 0, "recordings": 0}
        self.total = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._open = builtins.open

    def install(self) -> None:
        builtins.open = self.open  # type: ignore[assignment]
        io.open = self.open  # type: ignore[assignment]
        if self.run.kill_after_s:
            timer = threading.Timer(self.run.kill_after_s, os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not any(c in mode for c in "wax+") or not isinstance(file, (str, os.PathLike)):
            return self._open(file, mode, *args, **kwargs)
        path = os.fspath(file)
        folder = "chunks" if path.startswith(self.chunks) else "recordings" if path.startswith(self.recordings) else None
        if folder is None:
            return self._open(file, mode, *args, **kwargs)
        with self._lock:
            n = self.writes[folder]
            self.writes[folder] = n + 1
            self.total += 1
            total = self.total
        for where, first, count in self.run.enospc:
            if where == folder and first <= n < first + count:
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device (fault injection)", path)
        fh = self._open(file, mode, *args, **kwargs)
        if self.run.kill_at_write is not None and total == self.run.kill_at_write:
            return _KillingFile(fh)
        return fh


class _KillingFile:
    """A file whose first write stops half-way, with the process."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._fh.write(view[: len(view) // 2])
        self._fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> "_KillingFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


# ------------------------------------------------------------------------------------------- the child
def _journal_writes(data: Path) -> None:
    """Append a line per speaker chunk once a window's files are durable (the ground truth)."""
    from chunkrecorder.objects import MIX_USER_ID
    from chunkrecorder.pipeline.session import RecordingSession

    original = RecordingSession._write_window
    fd = os.open(data / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write_window(self: RecordingSession, k: int, length: Optional[int]) -> Any:
        written = original(self, k, length)
        body = self.grid.body(k, length)
        for user_id, _path in written:
            if user_id != MIX_USER_ID:
                os.write(fd, f"{self.meeting.id} {user_id} {k} {self.grid.start(k)} {body}\n".encode())
        return written

    RecordingSession._write_window = write_window  # type: ignore[method-assign]


async def _child(data: Path, schedule: Schedule, run_index: int) -> dict[str, Any]:
    from chunkrecorder.objects import MeetingSettings, MeetingStatus, StoreError
    from chunkrecorder.pipeline import Recorder, RetryPolicy
    from chunkrecorder.store import SqlRecordingService
    from tests.support.pipeline import Clock, Speaker, play
    from tests.support.signals import speech_like

    run = schedule.runs[run_index]
    final = run_index == len(schedule.runs) - 1
    hook = WriteHook(data, run)
    hook.install()
    _journal_writes(data)
    out: dict[str, Any] = {"run": run_index, "errors": []}
    async with SqlRecordingService(data / DB) as store:
        rec = Recorder(store=store, data_dir=data, workers=2, executor="thread",
                       retry=RetryPolicy(3, 0.05, 0.2), jitter_margin_s=0.2)
        report = await rec.start()
        out["readopted"] = list(report.readopted)
        try:
            if run_index == 0:
                for m in schedule.meetings:
                    clock = Clock()
                    session = await rec.start_meeting(guild_id=1, channel_id=m.channel_id, started_by=3,
                                                      settings=MeetingSettings(flush_interval_s=FLUSH_S),
                                                      clock=clock)
                    speakers = [Speaker(u, speech_like(m.seconds, seed=u)) for u in m.speakers]
                    await play(session, clock, speakers, until_s=m.seconds, tick=rec.tick)
                    for attempt in range(60):  # as an admin would: stop again until it goes
                        try:
                            await rec.stop_meeting(session.meeting.id, timeout_s=m.stop_timeout_s)
                            break
                        except StoreError as exc:  # FlushError (stop again), PipelineError, PromotionTimeout
                            out["errors"].append(f"stop: {exc}")
                            if type(exc).__name__ != "FlushError":
                                break
                            await asyncio.sleep(0.05)
            for meeting in await store.meetings_with_status(MeetingStatus.INTERRUPTED, MeetingStatus.FAILED,
                                                            MeetingStatus.STOPPING):
                try:
                    await asyncio.wait_for(rec.promote(meeting.id), 20 if final else 5)
                except (StoreError, asyncio.TimeoutError) as exc:
                    out["errors"].append(f"promote {meeting.id}: {exc!r}")
            for mid in await store.all_meeting_ids():
                if (await store.get_meeting(mid)).status is MeetingStatus.PROMOTED and await store.gap_count(mid):
                    try:
                        await rec.repair(mid, timeout_s=15 if final else 1)
                    except StoreError as exc:
                        out["errors"].append(f"repair {mid}: {exc}")
            if final:
                await rec.wait_idle(30)
                for mid in await store.all_meeting_ids():
                    if await store.gap_count(mid):
                        await rec.repair(mid, timeout_s=15)
                cleanup = await rec.cleanup(temp_ttl_s=0.0, retention_days=0)
                out["cleanup"] = asdict(cleanup)
                out["unknown"] = rec.unknown.files
        finally:
            await rec.close()
    out["writes"] = hook.total
    out["refused"] = hook.refused
    return out


def child_main(argv: list[str]) -> int:
    data, schedule, run_index = Path(argv[0]), Schedule.from_json(Path(argv[1]).read_text()), int(argv[2])
    result = asyncio.run(_child(data, schedule, run_index))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# ------------------------------------------------------------------------------------------- the parent
@dataclass
class Outcome:
    seed: int
    runs: list[dict[str, Any]]
    killed: int
    db_deleted: int
    chunks: int
    gaps: int


def run_schedule(seed: int, data: Path, *, timeout_s: float = 90.0) -> Outcome:
    """Every run of one schedule in a child process, then :func:`verify`."""
    schedule = Schedule.make(seed)
    data.mkdir(parents=True, exist_ok=True)
    plan = data.parent / f"schedule-{seed}.json"
    plan.write_text(schedule.to_json())
    results: list[dict[str, Any]] = []
    killed = deleted = 0
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for i, run in enumerate(schedule.runs):
        if run.delete_db_before:
            for name in (DB, DB + "-wal", DB + "-shm"):
                (data / name).unlink(missing_ok=True)
            deleted += 1
        proc = subprocess.run([sys.executable, "-m", "tests.support.faults", "child", str(data), str(plan), str(i)],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
        if proc.returncode == -signal.SIGKILL and run.faulty:
            killed += 1
            results.append({"run": i, "killed": True})
            continue
        if proc.returncode != 0:
            raise AssertionError(f"schedule {seed} run {i} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    chunks, gaps = verify(data, schedule, results[-1])
    return Outcome(seed, results, killed, deleted, chunks, gaps)


def verify(data: Path, schedule: Schedule, final: dict[str, Any]) -> tuple[int, int]:
    """The invariant after the final run; returns (journaled chunks checked, gaps left)."""
    from chunkrecorder.audio import mp3
    from tests.support.signals import decode_file, snr_db, speech_like

    seconds = {u: m.seconds for m in schedule.meetings for u in m.speakers}
    assert final.get("unknown") == 0, f"files the database does not know: {final}"
    journal = set()
    if (data / JOURNAL).exists():
        for line in (data / JOURNAL).read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:  # a line a kill cut short is not ground truth
                journal.add((parts[0], int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])))
    with sqlite3.connect(data / DB) as db:
        status = dict(db.execute("SELECT id, status FROM meetings"))
        recordings = {(m, u): p for m, u, p in db.execute(
            "SELECT meeting_id, user_id, path FROM recordings WHERE kind = 'per_user'")}
        gaps = {(m, u, s) for m, u, s in db.execute("SELECT meeting_id, user_id, seq FROM gaps")}
        chunks = {(m, u, s): (p, mp) for m, u, s, p, mp in db.execute(
            "SELECT meeting_id, user_id, seq, pcm_path, mp3_path FROM temp_recordings")}
        lengths = dict(db.execute("SELECT id, length_samples FROM meetings"))
    decoded: dict[tuple[str, int], np.ndarray] = {}
    for mid, user, seq, start, body in sorted(journal):
        where = f"schedule {schedule.seed}: meeting {mid} speaker {user} window {seq}"
        assert status.get(mid) == "PROMOTED", f"{where}: its meeting is {status.get(mid)}, not finished"
        if (mid, user, seq) in gaps:
            pcm, mp3_path = chunks.get((mid, user, seq), (None, None))
            assert pcm and (Path(pcm).exists() or (mp3_path and Path(mp3_path).exists())), \
                f"{where}: reported as a gap but nothing of it is kept for the repair"
            continue
        assert (mid, user) in recordings, f"{where}: reached disk, but no file holds it"
        if (mid, user) not in decoded:
            decoded[(mid, user)] = decode_file(recordings[(mid, user)])
        audio = decoded[(mid, user)]
        length = lengths[mid]
        assert len(audio) == mp3.frames_for(length) * mp3.FRAME, f"{where}: the file is not the meeting's length"
        source = np.zeros(length, dtype=np.float64)
        signal_ = speech_like(seconds[user], seed=user).astype(np.float64)
        n = min(length, len(signal_) // 960 * 960)
        source[:n] = signal_[:n]
        lo, hi = start + 1200, min(length, start + body) - 1200
        if hi - lo < 4800:
            continue  # too short a tail to judge
        mask = np.zeros(len(source), dtype=bool)
        mask[lo:hi] = True
        if np.dot(source[mask], source[mask]) < 1e3 * mask.sum():
            continue  # quiet there
        snr = snr_db(audio, source, mask)
        assert snr > 12, f"{where}: reached disk but is not in its file (SNR {snr:.1f} dB) and no gap says so"
    return len(journal), len(gaps)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tests.support.faults")
    sub = parser.add_subparsers(dest="command", required=True)
    many = sub.add_parser("run", help="run schedules and check the invariant after each")
    many.add_argument("--schedules", type=int, default=20)
    many.add_argument("--first-seed", type=int, default=1)
    many.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    import tempfile

    base = args.dir or Path(tempfile.mkdtemp(prefix="chunkrecorder-faults-"))
    totals = {"killed": 0, "db_deleted": 0, "chunks": 0, "gaps": 0}
    failed = []
    t0 = time.monotonic()
    for seed in range(args.first_seed, args.first_seed + args.schedules):
        try:
            out = run_schedule(seed, base / f"s{seed}" / "data")
        except AssertionError as exc:
            failed.append(seed)
            print(f"seed {seed}: FAILED: {exc}", flush=True)
            continue
        for k in totals:
            totals[k] += getattr(out, k)
        print(f"seed {seed}: ok ({len(out.runs)} runs, {out.killed} killed, {out.db_deleted} database(s) "
              f"deleted, {out.chunks} chunks checked, {out.gaps} gaps left)", flush=True)
    print(f"{args.schedules - len(failed)}/{args.schedules} schedules kept the invariant in "
          f"{time.monotonic() - t0:.0f} s: {totals}; failed seeds: {failed or 'none'}; data in {base}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
