"""The two-tier SQLite store (temp chunks, persistent recordings, meetings)."""

from .service import NewRecording, NotFound, SqlRecordingService, StoreError, new_id

__all__ = ["NewRecording", "NotFound", "SqlRecordingService", "StoreError", "new_id"]
