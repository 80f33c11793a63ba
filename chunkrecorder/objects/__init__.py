"""Plain data types shared by the store, the pipeline and the cog."""

from .frames import DISCORD_CHANNELS, FRAME_SAMPLES, SAMPLE_RATE, MeetingSettings, VoiceFrame
from .records import (
    MIX_USER_ID,
    ChunkCounts,
    IllegalTransition,
    Meeting,
    MeetingStatus,
    Recording,
    RecordingKind,
    Strategy,
    TempRecording,
    TranscodeStatus,
)

__all__ = [
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
    "Recording",
    "RecordingKind",
    "Strategy",
    "TempRecording",
    "TranscodeStatus",
]
