"""What ``Recorder.start`` does before anything else: make every row movable again.

After a crash (or a kill) the store and the files can disagree in a few known ways,
each repaired here idempotently:

* meetings left ACTIVE or STOPPING: nobody records them now → INTERRUPTED, with the
  length of what reached disk;
* chunk files with no row (a crash between a flush's write and its insert) → adopted:
  the row is rebuilt from the file name (user, seq), the directory (meeting) and the
  file length (body = samples − prime − tail);
* half-written ``.tmp`` files → deleted (an atomic write never finished);
* IN_PROGRESS rows (their worker died) and FAILED rows below the attempt limit
  (the crash came between FAILED and the re-queue) → QUEUED;
* DONE rows whose PCM is still there (crash between DONE and the delete) → cleaned;
* files of meetings the database does not know (it was lost) → adopted back from the
  meeting's manifest where possible, else kept and counted (``adoption``): never deleted.

The report's ``awaiting_promotion`` lists the interrupted meetings; promoting them is
the recorder's owner's decision (the cog asks each guild's ``autopromote`` setting,
the harness's ``recover`` promotes them all), never a task of its own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from ..audio import mp3
from ..objects.records import Meeting, MeetingStatus
from ..objects.results import RecoveryReport
from ..store.service import SqlRecordingService
from .adoption import Adoption
from .blocking import run_blocking
from .paths import TMP_SUFFIX, Layout, remove_files
from .timeline import Grid

__all__ = ["RecoveryReport", "Recovery", "adopt_orphans", "settle_length"]

log = logging.getLogger("red.chunkrecorder.pipeline.recovery")


async def adopt_orphans(store: SqlRecordingService, layout: Layout, meeting: Meeting) -> int:
    """Give every complete chunk PCM of ``meeting`` without a row its row; returns how many."""
    folder = layout.meeting_dir(meeting.id)
    names = await run_blocking(_listdir, folder)
    candidates = []
    for name in names:
        if name.endswith(TMP_SUFFIX):
            await run_blocking(remove_files, [folder / name])
            continue
        parsed = layout.parse_chunk(name)
        if parsed is not None and parsed.ext == "pcm":
            candidates.append((name, parsed))
    if not candidates:
        return 0
    # PCMs on disk are the few not yet encoded: look up only their part of the meeting.
    have = await store.chunk_keys(meeting.id, from_seq=min(p.seq for _, p in candidates))
    removals = await store.removals()
    if removals.users:
        erased = [folder / name for name, p in candidates
                  if (p.user_id, p.seq) not in have
                  and removals.covers(meeting.id, p.user_id, await run_blocking(_mtime, folder / name))]
        if erased:
            # an erasure removed their rows and a crash came before their files: finish it, never adopt
            await run_blocking(remove_files, erased)
            gone = {path.name for path in erased}
            candidates = [(name, p) for name, p in candidates if name not in gone]
    grid = Grid.for_interval(meeting.flush_interval_s, meeting.sample_rate)
    frame_bytes = 2 * meeting.channels
    adopted: list[int] = []
    for name, parsed in candidates:
        if (parsed.user_id, parsed.seq) in have:
            continue
        size = await run_blocking(os.path.getsize, folder / name)
        body = size // frame_bytes - grid.prime - grid.tail
        if size % frame_bytes or body <= 0 or body > grid.chunk_samples:
            log.error("meeting %s: %s is not a whole chunk (%d bytes); left alone", meeting.id, name, size)
            continue
        await store.insert_temp_recording(
            meeting_id=meeting.id,
            user_id=parsed.user_id,
            guild_id=meeting.guild_id,
            pcm_path=str(folder / name),
            seq=parsed.seq,
            start_sample=grid.start(parsed.seq),
            sample_count=body,
            prime_samples=grid.prime,
            tail_samples=grid.tail,
        )
        adopted.append(parsed.user_id)
    if adopted:
        await store.ensure_tracks(meeting.id, adopted)
        log.warning("meeting %s: adopted %d chunk file(s) that had no row", meeting.id, len(adopted))
    return len(adopted)


def _mtime(path: "os.PathLike[str]") -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("inf")


def _listdir(folder: "os.PathLike[str]") -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


async def settle_length(store: SqlRecordingService, meeting: Meeting) -> int:
    """The length of an unfinished meeting: what reached disk, in samples.

    A meeting stopped cleanly already has its length; an interrupted one ends where
    its last flushed window (or last chunk on disk) ends. Also makes every window up
    to that length count as flushed, so the assembler treats gaps as silence.
    """
    grid = Grid.for_interval(meeting.flush_interval_s, meeting.sample_rate)
    pipe = await store.meeting_pipeline(meeting.id)
    if meeting.length_samples is not None:
        length = meeting.length_samples
    else:
        rows = await store.get_temp_recordings_for_meeting(meeting.id)
        ends = [r.start_sample + r.sample_count for r in rows]
        length = max([pipe.flushed_windows * grid.chunk_samples, *ends])
    await store.set_flushed_windows(meeting.id, grid.windows_for(length), length_samples=length)
    return length


class Recovery:
    """Runs the start-up repairs in order; ``max_attempts`` is the transcoder's limit."""

    def __init__(self, store: SqlRecordingService, layout: Layout, *, max_attempts: int) -> None:
        self._store = store
        self._layout = layout
        self._max_attempts = max_attempts

    async def run(self) -> RecoveryReport:
        store = self._store
        # Files of meetings the database does not know first (a lost database): the
        # meetings adopted back are INTERRUPTED and take the ordinary path below.
        readopted, unknown = await Adoption(store, self._layout).run()
        interrupted: list[str] = []
        adopted = 0
        for meeting in await store.meetings_left_open():
            adopted += await adopt_orphans(store, self._layout, meeting)
            length = await settle_length(store, meeting)
            await store.set_meeting_status(
                meeting.id, MeetingStatus.INTERRUPTED, length_samples=length,
                note="interrupted by a restart",
            )
            interrupted.append(meeting.id)
            log.warning("meeting %s was left %s; now INTERRUPTED (%.1f s on disk)",
                        meeting.id, meeting.status.value, length / meeting.sample_rate)
        waiting = await store.meetings_with_status(MeetingStatus.INTERRUPTED, MeetingStatus.FAILED)
        for meeting in waiting:
            if meeting.id not in interrupted:
                adopted += await adopt_orphans(store, self._layout, meeting)
        requeued = await store.requeue_in_progress()
        for row in await store.failed_temp_recordings(max_attempts=self._max_attempts):
            await store.retry_temp_recording(row.id)
            requeued += 1
        cleaned = 0
        for row in await store.done_uncleaned_temp_recordings():
            # DONE means the MP3 was verified and written (and, if gone, assembled).
            await run_blocking(remove_files, [row.pcm_path])
            await store.mark_temp_recording_cleaned(row.id)
            cleaned += 1
        return RecoveryReport(
            interrupted=tuple(interrupted),
            requeued=requeued,
            adopted=adopted,
            cleaned=cleaned,
            awaiting_promotion=tuple(
                m.id for m in await store.meetings_with_status(MeetingStatus.INTERRUPTED)
            ),
            readopted=readopted,
            unknown=unknown,
        )


def expected_frames(meeting: Meeting) -> Optional[int]:
    """MP3 frames every track of a finished meeting has: its length rounded up to frames."""
    if meeting.length_samples is None:
        return None
    return mp3.frames_for(meeting.length_samples)
