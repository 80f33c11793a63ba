"""Plain data types shared by the store, the pipeline and the cog."""

from .frames import DISCORD_CHANNELS, FRAME_SAMPLES, SAMPLE_RATE, MeetingSettings, VoiceFrame
from .errors import FlushError, IllegalTransition, NotFound, PipelineError, PromotionTimeout, StoreError
from .records import (
    MIX_USER_ID,
    ChunkCounts,
    Meeting,
    MeetingStatus,
    Note,
    Recording,
    RecordingKind,
    Strategy,
    TempRecording,
    TranscodeStatus,
)

from .results import (
    CleanupReport,
    MeetingPipeline,
    NewRecording,
    Progress,
    PromotionResult,
    RecoveryReport,
    RemovalReport,
    SessionSnapshot,
    TrackAssembly,
)

__all__ = [
    "StoreError",
    "NotFound",
    "PipelineError",
    "PromotionTimeout",
    "FlushError",
    "CleanupReport",
    "MeetingPipeline",
    "NewRecording",
    "Progress",
    "PromotionResult",
    "RecoveryReport",
    "RemovalReport",
    "SessionSnapshot",
    "TrackAssembly",
    "DISCORD_CHANNELS",
    "FRAME_SAMPLES",
    "MIX_USER_ID",
    "MeetingSettings",
    "SAMPLE_RATE",
    "VoiceFrame",
    "ChunkCounts",
    "IllegalTransition",
    "Meeting",
    "MeetingStatus",
    "Note",
    "Recording",
    "RecordingKind",
    "Strategy",
    "TempRecording",
    "TranscodeStatus",
]
