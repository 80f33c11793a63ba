"""A meeting's manifest: the few facts a lost database knew of it, next to its audio.

File names already say a lot (a recording's name holds its meeting and speaker, a
chunk's its window), but not whose meeting it was: the guild, the channel, who started
it, the settings its chunks were encoded with. Without those, recordings found after
the database was lost (deleted by an operator, damaged, restored from an old backup)
could be kept but shown to nobody. So ``Recorder.start_meeting`` writes
``meetings/<meeting>.json`` once, atomically, before any audio; ``adoption`` reads it
to give such files their meeting back. It holds no audio and no member's data beyond
the id of whoever started the recording (already in the meeting's row).

A deleted meeting's manifest goes with its rows (``Recorder.delete_meeting``), so a
deletion is never undone by adoption.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

from ..objects.records import Meeting, MeetingStatus, Strategy
from .paths import Layout, remove_files, write_atomic

__all__ = ["Manifest", "write_manifest", "read_manifest", "remove_manifest"]

log = logging.getLogger("red.chunkrecorder.pipeline.manifest")

_VERSION = 1


@dataclass(frozen=True, slots=True)
class Manifest:
    meeting_id: str
    guild_id: int
    channel_id: int
    started_by: int
    started_at: float
    strategy: Strategy
    flush_interval_s: float
    sample_rate: int
    channels: int
    bitrate: int
    quality: int
    #: the archive format (issue 14); manifests written before it are MP3
    archive: str = "mp3"

    def meeting(self, *, status: MeetingStatus, length_samples: Optional[int], note: str) -> Meeting:
        """The meeting row this manifest stands for, with what adoption found out."""
        return Meeting(
            id=self.meeting_id,
            guild_id=self.guild_id,
            channel_id=self.channel_id,
            started_by=self.started_by,
            started_at=self.started_at,
            ended_at=None,
            status=status,
            strategy=self.strategy,
            flush_interval_s=self.flush_interval_s,
            sample_rate=self.sample_rate,
            channels=self.channels,
            bitrate=self.bitrate,
            length_samples=length_samples,
            note=note,
        )


def write_manifest(layout: Layout, meeting: Meeting, *, quality: int, archive: str = "mp3") -> None:
    """Write ``meetings/<id>.json`` atomically (blocking)."""
    data = {
        "version": _VERSION,
        "meeting_id": meeting.id,
        "guild_id": meeting.guild_id,
        "channel_id": meeting.channel_id,
        "started_by": meeting.started_by,
        "started_at": meeting.started_at,
        "strategy": Strategy(meeting.strategy).value,
        "flush_interval_s": meeting.flush_interval_s,
        "sample_rate": meeting.sample_rate,
        "channels": meeting.channels,
        "bitrate": meeting.bitrate,
        "quality": int(quality),
        "archive": archive,
    }
    write_atomic(layout.manifest_path(meeting.id), json.dumps(data, sort_keys=True).encode())


def read_manifest(layout: Layout, meeting_id: str) -> Optional[Manifest]:
    """The manifest of ``meeting_id``, or None if there is none or it cannot be read (blocking)."""
    path = layout.manifest_path(meeting_id)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(
            meeting_id=str(raw["meeting_id"]),
            guild_id=int(raw["guild_id"]),
            channel_id=int(raw["channel_id"]),
            started_by=int(raw["started_by"]),
            started_at=float(raw["started_at"]),
            strategy=Strategy(raw["strategy"]),
            flush_interval_s=float(raw["flush_interval_s"]),
            sample_rate=int(raw["sample_rate"]),
            channels=int(raw["channels"]),
            bitrate=int(raw["bitrate"]),
            quality=int(raw["quality"]),
            archive=str(raw.get("archive", "mp3")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("the manifest %s cannot be read (%s); its meeting's files are kept but not adopted", path, exc)
        return None
    if manifest.meeting_id != meeting_id:
        log.error("the manifest %s names meeting %s; ignored", path, manifest.meeting_id)
        return None
    return manifest


def remove_manifest(layout: Layout, meeting_id: str) -> tuple[int, int]:
    """Remove a deleted meeting's manifest (blocking)."""
    return remove_files([layout.manifest_path(meeting_id)])


def manifest_ids(layout: Layout) -> set[str]:
    """Meeting ids that have a manifest (blocking)."""
    try:
        names = os.listdir(layout.manifests_dir)
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {n[: -len(".json")] for n in names if n.endswith(".json") and len(n) == 21}
