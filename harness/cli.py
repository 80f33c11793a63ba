"""``python -m harness``: the stable command-line contract tests, benchmarks and users rely on.

    python -m harness simulate [--speakers N] [--source NAME=FILE ...] [--seconds S]
        [--flush-interval S] [--strategy per_user|mixed|hybrid] [--loss P] [--reorder P]
        [--duplicate P] [--jitter-ms J] [--seed K] [--db PATH] [--data-dir DIR]
        [--realtime] [--consent notice|optin] [--agree NAME[,NAME...]] [--note SECONDS=TEXT ...]
        [--json] [--format opus] [--split-limit BYTES] [--web HOST:PORT [--serve-seconds S]]
    python -m harness recover --db PATH --data-dir DIR [--json]

stdout holds the result only (a summary, or with ``--json`` exactly one JSON object);
logs and the progress bar go to stderr. A failure exits non-zero with one line on
stderr saying why; argument errors exit 2, as argparse does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO

from chunkrecorder.core.consent import ConsentMode
from chunkrecorder.objects import Strategy
from chunkrecorder.store import StoreError

from .delivery import DeliveryOptions
from .progress import ProgressBar
from .simulate import HarnessError, RecoverResult, SimulateOptions, SimulationResult, recover, simulate
from .sources import SourceError

__all__ = ["main", "parse_args", "run"]

log = logging.getLogger("harness")


def _number(text: str, ok: Callable[[float], bool], rule: str) -> float:
    """A float argument that satisfies ``ok``, or argparse's one-line error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text} {rule}")
    return value


def _probability(text: str) -> float:
    return _number(text, lambda p: 0.0 <= p <= 1.0, "is not a probability between 0 and 1")


def _positive(text: str) -> float:
    return _number(text, lambda v: v > 0, "must be more than 0")


def _non_negative(text: str) -> float:
    return _number(text, lambda v: v >= 0, "must not be negative")


def _bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65_535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (port 0: any free port)")
    return host, int(port)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value < 4096:
        raise argparse.ArgumentTypeError(f"{text} is too small: parts hold whole frames and pages (4096 or more)")
    return value


def _source(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FILE")
    return name, Path(path)


def _note(text: str) -> tuple[float, str]:
    at, sep, words = text.partition("=")
    try:
        seconds = float(at)
    except ValueError:
        seconds = -1.0
    if not sep or not words.strip() or seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECONDS=TEXT")
    return seconds, words


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nobody")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Drive chunkrecorder's real pipeline from a fake Discord voice channel.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="record one simulated meeting start to finish")
    sim.add_argument("--speakers", type=int, default=3, help="synthetic speakers (default 3)")
    sim.add_argument("--source", type=_source, action="append", default=[], metavar="NAME=FILE",
                     help="a speaker NAME playing FILE from t=0 (repeatable; replaces --speakers)")
    sim.add_argument("--seconds", type=_positive, default=60.0, help="meeting length (default 60)")
    sim.add_argument("--flush-interval", type=_positive, default=10.0,
                     help="seconds per chunk, 1-300 (default 10)")
    sim.add_argument("--strategy", choices=[s.value for s in Strategy], default=Strategy.HYBRID.value)
    sim.add_argument("--loss", type=_probability, default=0.0, help="packet loss probability")
    sim.add_argument("--reorder", type=_probability, default=0.0, help="reordering probability")
    sim.add_argument("--duplicate", type=_probability, default=0.0, help="duplication probability")
    sim.add_argument("--jitter-ms", type=_non_negative, default=0.0, help="max extra delay per packet")
    sim.add_argument("--corrupt", type=_probability, default=0.0,
                     help="probability of a damaged packet (bad MAC, truncated, garbage Opus)")
    sim.add_argument("--join-leave", action="store_true",
                     help="the second speaker joins at 25%%, the last leaves at 75%%")
    sim.add_argument("--reconnect", action="store_true",
                     help="the first speaker's client reconnects with a new SSRC at 50%%")
    sim.add_argument("--no-talk-spurts", action="store_true",
                     help="synthetic speakers talk without pauses")
    sim.add_argument("--archive", choices=["mp3", "flac"], default="mp3",
                     help="what each track is kept as: mp3 (default) or flac (lossless)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--db", type=Path, default=None, help="database file (default: in the data dir)")
    sim.add_argument("--data-dir", type=Path, default=None, help="default: a new temp dir, kept")
    sim.add_argument("--realtime", action="store_true", help="stream at wall-clock pace")
    sim.add_argument("--consent", choices=[m.value for m in ConsentMode], default=ConsentMode.NOTICE.value,
                     help="notice: record everyone (default); optin: only the speakers named by --agree")
    sim.add_argument("--agree", type=_names, action="append", default=[], metavar="NAME[,NAME...]",
                     help="under --consent optin, the speakers who agreed to be recorded")
    sim.add_argument("--note", type=_note, action="append", default=[], metavar="SECONDS=TEXT",
                     help="a note taken at that meeting time (repeatable): a label and a chapter of the mix")
    sim.add_argument("--json", action="store_true", help="one JSON object on stdout")
    sim.add_argument("--format", choices=["mp3", "opus"], default="mp3",
                     help="opus: also make each recording's Ogg Opus copy (opus_path in the report)")
    sim.add_argument("--split-limit", type=_limit, default=None, metavar="BYTES",
                     help="cut each recording over BYTES into parts (parts in the report)")
    sim.add_argument("--web", type=_bind, default=None, metavar="HOST:PORT",
                     help="serve the meeting with the cog's web server; the report gains links")
    sim.add_argument("--serve-seconds", type=_non_negative, default=0.0, metavar="S",
                     help="with --web: keep serving S seconds after the report (default 0)")

    rec = sub.add_parser("recover", help="start-up recovery of a crashed run, then promote it")
    rec.add_argument("--db", type=Path, required=True)
    rec.add_argument("--data-dir", type=Path, required=True)
    rec.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def options_from_args(args: argparse.Namespace) -> SimulateOptions:
    return SimulateOptions(
        speakers=args.speakers,
        sources=list(args.source),
        seconds=args.seconds,
        flush_interval=args.flush_interval,
        strategy=Strategy(args.strategy),
        loss=args.loss,
        reorder=args.reorder,
        duplicate=args.duplicate,
        jitter_ms=args.jitter_ms,
        corrupt=args.corrupt,
        seed=args.seed,
        archive=args.archive,
        db=args.db,
        data_dir=args.data_dir,
        realtime=args.realtime,
        join_leave=args.join_leave,
        reconnect=args.reconnect,
        talk_spurts=not args.no_talk_spurts,
        consent=ConsentMode(args.consent),
        agree=[n for group in args.agree for n in group],
        notes=list(args.note),
        delivery=DeliveryOptions(web=args.web, serve_seconds=args.serve_seconds, opus=args.format == "opus",
                                 split_limit=args.split_limit),
    )


def _setup_logging(verbose: int, stream: TextIO) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _fmt_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _summary_simulate(r: SimulationResult) -> str:
    p = r.packets
    lines = [
        f"Meeting {r.meeting_id}: {r.status}, {r.seconds:g} s of audio in {r.wall_s:.1f} s "
        f"(CPU {r.cpu_s:.1f} s)",
        "Chunks: " + ", ".join(f"{v} {k}" for k, v in r.chunks.items() if v) if any(r.chunks.values())
        else "Chunks: none",
        f"Packets: {p['sent']} sent, {p['lost']} lost, {p['dropped_corrupt']} dropped as corrupt, "
        f"{p['duplicates']} duplicated",
    ]
    lines += _summary_recordings(r.recordings)
    if r.labels_path:
        lines.append(f"Notes: {len(r.notes)} (labels {r.labels_path}; chapters in the mix)")
    for rec in r.recordings:
        if rec.opus_path:
            lines.append(f"  Opus copy of {rec.id}: {rec.opus_path}")
        if rec.parts:
            lines.append(f"  {rec.id} in {len(rec.parts)} parts: {', '.join(rec.parts)}")
    if r.links:
        lines.append(f"Meeting page: {r.links['meeting']}")
        lines += [f"  {key}: {url}" for key, url in r.links.items() if key != "meeting"]
    lines.append(f"Database: {r.db}")
    return "\n".join(lines)


def _summary_recordings(recordings: Sequence[Any]) -> list[str]:
    if not recordings:
        return ["No recordings."]
    folders = sorted({str(Path(rec.path).parent) for rec in recordings})
    lines = [f"MP3s in {', '.join(folders)}:"]
    for rec in recordings:
        who = rec.speaker or (str(rec.user_id) if rec.user_id is not None else "mix")
        lines.append(f"  {who:<12} {rec.kind:<8} {rec.duration_ms / 1000:8.1f} s "
                     f"{_fmt_size(rec.size_bytes):>9}  {rec.path}")
    return lines


def _summary_recover(r: RecoverResult) -> str:
    if not r.meetings:
        return f"Nothing to recover in {r.db}."
    lines = []
    for m in r.meetings:
        head = f"Meeting {m.meeting_id}: {m.status}"
        if m.error:
            head += f" ({m.error})"
        lines.append(head)
        lines += _summary_recordings(m.recordings)
    lines.append(f"Recovered in {r.wall_s:.1f} s (CPU {r.cpu_s:.1f} s). Database: {r.db}")
    return "\n".join(lines)


async def run(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO) -> int:
    """The CLI without the process around it: tests call this in-process."""
    bar = None if args.json else ProgressBar(stderr)

    def on_progress(phase: str, done: float, total: float) -> None:
        if bar is not None:
            bar.update(phase, done, total, unit=" s" if phase == "streaming" else "")

    printed = False

    def report(result: Any) -> None:
        """The result on stdout, flushed: with --web, while the links still work."""
        nonlocal printed
        if bar is not None:
            bar.close()
        if args.json:
            stdout.write(json.dumps(result.as_json()) + "\n")
        else:
            stdout.write((_summary_simulate(result) if args.command == "simulate" else _summary_recover(result)) + "\n")
        stdout.flush()
        printed = True

    try:
        if args.command == "simulate":
            if args.serve_seconds and args.web is None:
                stderr.write("error: --serve-seconds needs --web\n")
                return 2
            result: Any = await simulate(options_from_args(args), on_progress=on_progress, on_ready=report)
            failed = result.status != "PROMOTED"
            reason = f"meeting {result.meeting_id} ended {result.status}"
        else:
            result = await recover(args.db, args.data_dir, on_progress=on_progress)
            bad = [m for m in result.meetings if m.status != "PROMOTED"]
            failed = bool(bad)
            reason = "; ".join(f"meeting {m.meeting_id} is {m.status}" + (f": {m.error}" if m.error else "")
                               for m in bad)
    except (HarnessError, SourceError, StoreError) as exc:
        if bar is not None:
            bar.close()
        stderr.write(f"error: {exc}\n")
        return 1
    finally:
        if bar is not None:
            bar.close()
    if not printed:
        report(result)
    if failed:
        stderr.write(f"error: {reason}\n")
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    _setup_logging(args.verbose, sys.stderr)
    try:
        return asyncio.run(run(args, stdout=sys.stdout, stderr=sys.stderr))
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:  # the one-line reason; the traceback is for -v
        log.debug("harness failed", exc_info=True)
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return 1
