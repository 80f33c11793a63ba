"""Repair: a finished file's gaps get their audio back, in place.

A gap (``gaps`` table) is a window of one track that a promotion filled with silence:
its chunk could not be encoded then (a disk full for longer than the stop could wait,
an encoder that refused it), or its encoded MP3 was found damaged. The chunk's row and
PCM are kept; once the chunk is encoded (the transcoder keeps retrying a transient
failure; an admin's ``[p]recordings promote`` re-queues the rest), its MP3 frames
replace the silence frames of that window in the finished file.

This works in place because of how files are made (``docs/architecture.md``): window
``k`` of a track is frames ``[k * chunk_frames, …)`` of its file, every chunk is
encoded on its own (its first frame needs nothing of the frames before it), and the
pipeline's MP3s are constant bitrate at 48 kHz (every frame the same size). So the
file keeps its recording id, its length and its sync; only its sha256 (and size, were
frame sizes ever to differ) change, written to its row in the transaction that also
deletes the gaps and the chunks' rows. The file is replaced atomically first; a crash
before the rows leaves the file repaired and the gap listed, and the repair run again
writes the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from pathlib import Path

from ..audio import flac, id3, mp3
from ..objects.records import MIX_USER_ID, Meeting, Recording, RecordingKind, TempRecording, TranscodeStatus
from ..objects.results import Gap
from ..store.service import SqlRecordingService
from .blocking import run_blocking
from .cleanup import chunk_files
from ..utils.atomic import writing
from .paths import TMP_SUFFIX, Layout, remove_files
from .timeline import Grid

__all__ = ["Repairer", "splice_file"]

log = logging.getLogger("red.chunkrecorder.pipeline.repair")


def _frame_bounds(data: bytes) -> list[int]:
    """Byte offset of every frame of ``data`` and its end (the pipeline's CBR MP3s)."""
    if len(data) < 4:
        return [0]
    h = int.from_bytes(data[:4], "big")
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)[(h >> 12) & 0xF]
    rate = (44_100, 48_000, 32_000, 0)[(h >> 10) & 0x3]
    if (h >> 21) & 0x7FF != 0x7FF or not kbps or not rate:
        raise mp3.EncodeError("not an MPEG-1 Layer III stream")
    size = 144 * kbps * 1000 // rate + ((h >> 9) & 1)
    if len(data) % size or mp3.count_frames(data) != len(data) // size:
        raise mp3.EncodeError("frames of unequal size: this file cannot be repaired in place")
    return list(range(0, len(data) + 1, size))


def splice_file(path: Path, pieces: list[tuple[int, bytes]]) -> tuple[int, str]:
    """Replace frames of ``path`` in place: each piece is ``(first frame, MP3 bytes)`` (blocking).

    An ID3v2 tag before the first frame (a meeting's notes as chapters) is kept as it is.
    Written to a temp file, synced and renamed over the original (atomic). Returns the
    new size and sha256. Raises ``mp3.EncodeError`` if a piece does not fit.
    """
    whole = path.read_bytes()
    tag = whole[: id3.tag_length(whole[: id3.HEADER_SIZE])]  # chapters (notes) before the first frame
    data = whole[len(tag) :]
    bounds = _frame_bounds(data)
    frames = len(bounds) - 1
    out = bytearray(tag)
    pos = 0
    for first, chunk in sorted(pieces):
        n = mp3.count_frames(chunk)
        if first < pos or first + n > frames:
            raise mp3.EncodeError(f"frames {first}..{first + n} do not fit a file of {frames} frames")
        out += data[bounds[pos] : bounds[first]]
        out += chunk
        pos = first + n
    out += data[bounds[pos] :]
    if mp3.count_frames(bytes(out[len(tag) :])) != frames:
        raise mp3.EncodeError("the repaired file would not keep its length")
    with writing(path, tmp_suffix=TMP_SUFFIX, sync_dir=True) as fh:
        fh.write(out)
    return len(out), hashlib.sha256(out).hexdigest()


def _read_chunk(path: str, frames: int) -> bytes | None:
    try:
        data = Path(path).read_bytes()
        if mp3.count_frames(data) == frames:
            return data
    except (OSError, mp3.EncodeError):
        pass
    return None


def _read_flac_chunk(path: str, body: int, first_sample: int) -> bytes | None:
    """A FLAC chunk's frames if it is this window's (``audio.flac.chunk_frames``), else None."""
    try:
        return flac.chunk_frames(Path(path).read_bytes(), body=body, first_sample=first_sample)
    except (OSError, flac.FlacError):
        return None


def _track_user(rec: Recording) -> int:
    return MIX_USER_ID if rec.kind is RecordingKind.MIXED else int(rec.user_id or 0)


class Repairer:
    """Splices a finished meeting's encoded gap chunks into its files (the caller holds its lock)."""

    def __init__(self, store: SqlRecordingService, layout: Layout) -> None:
        self._store = store
        self._layout = layout

    async def splice_ready(self, meeting: Meeting) -> list[Gap]:
        """Every gap of ``meeting`` whose chunk is encoded, into its file; returns those gaps."""
        store = self._store
        gaps = {(g.user_id, g.seq): g for g in await store.gaps_for_meeting(meeting.id)}
        if not gaps or meeting.length_samples is None:
            return []
        ready: dict[int, list[TempRecording]] = defaultdict(list)
        for chunk in await store.gap_chunks(meeting.id):
            if chunk.transcode_status is TranscodeStatus.DONE and chunk.mp3_path:
                ready[chunk.user_id].append(chunk)
        if not ready:
            return []
        grid = Grid.for_interval(meeting.flush_interval_s, meeting.sample_rate)
        recordings = {_track_user(r): r for r in await store.recordings_for_meeting(meeting.id)}
        repaired: list[Gap] = []
        for user_id, chunks in sorted(ready.items()):
            rec = recordings.get(user_id)
            if rec is None:
                continue  # its file was deleted; its chunks went with it (remove_recording)
            is_flac = Layout.archive_of(rec.path) == "flac"
            pieces: list[tuple[int, bytes]] = []
            flac_pieces: list[tuple[int, int, bytes]] = []
            used: list[TempRecording] = []
            for chunk in chunks:
                if is_flac:  # its frames carry their window's sample numbers: found and replaced by them
                    body = grid.body(chunk.seq, meeting.length_samples)
                    frames_data = await run_blocking(_read_flac_chunk, str(chunk.mp3_path), body,
                                                     grid.start(chunk.seq))
                    if frames_data is None:
                        await self._unusable(meeting, chunk)
                        continue
                    flac_pieces.append((grid.start(chunk.seq), grid.start(chunk.seq) + body, frames_data))
                    used.append(chunk)
                    continue
                frames = mp3.frames_for(grid.body(chunk.seq, meeting.length_samples))
                data = await run_blocking(_read_chunk, str(chunk.mp3_path), frames)
                if data is None:
                    await self._unusable(meeting, chunk)
                    continue
                pieces.append((chunk.seq * grid.chunk_frames, data))
                used.append(chunk)
            if not pieces and not flac_pieces:
                continue
            try:
                if is_flac:
                    size, sha = await run_blocking(flac.splice, Path(rec.path), flac_pieces)
                else:
                    size, sha = await run_blocking(splice_file, Path(rec.path), pieces)
            except (OSError, mp3.EncodeError, flac.FlacError) as exc:
                log.error("meeting %s: could not repair %s (%s); its gaps stay", meeting.id, rec.path, exc)
                continue
            await store.record_repair(
                meeting.id, recording_id=rec.id, user_id=user_id, seqs=[c.seq for c in used],
                sha256=sha, size_bytes=size, chunk_ids=[c.id for c in used],
            )
            # the file holds their audio now (its row just said so): the chunk files may go
            await run_blocking(remove_files, chunk_files(used))
            repaired += [gaps[(user_id, c.seq)] for c in used if (user_id, c.seq) in gaps]
            log.info("meeting %s: repaired %d gap(s) of %s", meeting.id, len(used), rec.filename)
        return repaired

    async def _unusable(self, meeting: Meeting, chunk: TempRecording) -> None:
        """An encoded gap chunk whose MP3 is missing or damaged: encoded again from its PCM if
        that is still there; otherwise nothing of its audio is left and the gap stays for good
        (its row goes, so it no longer reads as repairable)."""
        if await run_blocking(os.path.exists, chunk.pcm_path):
            log.error("meeting %s: the encoded chunk %s is damaged; encoding it again", meeting.id, chunk.mp3_path)
            await self._store.reencode_chunk(chunk.id)
            return
        log.error("meeting %s: the encoded chunk %s is damaged and its PCM is gone; the gap stays",
                  meeting.id, chunk.mp3_path)
        await self._store.delete_temp_recordings(ids=[chunk.id])
