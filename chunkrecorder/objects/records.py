"""Typed rows of the two-tier store.

Rows travel between the store, the transcode workers, the promoter and the cog;
frozen dataclasses keep them hashable and make an accidental in-place edit (which
would silently diverge from the database) impossible.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

#: user_id of the mixed track's chunks: a mix belongs to nobody, and 0 is never a Discord id.
MIX_USER_ID = 0


class TranscodeStatus(str, enum.Enum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    FAILED = "FAILED"


class MeetingStatus(str, enum.Enum):
    ACTIVE = "ACTIVE"
    STOPPING = "STOPPING"
    PROMOTED = "PROMOTED"
    INTERRUPTED = "INTERRUPTED"
    FAILED = "FAILED"


class Strategy(str, enum.Enum):
    PER_USER = "per_user"
    MIXED = "mixed"
    HYBRID = "hybrid"

    @property
    def wants_per_user(self) -> bool:
        return self in (Strategy.PER_USER, Strategy.HYBRID)

    @property
    def wants_mix(self) -> bool:
        return self in (Strategy.MIXED, Strategy.HYBRID)


class RecordingKind(str, enum.Enum):
    PER_USER = "per_user"
    MIXED = "mixed"


@dataclass(frozen=True, slots=True)
class Meeting:
    id: str
    guild_id: int
    channel_id: int
    started_by: int
    started_at: float
    ended_at: Optional[float]
    status: MeetingStatus
    strategy: Strategy
    flush_interval_s: float
    sample_rate: int
    channels: int = 1
    bitrate: int = 64000
    length_samples: Optional[int] = None
    note: Optional[str] = None


@dataclass(frozen=True, slots=True)
class TempRecording:
    id: str
    meeting_id: str
    user_id: int
    guild_id: int
    seq: int
    created_at: float
    completed_at: Optional[float]
    pcm_path: str
    mp3_path: Optional[str]
    transcode_status: TranscodeStatus
    sha256: Optional[str]
    duration_ms: Optional[int]
    cleaned: bool
    start_sample: int
    sample_count: int
    prime_samples: int = 0
    tail_samples: int = 0
    attempts: int = 0
    last_error: Optional[str] = None
    next_attempt_at: Optional[float] = None

    @property
    def is_mix(self) -> bool:
        return self.user_id == MIX_USER_ID

    @property
    def pending(self) -> bool:
        return self.transcode_status in (TranscodeStatus.QUEUED, TranscodeStatus.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class Recording:
    id: str
    meeting_id: str
    created_at: float
    duration_in_ms: int
    sha256: str
    filename: str
    user_id: Optional[int]
    kind: RecordingKind
    path: str
    size_bytes: int
    guild_id: Optional[int] = None


@dataclass(frozen=True, slots=True)
class Note:
    """A note taken during a meeting (``[p]record note``): a marker at ``at_ms`` from t=0.

    It becomes a line of the meeting's Audacity label track and a chapter of its mixed
    MP3; its text is its author's data (erased on their data deletion request).
    """

    id: str
    meeting_id: str
    at_ms: int
    author_id: int
    text: str
    created_at: float


@dataclass(frozen=True, slots=True)
class ChunkCounts:
    """Temp rows of a meeting by status; what `[p]record status` and the harness report."""

    queued: int = 0
    in_progress: int = 0
    done: int = 0
    failed: int = 0
    by_user: dict[int, int] = field(default_factory=dict, compare=False)  # user id → chunks

    @property
    def pending(self) -> int:
        return self.queued + self.in_progress

    @property
    def total(self) -> int:
        return self.queued + self.in_progress + self.done + self.failed

    def as_dict(self) -> dict[str, int]:
        return {
            "QUEUED": self.queued,
            "IN_PROGRESS": self.in_progress,
            "DONE": self.done,
            "FAILED": self.failed,
        }
