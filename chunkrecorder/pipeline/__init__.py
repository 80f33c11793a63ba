"""Audio in, synced per-speaker and mixed MP3s out: see ``recorder.Recorder``."""

from ..objects.results import RemovalReport
from .cleanup import CleanupReport
from .errors import FlushError, PipelineError, PromotionTimeout
from .library import Library
from .promoter import Progress, ProgressCallback, PromotionResult
from .recorder import PromotedHook, Recorder
from .recovery import RecoveryReport
from .session import RecordingSession, SessionSnapshot
from .transcoder import RetryPolicy

__all__ = [
    "CleanupReport",
    "FlushError",
    "Library",
    "PipelineError",
    "Progress",
    "ProgressCallback",
    "PromotedHook",
    "PromotionResult",
    "PromotionTimeout",
    "Recorder",
    "RecordingSession",
    "RecoveryReport",
    "RemovalReport",
    "RetryPolicy",
    "SessionSnapshot",
]
