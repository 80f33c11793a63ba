"""``simulate`` and ``recover``: the whole lifecycle, driven from the network edge.

``simulate`` builds a fake voice channel, connects to it through the same
``VoiceConnector`` seam the cog uses, and drives the real pipeline: ``Recorder``
with the real store and transcoder, ``start_meeting`` on the harness's clock,
``recorder.tick`` as time moves (the flushes happen there: the harness owns the tick
on its simulated clock, as the cog's ticker does on the wall clock), then
``stop_meeting`` (transcode wait, assembly, promotion). ``recover`` is what the cog
does at start-up after a crash: ``Recorder.start()``, then a promotion of each
meeting its report lists as awaiting one.

Both return a result object (tests read it directly) whose :meth:`as_json` is the
CLI's documented JSON contract.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from chunkrecorder.core.consent import ConsentGate, ConsentMode
from chunkrecorder.objects import MeetingSettings, MeetingStatus, RecordingKind, Strategy
from chunkrecorder.web import WebServerError

from .clock import SimulatedClock, WallClock
from .delivery import DeliveryOptions, HarnessNames, deliver
from .impairments import Impairments
from .network import FakeVoiceNetwork
from .scenario import SpeakerPlan
from .sources import Source, from_file, synthetic_speaker

__all__ = [
    "DB_NAME",
    "SPEAKERS_FILE",
    "RecoverResult",
    "SimulateOptions",
    "SimulationResult",
    "recover",
    "simulate",
]

log = logging.getLogger("harness")

DB_NAME = "chunkrecorder.sqlite3"
#: Sidecar in the data dir naming each harness user id, so ``recover`` can report names.
SPEAKERS_FILE = "harness-speakers.json"
#: Ids of the harness's fake members: speaker i is FIRST_USER_ID + i.
FIRST_USER_ID = 1001
GUILD_ID = 4242
CHANNEL_ID = 5151
#: The names the files' tags carry for the fake server and channel.
GUILD_NAME = "Harness guild"
CHANNEL_NAME = "Harness voice"
BOT_USER_ID = 9999

#: ``on_progress(phase, done, total)``: "streaming" (seconds), then the pipeline's phases.
ProgressHook = Callable[[str, float, float], None]


class HarnessError(RuntimeError):
    """A run that could not be done; the message is the CLI's one-line reason."""


# --------------------------------------------------------------------------- options
@dataclass
class SimulateOptions:
    """Everything ``python -m harness simulate`` accepts, plus what tests set directly.

    ``plans`` replaces ``speakers``/``sources`` with an explicit scenario (late
    joins, reconnects, chosen signals); ``corrupt`` splits evenly over bad MAC,
    truncated and garbage-Opus packets; ``join_leave`` and ``reconnect`` add the
    CLI's canned versions of those scenarios.
    """

    speakers: int = 3
    sources: Sequence[tuple[str, Path]] = ()
    seconds: float = 60.0
    flush_interval: float = 10.0
    strategy: Strategy = Strategy.HYBRID
    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    jitter_ms: float = 0.0
    corrupt: float = 0.0
    seed: int = 0
    db: Optional[Path] = None
    data_dir: Optional[Path] = None
    realtime: bool = False
    join_leave: bool = False
    reconnect: bool = False
    talk_spurts: bool = True
    channels: int = 1
    #: "mp3" or "flac" (``MeetingSettings.archive``)
    archive: str = "mp3"
    dave: bool = True
    plans: Optional[Sequence[SpeakerPlan]] = None
    impairments: Optional[Impairments] = None
    tick_s: float = 0.1
    workers: Optional[int] = None
    #: ``notice`` records everyone; ``optin`` only the speakers named in ``agree``.
    consent: ConsentMode = ConsentMode.NOTICE
    agree: Sequence[str] = ()
    #: ``(seconds, text)``: a note taken at that meeting time, as ``[p]record note`` does.
    notes: Sequence[tuple[float, str]] = ()
    #: After promotion: Opus copies, parts, a web server (``harness/delivery.py``).
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)

    def validate(self) -> None:
        if not 0 < self.seconds <= 24 * 3600:
            raise HarnessError(f"--seconds must be between 0 and 86400, not {self.seconds:g}")
        if self.plans is None and not self.sources and not 1 <= self.speakers <= 1000:
            raise HarnessError(f"--speakers must be between 1 and 1000, not {self.speakers}")
        names = [n for n, _ in self.sources]
        if len(set(names)) != len(names):
            raise HarnessError("each --source NAME must be different")
        try:
            MeetingSettings(strategy=Strategy(self.strategy), flush_interval_s=self.flush_interval,
                            channels=self.channels, archive=self.archive)
        except ValueError as exc:
            raise HarnessError(str(exc)) from None
        try:
            self.build_impairments()
        except ValueError as exc:
            raise HarnessError(str(exc)) from None
        if self.agree and ConsentMode(self.consent) is not ConsentMode.OPTIN:
            raise HarnessError("--agree names who agreed under --consent optin; add --consent optin")
        for at, text in self.notes:
            if not 0 <= at <= self.seconds:
                raise HarnessError(f"a note at {at:g} s is outside the meeting (0 to {self.seconds:g} s)")
            if not text.strip():
                raise HarnessError("a note needs some text: --note SECONDS=TEXT")

    def build_impairments(self) -> Impairments:
        if self.impairments is not None:
            return self.impairments
        third = self.corrupt / 3.0
        return Impairments(loss=self.loss, reorder=self.reorder, duplicate=self.duplicate,
                           jitter_ms=self.jitter_ms, bad_mac=third, truncated=third,
                           garbage_opus=third, seed=self.seed)


def build_plans(opts: SimulateOptions) -> tuple[list[SpeakerPlan], float]:
    """The speakers and the meeting length (files shorter than ``--seconds`` end it early)."""
    if opts.plans is not None:
        return list(opts.plans), opts.seconds
    sources: list[Source] = []
    if opts.sources:
        for name, path in opts.sources:
            sources.append(from_file(path, name=name, max_seconds=opts.seconds))
        longest = max(len(s.audio) for s in sources) / 48_000
        seconds = min(opts.seconds, longest)
    else:
        seconds = opts.seconds
        sources = [synthetic_speaker(i, seconds, seed=opts.seed, talk_spurts=opts.talk_spurts)
                   for i in range(opts.speakers)]
    plans = []
    for i, src in enumerate(sources):
        kwargs: dict[str, Any] = {}
        if opts.join_leave and len(sources) > 1:
            # Canned: the second speaker joins late, the last leaves early.
            if i == 1:
                kwargs["join_at"] = round(seconds * 0.25, 2)
            if i == len(sources) - 1:
                kwargs["leave_at"] = round(seconds * 0.75, 2)
        if opts.reconnect and i == 0:
            kwargs["reconnects"] = (round(seconds * 0.5, 2),)
        plans.append(SpeakerPlan(user_id=FIRST_USER_ID + i, source=src, name=src.name, **kwargs))
    return plans, seconds


# --------------------------------------------------------------------------- results
@dataclass
class RecordingInfo:
    id: str
    kind: str
    user_id: Optional[int]
    speaker: Optional[str]
    path: str
    duration_ms: int
    sha256: str
    size_bytes: int
    #: ``--format opus``: the cached Ogg Opus copy.
    opus_path: Optional[str] = None
    #: ``--split-limit``: the paths of the parts, in order (only for a file over the limit).
    parts: Optional[list[str]] = None
    opus_parts: Optional[list[str]] = None
    #: The file's tags as read back from it (Vorbis names: TITLE, ARTIST, ALBUM, ...).
    tags: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "user_id": self.user_id,
            "speaker": self.speaker,
            "path": self.path,
            "duration_ms": self.duration_ms,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "tags": dict(self.tags),
        }
        if self.opus_path is not None:
            out["opus_path"] = self.opus_path
        if self.parts is not None:
            out["parts"] = list(self.parts)
        if self.opus_parts is not None:
            out["opus_parts"] = list(self.opus_parts)
        return out


@dataclass
class SimulationResult:
    meeting_id: str
    status: str
    recordings: list[RecordingInfo]
    chunks: dict[str, int]
    packets: dict[str, int]
    wall_s: float
    cpu_s: float
    db: Path
    data_dir: Path
    seconds: float
    failed_chunks: int = 0
    length_ms: int = 0
    receive: dict[str, int] = field(default_factory=dict)
    network: Optional[FakeVoiceNetwork] = None
    plans: list[SpeakerPlan] = field(default_factory=list)
    #: ``[{"at_ms": ..., "text": ...}]`` in time order, and the Audacity label track.
    notes: list[dict[str, Any]] = field(default_factory=list)
    labels_path: Optional[str] = None
    #: The speakers recorded (under ``--consent optin``: those who agreed).
    recorded: list[int] = field(default_factory=list)
    #: ``--web``: "meeting" and each recording id -> its link.
    links: Optional[dict[str, str]] = None
    #: ``--web``: the server while it serves (None once it stopped).
    server: Any = None

    def as_json(self) -> dict[str, Any]:
        out = self._json()
        if self.links is not None:
            out["links"] = dict(self.links)
        return out

    def _json(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "status": self.status,
            "recordings": [r.as_json() for r in self.recordings],
            "chunks": dict(self.chunks),
            "packets": dict(self.packets),
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "db": str(self.db),
            "data_dir": str(self.data_dir),
            "length_ms": self.length_ms,
            "failed_chunks": self.failed_chunks,
            "notes": list(self.notes),
            "labels_path": self.labels_path,
        }

    def recording_for(self, user_id: Optional[int]) -> RecordingInfo:
        """The per-user recording of ``user_id``, or the mix for ``None``."""
        for r in self.recordings:
            if user_id is None and r.kind == RecordingKind.MIXED.value:
                return r
            if user_id is not None and r.kind == RecordingKind.PER_USER.value and r.user_id == user_id:
                return r
        raise KeyError(f"no recording for {'the mix' if user_id is None else user_id}")


@dataclass
class MeetingReport:
    meeting_id: str
    status: str
    recordings: list[RecordingInfo]
    chunks: dict[str, int]
    length_ms: int = 0
    failed_chunks: int = 0
    error: Optional[str] = None

    def as_json(self) -> dict[str, Any]:
        out = {
            "meeting_id": self.meeting_id,
            "status": self.status,
            "recordings": [r.as_json() for r in self.recordings],
            "chunks": dict(self.chunks),
            "length_ms": self.length_ms,
            "failed_chunks": self.failed_chunks,
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class RecoverResult:
    meetings: list[MeetingReport]
    wall_s: float
    cpu_s: float
    db: Path
    data_dir: Path

    def as_json(self) -> dict[str, Any]:
        return {
            "meetings": [m.as_json() for m in self.meetings],
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "db": str(self.db),
            "data_dir": str(self.data_dir),
        }


# --------------------------------------------------------------------------- helpers
class _CpuMeter:
    """CPU seconds of this process and its children (transcode workers may be processes)."""

    def __init__(self) -> None:
        self._start = self._total()

    @staticmethod
    def _total() -> float:
        own = time.process_time()
        dead = resource.getrusage(resource.RUSAGE_CHILDREN)
        alive = 0.0
        try:
            import psutil

            for child in psutil.Process().children(recursive=True):
                try:
                    t = child.cpu_times()
                    alive += t.user + t.system
                except psutil.Error:
                    pass
        except ImportError:  # pragma: no cover - psutil is present with Red
            pass
        return own + dead.ru_utime + dead.ru_stime + alive

    def elapsed(self) -> float:
        return self._total() - self._start


def resolve_paths(db: Optional[Path], data_dir: Optional[Path]) -> tuple[Path, Path]:
    """Defaults: a fresh temp dir holding both, kept after the run and printed."""
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="chunkrecorder-harness-"))
    data_dir = Path(data_dir).expanduser().resolve()
    if db is None:
        db = data_dir / DB_NAME
    db = Path(db).expanduser().resolve()
    for p, what in ((data_dir, "data dir"), (db.parent, "database folder")):
        if p.exists() and not p.is_dir():
            raise HarnessError(f"the {what} {p} is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"cannot create {exc.filename}: {exc.strerror}") from None
    if not os.access(data_dir, os.W_OK):
        raise HarnessError(f"the data dir {data_dir} is not writable")
    return db, data_dir


def _write_speakers(data_dir: Path, plans: Sequence[SpeakerPlan]) -> None:
    path = data_dir / SPEAKERS_FILE
    names: dict[str, str] = {}
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError):
        names = {}
    names.update({str(p.user_id): str(p.name) for p in plans})
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(names, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_speakers(data_dir: Path) -> dict[int, str]:
    try:
        raw = json.loads((data_dir / SPEAKERS_FILE).read_text())
        return {int(k): str(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _recording_infos(recordings: Sequence[Any], names: dict[int, str]) -> list[RecordingInfo]:
    out = []
    for r in recordings:
        kind = RecordingKind(r.kind).value
        uid = r.user_id if kind == RecordingKind.PER_USER.value else None
        out.append(RecordingInfo(
            id=r.id,
            kind=kind,
            user_id=uid,
            speaker=names.get(uid) if uid is not None else None,
            path=str(Path(r.path).resolve()),
            duration_ms=int(r.duration_in_ms),
            sha256=r.sha256,
            size_bytes=int(r.size_bytes),
            tags=_read_tags(Path(r.path)),
        ))
    return out


def _read_tags(path: Path) -> dict[str, str]:
    """A recording's tags read back from its file (empty if it cannot be read)."""
    from chunkrecorder.pipeline.tagging import read_tags

    try:
        return read_tags(path)
    except (OSError, ValueError) as exc:
        log.warning("tags of %s unreadable: %s", path, exc)
        return {}


def _agreed_ids(names: Sequence[str], plans: Sequence[SpeakerPlan]) -> list[int]:
    """The user ids of the speakers named in ``--agree``; an unknown name is an error."""
    by_name = {str(p.name): p.user_id for p in plans}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise HarnessError(f"--agree names no speaker {', '.join(unknown)} (speakers: {', '.join(by_name)})")
    return [by_name[n] for n in names]


def _progress_adapter(hook: Optional[ProgressHook]) -> Optional[Callable[[Any], None]]:
    if hook is None:
        return None

    def on_progress(p: Any) -> None:
        hook(str(getattr(p, "phase", "transcoding")), float(p.done), float(p.total))

    return on_progress


async def _open(db: Path, data_dir: Path, workers: Optional[int]) -> tuple[Any, Any, Any]:
    """The real store and a started recorder. Interrupted meetings are promoted by the
    caller, in the foreground with progress (the recorder never promotes by itself)."""
    from chunkrecorder.pipeline.recorder import Recorder
    from chunkrecorder.store import SqlRecordingService

    store = SqlRecordingService(db)
    await store.open()
    try:
        recorder = Recorder(store=store, data_dir=data_dir, workers=workers)
        report = await recorder.start()
    except BaseException:
        await store.close()
        raise
    return store, recorder, report


# --------------------------------------------------------------------------- simulate
async def simulate(opts: SimulateOptions, *, on_progress: Optional[ProgressHook] = None,
                   on_ready: Optional[Callable[[SimulationResult], None]] = None) -> SimulationResult:
    """Run one meeting start → stream → stop → promote; see the module docstring.

    ``on_ready`` is given the result once it is complete: after the delivery steps, and
    with ``--web`` while the server serves (before ``serve_seconds`` pass).
    """
    opts.validate()
    plans, seconds = build_plans(opts)
    if not plans:
        raise HarnessError("nobody to record: give --speakers or --source")
    db, data_dir = resolve_paths(opts.db, opts.data_dir)
    _write_speakers(data_dir, plans)
    names = {p.user_id: str(p.name) for p in plans}
    cpu = _CpuMeter()
    wall0 = time.perf_counter()

    store, recorder, _ = await _open(db, data_dir, opts.workers)
    link = None
    try:
        clock = WallClock() if opts.realtime else SimulatedClock()
        recorder.names = HarnessNames(names, CHANNEL_NAME, GUILD_NAME)
        net = FakeVoiceNetwork(clock=clock, impairments=opts.build_impairments(), seed=opts.seed, channel_name=CHANNEL_NAME,
                               dave=opts.dave, guild_id=GUILD_ID, channel_id=CHANNEL_ID,
                               bot_user_id=BOT_USER_ID)
        net.add_many(plans)
        link = await net.connector(net.channel)
        settings = MeetingSettings(strategy=Strategy(opts.strategy), flush_interval_s=opts.flush_interval,
                                   channels=opts.channels, archive=opts.archive)
        # The cog's consent gate, per frame before the pipeline: under optin only the
        # speakers who agreed are recorded at all.
        gate = ConsentGate(ConsentMode(opts.consent), agreed=_agreed_ids(opts.agree, plans))
        session = await recorder.start_meeting(guild_id=GUILD_ID, channel_id=CHANNEL_ID,
                                               started_by=plans[0].user_id, settings=settings, clock=clock,
                                               accept_user=gate.accepts)
        meeting_id = session.meeting.id
        net.rebase()  # the network's t=0 is the meeting's t=0
        link.receiver.set_sink(session.feed, channels=settings.channels)
        log.info("meeting %s: %d speaker(s), %.1f s, flush every %.1f s, %s", meeting_id, len(plans),
                 seconds, opts.flush_interval, Strategy(opts.strategy).value)

        # The meeting streams in stretches between the notes: each note is taken when the
        # meeting's clock reaches it, through the recorder's add_note as the cog does.
        done_s = 0.0
        for at, text in sorted(opts.notes, key=lambda n: n[0]) + [(seconds, "")]:
            at = min(at, seconds)
            stream_progress = None
            if on_progress is not None:
                def stream_progress(done: int, total: int, _base: float = done_s) -> None:
                    on_progress("streaming", _base + done * 0.02, seconds)

            await net.run(at - done_s, on_tick=recorder.tick, tick_s=opts.tick_s, progress=stream_progress)
            done_s = max(done_s, at)
            if text:
                await recorder.add_note(meeting_id, author_id=plans[0].user_id, text=text)
        await net.drain(on_tick=recorder.tick)
        await asyncio.to_thread(link.receiver.flush)
        counts: dict[str, int] = {}
        pipeline_progress = _progress_adapter(on_progress)

        async def progress(p: Any) -> None:
            # Temp rows are deleted at promotion: count them while they still exist.
            if getattr(p, "phase", None) in ("assembling", "done") and not counts:
                counts.update((await store.chunk_counts(meeting_id)).as_dict())
            if pipeline_progress is not None:
                pipeline_progress(p)

        promotion = await recorder.stop_meeting(meeting_id, progress=progress)
        if not counts or not sum(counts.values()):
            counts.update((await store.chunk_counts(meeting_id)).as_dict())
        meeting = await store.get_meeting(meeting_id)
        net._sync_stats()
        rstats = link.receiver.stats
        packets = {
            "sent": net.stats.sent,
            "lost": net.stats.lost,
            "dropped_corrupt": rstats.dropped_corrupt,
            "duplicates": net.stats.duplicates,
            "reordered": net.stats.reordered,
            "corrupted": net.stats.corrupted,
            "late": rstats.late,
            "concealed": rstats.concealed,
            "unknown_ssrc": rstats.unknown_ssrc,
        }
        result = SimulationResult(
            meeting_id=meeting_id,
            status=MeetingStatus(meeting.status).value,
            recordings=_recording_infos(promotion.recordings, names),
            chunks=counts,
            packets=packets,
            wall_s=time.perf_counter() - wall0,
            cpu_s=cpu.elapsed(),
            db=db,
            data_dir=data_dir,
            seconds=seconds,
            failed_chunks=int(getattr(promotion, "failed_chunks", 0)),
            length_ms=int(getattr(promotion, "length_ms", 0)),
            receive=rstats.as_dict(),
            network=net,
            plans=plans,
            notes=[{"at_ms": n.at_ms, "text": n.text} for n in promotion.notes],
            labels_path=str(Path(promotion.labels_path).resolve()) if promotion.labels_path else None,
            recorded=[p.user_id for p in plans if gate.accepts(p.user_id)],
        )
        if opts.delivery.anything:
            try:
                await deliver(result, recorder, opts.delivery, names=HarnessNames(names, net.channel.name, GUILD_NAME),
                              on_ready=on_ready)
            except WebServerError as exc:
                raise HarnessError(str(exc)) from None
        elif on_ready is not None:
            on_ready(result)
        return result
    finally:
        if link is not None and link.is_connected():
            await link.disconnect()
        await recorder.close()
        await store.close()


# --------------------------------------------------------------------------- recover
async def recover(db: Path, data_dir: Path, *, on_progress: Optional[ProgressHook] = None,
                  workers: Optional[int] = None) -> RecoverResult:
    """Start-up recovery on an existing store, then promote every interrupted meeting."""
    db = Path(db).expanduser().resolve()
    data_dir = Path(data_dir).expanduser().resolve()
    if not db.is_file():
        raise HarnessError(f"no database at {db}")
    if not data_dir.is_dir():
        raise HarnessError(f"no data dir at {data_dir}")
    names = _read_speakers(data_dir)
    cpu = _CpuMeter()
    wall0 = time.perf_counter()
    store, recorder, report = await _open(db, data_dir, workers)
    recorder.names = HarnessNames(names, CHANNEL_NAME, GUILD_NAME)
    reports: list[MeetingReport] = []
    try:
        candidates = await store.meetings_with_status(MeetingStatus.INTERRUPTED, MeetingStatus.FAILED,
                                                      MeetingStatus.STOPPING, MeetingStatus.ACTIVE)
        # The recorder promotes nothing by itself: every meeting its report lists
        # (and any other unfinished one) is promoted here, in the foreground.
        ids = list(dict.fromkeys([*report.interrupted, *report.awaiting_promotion, *(m.id for m in candidates)]))
        for meeting_id in ids:
            counts: dict[str, int] = {}
            pipeline_progress = _progress_adapter(on_progress)

            async def progress(p: Any, _mid: str = meeting_id, _counts: dict[str, int] = counts) -> None:
                if getattr(p, "phase", None) in ("assembling", "done") and not _counts:
                    _counts.update((await store.chunk_counts(_mid)).as_dict())
                if pipeline_progress is not None:
                    pipeline_progress(p)

            error = None
            recordings: list[Any] = []
            length_ms = failed = 0
            meeting = await store.get_meeting(meeting_id)
            if meeting.status != MeetingStatus.PROMOTED:
                try:
                    result = await recorder.promote(meeting_id, progress=progress)
                    recordings = list(result.recordings)
                    length_ms = int(getattr(result, "length_ms", 0))
                    failed = int(getattr(result, "failed_chunks", 0))
                except Exception as exc:  # reported per meeting; the others still run
                    error = str(exc) or type(exc).__name__
                    log.error("meeting %s could not be promoted: %s", meeting_id, error)
            else:
                recordings = await store.recordings_for_meeting(meeting_id)
                length_ms = int((meeting.length_samples or 0) * 1000 / meeting.sample_rate)
            if not counts:
                counts.update((await store.chunk_counts(meeting_id)).as_dict())
            meeting = await store.get_meeting(meeting_id)
            reports.append(MeetingReport(
                meeting_id=meeting_id,
                status=MeetingStatus(meeting.status).value,
                recordings=_recording_infos(recordings, names),
                chunks=counts,
                length_ms=length_ms,
                failed_chunks=failed,
                error=error,
            ))
    finally:
        await recorder.close()
        await store.close()
    return RecoverResult(meetings=reports, wall_s=time.perf_counter() - wall0, cpu_s=cpu.elapsed(),
                         db=db, data_dir=data_dir)

