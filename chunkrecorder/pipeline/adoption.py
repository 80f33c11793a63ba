"""Files the database does not know: found again where possible, never deleted.

The database can be lost while the audio is not: an operator deletes a broken
``chunkrecorder.sqlite3`` (the first thing anyone tries), restores an old backup, or
moves it aside after the load refused it as damaged. Every audio file in the data
folder names its meeting (``chunks/<meeting>/…``, ``recording_<meeting>_<user>.mp3``),
so at start-up (``Recorder.recover``) the files of meetings the database does not know
are grouped by meeting and:

* with the meeting's manifest (``manifest.py``: guild, channel, settings), adopted:
  a meeting whose tracks are all finished files comes back PROMOTED with a recording
  row per file (speaker from the name; length and duration from counting its MP3
  frames; sha256 and size read), and one with unfinished parts comes back INTERRUPTED
  with its tracks' ``.part`` files measured in whole windows (and the meeting's short
  last window where a ``.part`` is the only file holding it: its length then comes from
  there), its PCM chunks queued and its encoded chunk MP3s as done chunks, so an ordinary
  promotion finishes it;
* without a manifest, or if its files do not add up, kept as they are and reported
  (:class:`UnknownFiles`: a count in the log and in ``[p]recordings info``).

Files of a meeting an admin deleted, or of an erased user (``removals``), are not
adopted: the cleanup finishes removing them. Nothing here deletes anything.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..audio import flac, id3, mp3
from ..objects.records import MIX_USER_ID, MeetingStatus, RecordingKind
from ..objects.results import NewGap, NewRecording, TrackAssembly, UnknownFiles
from ..store.service import SqlRecordingService
from .assembler import silent_frame
from .blocking import run_blocking
from .manifest import Manifest, read_manifest
from .paths import PART_SUFFIX, Layout
from .timeline import Grid

__all__ = ["Adoption", "whole_frames"]

log = logging.getLogger("red.chunkrecorder.pipeline.adoption")


def whole_frames(data: bytes) -> tuple[int, int]:
    """``(frames, bytes)`` of the longest prefix of ``data`` that is whole MP3 frames.

    The pipeline's MP3s are constant bitrate at 48 kHz, where every frame has the same
    size; a ``.part`` may end inside a frame (a crash mid-append), which is cut off.
    Raises ``mp3.EncodeError`` if the prefix is not such frames.
    """
    if len(data) < 4:
        return 0, 0
    h = int.from_bytes(data[:4], "big")
    if (h >> 21) & 0x7FF != 0x7FF or (h >> 19) & 0x3 != 3:
        raise mp3.EncodeError("not an MPEG-1 Layer III stream")
    bitrate_idx, rate_idx, padding = (h >> 12) & 0xF, (h >> 10) & 0x3, (h >> 9) & 1
    if bitrate_idx in (0, 15) or rate_idx == 3:
        raise mp3.EncodeError("unsupported MP3 frame header")
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)[bitrate_idx]
    size = 144 * kbps * 1000 // (44_100, 48_000, 32_000)[rate_idx] + padding
    n = len(data) // size
    if mp3.count_frames(data[: n * size]) != n:
        raise mp3.EncodeError("MP3 frames of unequal size")
    return n, n * size


@dataclass
class _Found:
    """One unknown meeting's files, by kind."""

    recordings: dict[int, Path] = field(default_factory=dict)   # user → finished file
    parts: dict[int, Path] = field(default_factory=dict)        # user → .part
    pcms: list[tuple[int, int, Path]] = field(default_factory=list)   # (user, seq, path)
    mp3s: list[tuple[int, int, Path]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def unfinished(self) -> bool:
        return bool(self.parts or self.pcms or self.mp3s)


@dataclass(frozen=True, slots=True)
class _Measured:
    frames: int
    size: int  # bytes of frames (what a track row's ``assembled_bytes`` counts)
    sha256: str  # of the file as it is (tag included)
    file_size: int
    #: samples it decodes to: ``frames * 1152`` for MP3, the exact count for FLAC
    samples: int = -1
    #: FLAC ``.part``: bytes of its whole windows (its rest is kept only as the meeting's
    #: short last window), and whether that rest is silence; MP3's frames are all one size
    whole_size: int = -1
    rest_silent: bool = True

    @property
    def length(self) -> int:
        return self.samples if self.samples >= 0 else self.frames * mp3.FRAME


def _measure_flac(path: Path, *, whole_only: bool, grid: Grid, channels: int,
                  sample_rate: int) -> Optional[_Measured]:
    """A FLAC recording or chunk (its STREAMINFO: frames untouched by tags), or a FLAC
    ``.part``: its whole windows, found by the sample number of each window's first frame,
    and a rest that decodes as whole frames (blocking)."""
    try:
        data = path.read_bytes()
        if whole_only:
            start = flac.metadata_end(data)
            total = flac.read_stream_info(data).total_samples
            return _Measured(mp3.frames_for(total), len(data) - start, hashlib.sha256(data).hexdigest(),
                             len(data), total)
        offsets = flac.window_offsets(data, (grid.start(k) for k in itertools.count())) if data else []
        if data and (not offsets or offsets[0] != 0):
            raise flac.FlacError("no first frame at sample 0")
        whole = max(0, len(offsets) - 1)  # windows whose next window's first frame was found
        whole_size = offsets[-1] if offsets else 0
        rest, silent = _flac_rest(path, whole_size, len(data) - whole_size, sample_rate, channels)
        if rest >= grid.chunk_samples:
            whole, whole_size, rest, silent = whole + 1, len(data), 0, True  # the last window is whole too
        samples = whole * grid.chunk_samples + rest
        size = whole_size + (len(data) - whole_size if rest else 0)
        return _Measured(mp3.frames_for(samples), size, hashlib.sha256(data[:size]).hexdigest(), size, samples,
                         whole_size=whole_size, rest_silent=silent)
    except (OSError, flac.FlacError) as exc:
        log.error("%s cannot be adopted (%s); it is kept as it is", path, exc)
        return None


def _flac_rest(path: Path, offset: int, length: int, sample_rate: int, channels: int) -> tuple[int, bool]:
    """Samples in the bytes after a ``.part``'s whole windows if they are whole frames (else 0),
    and whether they are silence (a window nobody spoke in)."""
    if length <= 0:
        return 0, True
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            frames = fh.read(length)
        flac.scan(path, offset=offset, length=length, sample_rate=sample_rate, channels=channels)  # whole frames?
        info = flac.StreamInfo(16, 65535, 0, 0, sample_rate, channels, 16, 0, bytes(16))
        pcm = flac.decode_pcm(flac.build_header(info) + frames)
    except (flac.FlacError, OSError):
        return 0, True
    except Exception:  # noqa: BLE001 - FFmpeg's errors: not whole frames
        return 0, True
    return len(pcm), not pcm.any()


def _measure(path: Path, *, whole_only: bool) -> Optional[_Measured]:
    """Frames and sizes of an MP3 (of its whole-frame prefix, for a ``.part``), and the sha256
    of what is kept. A finished file may start with an ID3v2 tag (its meeting's chapters)."""
    try:
        data = path.read_bytes()
        tag = id3.tag_length(data[: id3.HEADER_SIZE]) if whole_only else 0
        if whole_only:
            frames = mp3.count_frames(data[tag:])
            size = len(data) - tag
        else:
            frames, size = whole_frames(data)
    except (OSError, mp3.EncodeError) as exc:
        log.error("%s cannot be adopted (%s); it is kept as it is", path, exc)
        return None
    return _Measured(frames, size, hashlib.sha256(data[: tag + size]).hexdigest(), tag + size)


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Adoption:
    """Start-up's look at files of meetings the database does not know (see the module docstring)."""

    def __init__(self, store: SqlRecordingService, layout: Layout) -> None:
        self._store = store
        self._layout = layout

    async def run(self) -> tuple[tuple[str, ...], UnknownFiles]:
        """Adopt what can be; returns the adopted meetings and what stays unknown."""
        files = await run_blocking(self._layout.audio_files)
        if not files:
            return (), UnknownFiles()
        known = await self._store.all_meeting_ids()
        removals = await self._store.removals()
        found: dict[str, _Found] = defaultdict(_Found)
        for meeting_id, user_id, path in files:
            if meeting_id in known:
                continue
            if removals.covers(meeting_id, user_id, await run_blocking(_mtime, path)):
                continue  # removed on purpose; the cleanup finishes it
            self._sort(found[meeting_id], user_id, path)
        adopted: list[str] = []
        unknown_files = unknown_bytes = 0
        unknown_meetings: list[str] = []
        for meeting_id, what in sorted(found.items()):
            manifest = await run_blocking(read_manifest, self._layout, meeting_id)
            ok = manifest is not None and await self._adopt(manifest, what)
            if ok:
                adopted.append(meeting_id)
                continue
            unknown_meetings.append(meeting_id)
            unknown_files += len(what.files)
            unknown_bytes += sum([await run_blocking(_size, p) for p in what.files])
        unknown = UnknownFiles(unknown_files, unknown_bytes, tuple(unknown_meetings))
        if adopted:
            log.warning("adopted %d meeting(s) the database did not know, from their files: %s",
                        len(adopted), ", ".join(adopted))
        if unknown:
            log.warning("%d file(s) (%d bytes) of %d meeting(s) the database does not know are kept, "
                        "not deleted: %s", unknown.files, unknown.bytes, len(unknown.meetings),
                        ", ".join(unknown.meetings))
        return tuple(adopted), unknown

    async def _measure(self, path: Path, manifest: Manifest, grid: Grid, *, whole_only: bool) -> Optional[_Measured]:
        if Layout.archive_of(path) == "flac":
            return await run_blocking(_measure_flac, path, whole_only=whole_only, grid=grid,
                                      channels=manifest.channels, sample_rate=manifest.sample_rate)
        return await run_blocking(_measure, path, whole_only=whole_only)

    def _sort(self, what: _Found, user_id: int, path: Path) -> None:
        what.files.append(path)
        name = path.name
        if name.startswith("recording_"):
            (what.parts if name.endswith(PART_SUFFIX) else what.recordings)[user_id] = path
            return
        chunk = self._layout.parse_chunk(name)
        if chunk is not None:
            (what.pcms if chunk.ext == "pcm" else what.mp3s).append((chunk.user_id, chunk.seq, path))

    async def _adopt(self, manifest: Manifest, what: _Found) -> bool:
        grid = Grid.for_interval(manifest.flush_interval_s, manifest.sample_rate)
        finished: dict[int, _Measured] = {}
        for user_id, path in what.recordings.items():
            measured = await self._measure(path, manifest, grid, whole_only=True)
            if measured is None:
                return False
            finished[user_id] = measured
        parts: dict[int, _Measured] = {}
        for user_id, path in what.parts.items():
            measured = await self._measure(path, manifest, grid, whole_only=False)
            if measured is None:
                return False
            parts[user_id] = measured
        ends = {m.length for m in finished.values()}  # in samples (an MP3's are its frames' 1152 each)
        if len(ends) > 1:
            log.error("meeting %s: its files have different lengths (%s samples); kept, not adopted",
                      manifest.meeting_id, sorted(ends))
            return False
        on_disk = {(u, s) for u, s, _p in what.pcms} | {(u, s) for u, s, _p in what.mp3s}
        if not ends:
            found_ends = await self._last_window_ends(manifest, what, parts, on_disk, grid)
            if found_ends is None:
                return False
            ends = found_ends
            if len(ends) > 1:
                log.error("meeting %s: its .part files end at different places (%s samples); kept, not adopted",
                          manifest.meeting_id, sorted(ends))
                return False
        end: Optional[int] = ends.pop() if ends else None  # the meeting's length in samples, if known
        tracks: dict[int, TrackAssembly] = {}
        windows = 0
        for user_id, measured in parts.items():
            seq = measured.length // grid.chunk_samples  # whole windows; the rest is cut off ...
            samples = seq * grid.chunk_samples
            if samples < measured.length == end and (user_id, seq) not in on_disk:
                # ... unless it is the meeting's short last window, which only this file holds
                seq, samples = seq + 1, measured.length
            frames = mp3.frames_for(samples)
            if measured.whole_size >= 0:  # FLAC: its frames are not all one size
                size = measured.size if samples == measured.length else measured.whole_size
            else:
                size = measured.size * frames // measured.frames if measured.frames else 0
            tracks[user_id] = TrackAssembly(manifest.meeting_id, user_id, seq, size, frames)
            windows = max(windows, seq)
        length = end
        for user_id, m in finished.items():
            tracks[user_id] = TrackAssembly(manifest.meeting_id, user_id, grid.windows_for(m.length),
                                            m.size, m.frames)
            windows = max(windows, tracks[user_id].assembled_seq)
        if length is not None:
            windows = max(windows, grid.windows_for(length))
        note = "found again from its files after the database was lost"
        if what.parts or not finished:
            # unfinished: an ordinary promotion finishes it
            meeting = manifest.meeting(status=MeetingStatus.INTERRUPTED, length_samples=length, note=note)
            adopted = await self._store.adopt_meeting(meeting, quality=manifest.quality, archive=manifest.archive,
                                                      tracks=list(tracks.values()), flushed_windows=windows)
        else:
            # every track is a finished file; chunks left beside them are its gaps' (below)
            assert length is not None
            meeting = manifest.meeting(status=MeetingStatus.PROMOTED, length_samples=length, note=note)
            adopted = await self._store.adopt_meeting(
                meeting, quality=manifest.quality, archive=manifest.archive, recordings=_recordings(what, finished, length, manifest))
        if not adopted:
            return False
        await self._adopt_chunks(manifest, what, tracks, grid)
        return True

    async def _last_window_ends(
        self, manifest: Manifest, what: _Found, parts: dict[int, _Measured], on_disk: set[tuple[int, int]],
        grid: Grid,
    ) -> Optional[set[int]]:
        """Where the meeting ends (in frames) by its ``.part`` files, when no finished file says.

        Only a meeting's last window is shorter than a window, so a ``.part`` that ends past
        its whole windows holds either an append a crash cut short, or that last window. A cut
        append's chunk is still on disk (a chunk MP3 is deleted only once its track's row says
        it is in the file), and so is the chunk of a last window appended but not yet recorded
        as such: both are cut off and appended again. A rest whose chunk is gone and which is
        not silence is the last window, and the only copy of its audio: it is kept (a cut
        append of silence, the filler of a window nobody spoke in, holds nothing to lose).
        None if a ``.part`` cannot be read now (the meeting is then kept, not adopted).
        """
        ends: set[int] = set()
        silent: Optional[bytes] = None
        for user_id, measured in parts.items():
            whole = measured.frames // grid.chunk_frames
            rest = measured.frames - whole * grid.chunk_frames
            if measured.whole_size >= 0:  # FLAC: measured when it was read
                whole = measured.length // grid.chunk_samples
                if measured.length > whole * grid.chunk_samples and (user_id, whole) not in on_disk \
                        and not measured.rest_silent:
                    ends.add(measured.length)
                continue
            if not rest or (user_id, whole) in on_disk:
                continue
            if silent is None:
                silent = await run_blocking(silent_frame, manifest.channels, manifest.bitrate, manifest.quality,
                                            manifest.sample_rate)
            offset = whole * grid.chunk_frames * (measured.size // measured.frames)
            try:
                if not await run_blocking(_is_silence, what.parts[user_id], offset, rest, silent):
                    ends.add(measured.length)
            except OSError as exc:
                log.error("%s cannot be adopted (%s); it is kept as it is", what.parts[user_id], exc)
                return None
        return ends

    async def _adopt_chunks(
        self, manifest: Manifest, what: _Found, tracks: dict[int, TrackAssembly], grid: Grid
    ) -> None:
        """Rows for the chunk files, and a gap for each window a track's file already passed.

        A chunk left beside a finished file or below a ``.part``'s end is one whose window
        the file holds as silence: promotion only leaves a gap's chunk behind (its row and
        the gap were in the lost database). It becomes a gap again, and the repair puts it
        in. Chunks past a ``.part``'s end are ordinary: the promotion appends them.
        """
        mid = manifest.meeting_id
        gaps: list[NewGap] = []
        pcm_keys = {(u, s) for u, s, _ in what.pcms}
        frame_bytes = 2 * manifest.channels
        for user_id, seq, path in sorted(what.pcms):
            size = await run_blocking(_size, path)
            body = size // frame_bytes - grid.prime - grid.tail
            if size % frame_bytes or body <= 0 or body > grid.chunk_samples:
                log.error("meeting %s: %s is not a whole chunk (%d bytes); kept, not adopted", mid, path.name, size)
                continue
            await self._store.insert_temp_recording(
                meeting_id=mid, user_id=user_id, guild_id=manifest.guild_id, pcm_path=str(path), seq=seq,
                start_sample=grid.start(seq), sample_count=body, prime_samples=grid.prime, tail_samples=grid.tail)
            if _passed(tracks, user_id, seq):
                gaps.append(NewGap(user_id, seq, grid.start(seq), body, _LOST))
        for user_id, seq, path in sorted(what.mp3s):
            if (user_id, seq) in pcm_keys:
                continue  # its PCM's row stands for it (the encoder reuses a whole MP3)
            measured = await self._measure(path, manifest, grid, whole_only=True)
            if measured is None:
                continue  # kept on disk as it is
            body = min(grid.chunk_samples, measured.length)
            await self._store.insert_done_chunk(
                meeting_id=mid, user_id=user_id, guild_id=manifest.guild_id,
                pcm_path=str(self._layout.pcm_path(mid, user_id, seq)), mp3_path=str(path),
                sha256=measured.sha256, duration_ms=round(body * 1000 / manifest.sample_rate), seq=seq,
                start_sample=grid.start(seq), sample_count=body, prime_samples=grid.prime, tail_samples=grid.tail,
            )
            if _passed(tracks, user_id, seq):
                gaps.append(NewGap(user_id, seq, grid.start(seq), body, _LOST))
        await self._store.add_gaps(mid, gaps)
        users = {u for u, _s, _p in what.pcms} | {u for u, _s, _p in what.mp3s}
        await self._store.ensure_tracks(mid, users)
        if gaps:
            log.warning("meeting %s: %d window(s) silent in its files have their chunks on disk: "
                        "gaps again, for the repair", mid, len(gaps))


#: The reason of a gap found again: the database that named it was lost.
_LOST = "a gap found again after the database was lost"


def _passed(tracks: dict[int, TrackAssembly], user_id: int, seq: int) -> bool:
    track = tracks.get(user_id)
    return track is not None and seq < track.assembled_seq


def _recordings(what: _Found, finished: dict[int, _Measured], length: int, manifest: Manifest) -> list[NewRecording]:
    ms = round(length * 1000 / manifest.sample_rate)
    return [
        NewRecording(
            kind=RecordingKind.MIXED if user == MIX_USER_ID else RecordingKind.PER_USER,
            user_id=None if user == MIX_USER_ID else user,
            filename=what.recordings[user].name,
            path=str(what.recordings[user]),
            duration_in_ms=ms,
            sha256=m.sha256,
            size_bytes=m.file_size,
        )
        for user, m in sorted(finished.items())
    ]


def _is_silence(path: Path, offset: int, frames: int, silent: bytes) -> bool:
    """Whether the ``frames`` frames at ``offset`` of ``path`` are the encoder's frames of silence."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(frames * len(silent)) == silent * frames


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("inf")
