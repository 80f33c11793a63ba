"""What the store and the pipeline hand back: frozen rows and reports, one place for all.

Defined at the bottom of the cog so the commands, the harness and the tests can read a
promotion's result or a recovery's report without importing the layer that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from .records import MIX_USER_ID, Meeting, Note, Recording, RecordingKind, TranscodeStatus

__all__ = ["NewRecording", "MeetingPipeline", "TrackAssembly", "Phase", "Progress", "PromotionResult",
           "RecoveryReport", "CleanupReport", "SessionSnapshot", "RemovalReport", "Gap", "NewGap",
           "RepairResult", "UnknownFiles"]

Phase = Literal["flushing", "transcoding", "assembling", "done"]


@dataclass(frozen=True, slots=True)
class NewRecording:
    """A finished file the promoter built, waiting for its ``recordings`` row."""

    kind: RecordingKind
    user_id: Optional[int]
    filename: str
    path: str
    duration_in_ms: int
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class MeetingPipeline:
    """The V3 columns of a meeting that the pipeline alone reads."""

    quality: int
    keep_temp: bool
    flushed_windows: int
    #: "mp3" or "flac" (V6): what the meeting's chunks and files are encoded in
    archive: str = "mp3"


@dataclass(frozen=True, slots=True)
class TrackAssembly:
    """How far one track's ``.part`` file has been assembled."""

    meeting_id: str
    user_id: int
    assembled_seq: int
    assembled_bytes: int
    assembled_frames: int


@dataclass(frozen=True, slots=True)
class NewGap:
    """A window of one track that assembly filled with silence, and why (for the ``gaps`` table)."""

    user_id: int
    seq: int
    start_sample: int
    sample_count: int
    reason: str


@dataclass(frozen=True, slots=True)
class Gap:
    """A window of one track that is silent in its finished file though audio was recorded.

    ``chunk_status`` is the status of the chunk kept for a repair (its PCM, or its MP3
    once encoded), ``None`` when nothing of it is kept (an MP3 found damaged after its
    PCM was gone): only a gap with a kept chunk can be repaired.
    """

    meeting_id: str
    user_id: int
    seq: int
    start_sample: int
    sample_count: int
    reason: str
    created_at: float
    chunk_status: Optional[TranscodeStatus] = None

    @property
    def repairable(self) -> bool:
        return self.chunk_status is not None

    @property
    def is_mix(self) -> bool:
        return self.user_id == MIX_USER_ID


@dataclass(frozen=True, slots=True)
class Progress:
    phase: Phase
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class PromotionResult:
    """A finished meeting. ``failed_chunks`` counts its ``gaps`` (windows of a track
    that are silence in the file though audio was recorded there), listed in ``gaps``."""

    meeting: Meeting
    recordings: list[Recording]
    failed_chunks: int
    length_ms: int
    #: The meeting's notes, in time order (chapters of the mix, lines of the label track).
    notes: tuple[Note, ...] = ()
    #: The Audacity label track beside the recordings; None when nobody took a note.
    labels_path: Optional[str] = None
    gaps: tuple[Gap, ...] = ()


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What a repair of a finished meeting did: ``repaired`` gaps spliced into the files
    (same recording ids, new sha256 and size), ``remaining`` gaps still silent."""

    meeting: Meeting
    repaired: tuple[Gap, ...]
    remaining: tuple[Gap, ...]
    recordings: list[Recording]


@dataclass(frozen=True, slots=True)
class UnknownFiles:
    """Files in the data folder that belong to no meeting the database knows.

    They are never deleted (the database may have been lost: ``adoption`` re-adopts
    what it can); the count is logged and shown to the bot owner.
    """

    files: int = 0
    bytes: int = 0
    meetings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.files > 0


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What start-up found and did; the owner logs it and promotes ``awaiting_promotion``.

    ``interrupted``: meetings a crash left ACTIVE or STOPPING, now INTERRUPTED;
    ``awaiting_promotion``: every INTERRUPTED meeting (those, and those a clean shutdown
    left), which the recorder does not promote by itself.
    """

    interrupted: tuple[str, ...] = ()
    requeued: int = 0
    adopted: int = 0
    cleaned: int = 0
    awaiting_promotion: tuple[str, ...] = ()
    readopted: tuple[str, ...] = ()
    unknown: UnknownFiles = UnknownFiles()

    @property
    def anything(self) -> bool:
        return bool(self.interrupted or self.requeued or self.adopted or self.cleaned
                    or self.awaiting_promotion or self.readopted or self.unknown)


@dataclass(frozen=True, slots=True)
class CleanupReport:
    temp_rows_deleted: int = 0
    files_deleted: int = 0
    recordings_deleted: int = 0
    bytes_freed: int = 0
    #: The recordings retention removed (told to other cogs as deletions).
    deleted: tuple[Recording, ...] = field(default=(), compare=False, repr=False)
    unknown: UnknownFiles = UnknownFiles()


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """What the cog's status command shows about a live meeting."""

    meeting_id: str
    elapsed_s: float
    speakers: tuple[int, ...]
    buffered_bytes: int
    windows_flushed: int
    chunks_written: int
    frames_received: int
    frames_late: int
    frames_duplicate: int
    frames_refused: int
    frames_invalid: int
    flush_errors: int
    windows_lost: int
    last_error: Optional[str]
    limit_reached: bool
    #: speakers not recorded because the bot's audio budget was full, and their frames
    speakers_over_budget: tuple[int, ...] = ()
    frames_over_budget: int = 0


@dataclass(frozen=True, slots=True)
class RemovalReport:
    """What a deletion, an erasure or a retention pass removed."""

    rows: int = 0
    files: int = 0
    bytes_freed: int = 0
    #: The finished recordings removed (told to other cogs as deletions).
    recordings: tuple[Recording, ...] = field(default=(), compare=False, repr=False)

    def __add__(self, other: "RemovalReport") -> "RemovalReport":
        return RemovalReport(self.rows + other.rows, self.files + other.files, self.bytes_freed + other.bytes_freed,
                             self.recordings + other.recordings)
