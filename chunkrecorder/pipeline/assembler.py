"""Builds each track's final MP3 as its chunks complete, so stop does not grow with length.

Chunk MP3s of one track concatenate into one gapless stream (see ``audio.mp3``), so a
track's file is its chunks' bytes in seq order. Instead of joining them all at stop
(O(meeting length) of I/O at the worst moment), the assembler appends each chunk to
``recordings/recording_<meeting>_<user>.mp3.part`` as soon as it and every chunk
before it are done, then records ``(assembled_seq, assembled_bytes)`` in the
``tracks`` table, then deletes the chunk's MP3. Stop then only has the last chunks
to append and a rename to do.

Crash safety: the ``.part`` file is truncated to ``assembled_bytes`` before every
append, so bytes written by an append whose row update never happened are cut off
and appended again; a chunk's MP3 is deleted only after the row says it is in the
file. Every step can be re-run and produces the same bytes.

A window with no chunk row for a track (the track was silent there, or the speaker
had not joined yet) gets a cached encoding of silence of the window's length: MP3
frames of digital silence are identical bytes, and they decode to zeros, so the
file still starts at t=0 and has the meeting's full length.

Silence never stands in for recorded audio without the database saying so: when a
final assembly fills a window whose chunk failed (or is still failing and the
promoter gave up waiting for it), or finds a chunk's MP3 unreadable, it records a
*gap* (``gaps`` table) in the same transaction as the track's advance. The chunk's
row and PCM stay, and a repair (``repair.py``) splices it in later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..audio import flac, id3, mp3
from ..objects.records import MIX_USER_ID, Meeting, MeetingStatus, RecordingKind, TempRecording, TranscodeStatus
from ..objects.results import NewGap, NewRecording, TrackAssembly
from ..store.service import SqlRecordingService
from .blocking import run_blocking
from .paths import Layout, fsync_dir, remove_files
from .timeline import Grid

__all__ = ["Assembler", "AssemblyError", "AssemblyStatus"]

log = logging.getLogger("red.chunkrecorder.pipeline.assembler")


class AssemblyError(RuntimeError):
    """A track's file disagrees with its row in a way re-running cannot repair."""


@dataclass(frozen=True, slots=True)
class AssemblyStatus:
    """Where a meeting's tracks stand after one assembly pass."""

    windows: int
    tracks: int
    complete_tracks: int
    appended_chunks: int
    silent_chunks: int
    failed_chunks: int
    promoted: bool = False

    @property
    def complete(self) -> bool:
        return self.complete_tracks == self.tracks


@dataclass(slots=True)
class _Hash:
    """Running sha256 of a track file's first ``size`` bytes (valid only in this process)."""

    sha: "hashlib._Hash"
    size: int


_Piece = Union[bytes, str]


@dataclass(frozen=True, slots=True)
class _Spec:
    """One window's piece: bytes (silence) or a chunk file's path, its nominal 1152-sample
    frames, and (for a FLAC chunk, whose frames carry their position) its start and body."""

    piece: _Piece
    frames: int
    start: int
    body: int


class Assembler:
    """Appends finished chunks to their tracks' ``.part`` files, one meeting at a time."""

    def __init__(self, store: SqlRecordingService, layout: Layout) -> None:
        self._store = store
        self._layout = layout
        self._locks: dict[str, asyncio.Lock] = {}
        self._hashes: dict[tuple[str, int], _Hash] = {}
        #: FLAC tracks: the running measurement of their ``.part`` (``flac.Measure``), by
        #: (meeting, user); valid while its byte count is the track's ``assembled_bytes``
        self._measures: dict[tuple[str, int], flac.Measure] = {}
        self._silent_frame: dict[tuple[int, int, int, int], bytes] = {}

    def lock(self, meeting_id: str) -> asyncio.Lock:
        lock = self._locks.get(meeting_id)
        if lock is None:
            lock = self._locks[meeting_id] = asyncio.Lock()
        return lock

    def forget_track(self, meeting_id: str, user_id: int) -> None:
        self._hashes.pop((meeting_id, user_id), None)
        self._measures.pop((meeting_id, user_id), None)

    def forget(self, meeting_id: str) -> None:
        self._locks.pop(meeting_id, None)
        for key in [k for k in self._hashes if k[0] == meeting_id]:
            del self._hashes[key]
        for key in [k for k in self._measures if k[0] == meeting_id]:
            del self._measures[key]

    def forget_if_idle(self, meeting_id: str) -> None:
        """``forget`` unless a pass holds the meeting's lock (it forgets when it ends, or
        the next pass does): a finished meeting's late pass (a gap encoded at last) must
        not leave its state behind for the bot's lifetime."""
        lock = self._locks.get(meeting_id)
        if lock is not None and lock.locked():
            return
        self._locks.pop(meeting_id, None)
        for key in [k for k in self._hashes if k[0] == meeting_id]:
            del self._hashes[key]
        for key in [k for k in self._measures if k[0] == meeting_id]:
            del self._measures[key]

    # ------------------------------------------------------------------ assembling
    async def run(self, meeting_id: str, *, final: bool = False) -> AssemblyStatus:
        """Append every chunk that is ready, in seq order, to every track of the meeting.

        ``final`` (promotion, after waiting for the queue): a chunk that FAILED for
        good is replaced by silence and counted, instead of holding its track back.
        """
        async with self.lock(meeting_id):
            pipe = await self._store.meeting_pipeline(meeting_id)
            meeting = await self._store.get_meeting(meeting_id)
            if meeting.status is MeetingStatus.PROMOTED:
                tracks = await self._store.tracks_for_meeting(meeting_id)
                return AssemblyStatus(pipe.flushed_windows, len(tracks), len(tracks), 0, 0, 0, promoted=True)
            grid = Grid.for_interval(meeting.flush_interval_s, meeting.sample_rate)
            windows = pipe.flushed_windows
            tracks = await self._store.tracks_for_meeting(meeting_id)
            gapped = {(g.user_id, g.seq) for g in await self._store.gaps_for_meeting(meeting_id)} if final else set()
            appended = silent = failed = complete = 0
            for track in tracks:
                a, s, f = await self._advance(meeting, pipe.quality, grid, track, windows, final, gapped,
                                              pipe.archive)
                appended, silent, failed = appended + a, silent + s, failed + f
                if track.assembled_seq + a + s + f >= windows:
                    complete += 1
            return AssemblyStatus(windows, len(tracks), complete, appended, silent, failed)

    async def _advance(
        self, meeting: Meeting, quality: int, grid: Grid, track: TrackAssembly, windows: int, final: bool,
        gapped: set[tuple[int, int]], archive: str = "mp3",
    ) -> tuple[int, int, int]:
        seq = track.assembled_seq
        if seq >= windows:
            return 0, 0, 0
        rows = {r.seq: r for r in await self._store.temp_recordings_for_track(
            meeting.id, track.user_id, from_seq=seq, limit=windows - seq)}
        pieces: list[_Spec] = []
        done: dict[int, TempRecording] = {}  # piece index → the chunk it appends
        gaps: list[NewGap] = []
        n_chunk = n_silent = 0
        s = seq
        while s < windows:
            body = grid.body(s, meeting.length_samples)
            frames = mp3.frames_for(body)
            row = rows.get(s)
            if row is None:
                pieces.append(_Spec(await self._silence(meeting, quality, frames, archive, grid.start(s), body),
                                    frames, grid.start(s), body))
                n_silent += 1
            elif row.transcode_status is TranscodeStatus.DONE and row.mp3_path:
                done[len(pieces)] = row
                pieces.append(_Spec(row.mp3_path, frames, grid.start(s), body))
                n_chunk += 1
            elif final and (row.transcode_status is TranscodeStatus.FAILED or (track.user_id, s) in gapped):
                # failed for good, or still failing and the promotion stopped waiting for it
                reason = row.last_error or "not encoded yet"
                log.error("meeting %s track %s chunk %d is not encoded (%s); silence stands in and the "
                          "gap is recorded for a repair", meeting.id, track.user_id, s, reason)
                pieces.append(_Spec(await self._silence(meeting, quality, frames, archive, grid.start(s), body),
                                    frames, grid.start(s), body))
                gaps.append(NewGap(track.user_id, s, row.start_sample, row.sample_count, reason))
            else:
                break
            s += 1
        if not pieces:
            return 0, 0, 0
        key = (meeting.id, track.user_id)
        running = self._hashes.get(key)
        if running is not None and running.size != track.assembled_bytes:
            running = None
        part = self._layout.part_path(meeting.id, track.user_id, archive)
        measure: Optional[flac.Measure] = None
        if archive == "flac":
            known = self._measures.get(key)
            measure = known.copy() if known is not None and known.bytes == track.assembled_bytes else None
            if measure is None and track.assembled_bytes == 0:
                measure = flac.Measure(meeting.sample_rate, meeting.channels)
        size, frames_added, sha, unreadable, measure = await run_blocking(
            _append, part, track.assembled_bytes, pieces, running.sha.copy() if running else None,
            await self._silence(meeting, quality, 1), archive, meeting.channels, meeting.sample_rate, measure,
        )
        for index in unreadable:
            row = done.pop(index)
            gaps.append(NewGap(track.user_id, row.seq, row.start_sample, row.sample_count,
                               "its encoded chunk was missing or damaged when it was assembled"))
        n_chunk -= len(unreadable)
        await self._store.advance_track(
            meeting.id, track.user_id, from_seq=seq, to_seq=s, bytes_=size,
            frames=track.assembled_frames + frames_added, gaps=gaps,
            filled=[r.seq for r in done.values() if (track.user_id, r.seq) in gapped],
        )
        if sha is not None:
            self._hashes[key] = _Hash(sha, size)
        if measure is not None and measure.bytes == size:
            self._measures[key] = measure
        # in the track's file now (the row just said so): the chunk MP3s may go
        await run_blocking(remove_files, [r.mp3_path for r in done.values()])
        return n_chunk, n_silent, len(gaps)

    async def _silence(self, meeting: Meeting, quality: int, frames: int, archive: str = "mp3",
                       start: int = 0, body: int = 0) -> bytes:
        if archive == "flac":  # numbered for its window: made each time (a few bytes per 4608 samples)
            return flac.silence(start, body, channels=meeting.channels, sample_rate=meeting.sample_rate)
        key = (meeting.channels, meeting.bitrate, quality, meeting.sample_rate)
        frame = self._silent_frame.get(key)
        if frame is None:
            frame = self._silent_frame[key] = await run_blocking(
                silent_frame, meeting.channels, meeting.bitrate, quality, meeting.sample_rate
            )
        return frame * frames

    # ------------------------------------------------------------------ finishing
    async def finalize(self, meeting: Meeting, track: TrackAssembly, *, tag: bytes = b"",
                       archive: str = "mp3") -> NewRecording:
        """Rename the complete ``.part`` to the final name (idempotent) and describe the file.

        With a ``tag`` (``markers.track_tag``: ID3v2 before the first frame) the final
        file is the tag then the ``.part``'s frames, untouched; its sha256 and size are
        the tagged file's.
        """
        if archive == "flac":
            return await self._finalize_flac(meeting, track)
        key = (meeting.id, track.user_id)
        running = self._hashes.get(key)
        sha = running.sha.copy() if running and running.size == track.assembled_bytes and not tag else None
        part = self._layout.part_path(meeting.id, track.user_id)
        final = self._layout.recording_path(meeting.id, track.user_id)
        if tag:
            digest = await run_blocking(_finalize_tagged, part, final, track.assembled_bytes, tag)
        else:
            digest = await run_blocking(_finalize, part, final, track.assembled_bytes, sha)
        return _new_recording(meeting, track, final, samples=track.assembled_frames * mp3.FRAME, sha256=digest,
                              size_bytes=len(tag) + track.assembled_bytes)


    async def _finalize_flac(self, meeting: Meeting, track: TrackAssembly) -> NewRecording:
        """The ``.part``'s frames under a FLAC header measured on them (``audio.flac.finish_track``).

        The ID3 chapters of an MP3 mix have no FLAC form here; the Vorbis comments are
        the tagging step's (``flac.set_comments``). The length is the decoder's count:
        the meeting's, to the sample (no frame padding, unlike MP3).
        """
        part = self._layout.part_path(meeting.id, track.user_id, "flac")
        final = self._layout.recording_path(meeting.id, track.user_id, "flac")
        measured = self._measures.get((meeting.id, track.user_id))
        digest, size, samples = await run_blocking(
            flac.finish_track, part, final, length=track.assembled_bytes,
            sample_rate=meeting.sample_rate, channels=meeting.channels, measured=measured,
        )
        return _new_recording(meeting, track, final, samples=samples, sha256=digest, size_bytes=size)


def silent_frame(channels: int, bitrate: int, quality: int, sample_rate: int) -> bytes:
    """The MP3 frame of digital silence for these settings, checked to be frame-invariant."""
    body = 4 * mp3.FRAME
    pcm = np.zeros((mp3.PRIME_SAMPLES + body + mp3.TAIL_SAMPLES, channels), dtype=np.int16)
    frames = mp3.encode_frames(
        pcm, prime=mp3.PRIME_SAMPLES, body=body, sample_rate=sample_rate,
        channels=channels, bitrate=bitrate, quality=quality,
    )
    if len(set(frames)) != 1:
        raise AssemblyError("this LAME does not encode silence as identical frames")
    return frames[0]


def _append(
    part: Path,
    expected: int,
    pieces: list[_Spec],
    sha: Optional["hashlib._Hash"],
    silent: bytes,
    archive: str = "mp3",
    channels: int = 1,
    sample_rate: int = 48_000,
    measure: Optional[flac.Measure] = None,
) -> tuple[int, int, Optional["hashlib._Hash"], list[int], Optional[flac.Measure]]:
    """Cut ``part`` back to ``expected`` bytes and append the pieces (worker thread).

    A chunk MP3 that is missing or does not walk as the expected frames (someone
    deleted or damaged it after it was verified) is replaced by silence of the same
    length and its piece's index returned (the caller records the gap), so one bad
    file cannot block its track.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    if not part.exists():
        if expected:
            raise AssemblyError(f"{part.name} is missing but {expected} bytes were assembled")
        part.touch()
    if sha is None:
        sha = hashlib.sha256()
        with open(part, "rb") as fh:
            remaining = expected
            while remaining:
                block = fh.read(min(remaining, 1 << 20))
                if not block:
                    raise AssemblyError(f"{part.name} is shorter than the {expected} bytes assembled")
                sha.update(block)
                remaining -= len(block)
    unreadable: list[int] = []
    frames_added = 0
    with open(part, "r+b") as fh:
        fh.truncate(expected)
        fh.seek(expected)
        for index, spec in enumerate(pieces):
            piece, frames = spec.piece, spec.frames
            if isinstance(piece, str):
                try:
                    data = Path(piece).read_bytes()
                    if archive == "flac":
                        data = flac.chunk_frames(data, body=spec.body, first_sample=spec.start)
                        # decoded here (it must, to be measured): a damaged chunk is a gap, not a stuck track
                        checked = measure.copy() if measure is not None else flac.Measure(sample_rate, channels)
                        before = checked.total
                        checked.feed(data)
                        if checked.total - before != spec.body:
                            raise flac.FlacError(f"{piece} decodes to {checked.total - before} samples")
                        if measure is not None:
                            measure = checked
                    elif mp3.count_frames(data) != frames:
                        raise mp3.EncodeError(f"{piece} is not {frames} frames")
                except (OSError, mp3.EncodeError, flac.FlacError) as exc:
                    log.error("chunk %s unusable (%s); silence stands in", piece, exc)
                    data = (flac.silence(spec.start, spec.body, channels=channels, sample_rate=sample_rate)
                            if archive == "flac" else silent * frames)
                    unreadable.append(index)
                    if measure is not None:
                        measure.feed(data)
            else:
                data = piece
                if measure is not None:
                    measure.feed(data)
            fh.write(data)
            sha.update(data)
            frames_added += frames
        fh.flush()
        os.fsync(fh.fileno())
        size = fh.tell()
    return size, frames_added, sha, unreadable, measure


def _new_recording(meeting: Meeting, track: TrackAssembly, final: Path, *, samples: int, sha256: str,
                   size_bytes: int) -> NewRecording:
    """The row a finished track becomes, whatever its format."""
    is_mix = track.user_id == MIX_USER_ID
    return NewRecording(
        kind=RecordingKind.MIXED if is_mix else RecordingKind.PER_USER,
        user_id=None if is_mix else track.user_id,
        filename=final.name,
        path=str(final),
        duration_in_ms=round(samples * 1000 / meeting.sample_rate),
        sha256=sha256,
        size_bytes=size_bytes,
    )

def _finalize_tagged(part: Path, final: Path, expected: int, tag: bytes) -> str:
    """``final`` = ``tag`` + the ``.part``'s first ``expected`` bytes (worker thread; idempotent).

    The tagged file is written beside the ``.part`` and renamed over ``final`` before the
    ``.part`` goes, so a crash anywhere leaves either the ``.part`` (this runs again) or
    the finished file (checked: the same tag, then ``expected`` bytes).
    """
    if part.exists():
        size = part.stat().st_size
        if size < expected:
            raise AssemblyError(f"{part.name} has {size} bytes, fewer than the {expected} assembled")
        id3.write_with_tag(final, tag, part, offset=0, length=expected)
        part.unlink()
        fsync_dir(final.parent)
    else:
        try:
            with open(final, "rb") as fh:
                head = fh.read(len(tag))
            ok = head == tag and final.stat().st_size == len(tag) + expected
        except OSError:
            ok = False
        if not ok:
            raise AssemblyError(f"{final.name} is missing or not the {expected} bytes assembled under its tag")
    h = hashlib.sha256()
    with open(final, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _finalize(part: Path, final: Path, expected: int, sha: Optional["hashlib._Hash"]) -> str:
    if part.exists():
        size = part.stat().st_size
        if size < expected:
            raise AssemblyError(f"{part.name} has {size} bytes, fewer than the {expected} assembled")
        with open(part, "r+b") as fh:
            if size > expected:
                fh.truncate(expected)
            os.fsync(fh.fileno())
        os.replace(part, final)
        fsync_dir(final.parent)
    elif _frames_size(final) != expected:  # (done before: tagged since, by tagging.tag_file)
        raise AssemblyError(f"{final.name} is missing or not the {expected} bytes assembled")
    else:
        sha = None  # a tag may be in front: hash the file as it is
    if sha is not None:
        return sha.hexdigest()
    h = hashlib.sha256()
    with open(final, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _frames_size(final: Path) -> int:
    """Bytes of a finished MP3 after its ID3v2 tag (-1 if it is missing)."""
    try:
        with open(final, "rb") as fh:
            tag = id3.tag_length(fh.read(id3.HEADER_SIZE))
        return final.stat().st_size - tag
    except OSError:
        return -1
