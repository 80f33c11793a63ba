"""Audio in, synced per-speaker and mixed MP3s out: see ``recorder.Recorder``."""

from .errors import FlushError, PipelineError, PromotionTimeout
from .promoter import Progress, ProgressCallback, PromotionResult
from .recorder import Recorder
from .recovery import RecoveryReport
from .cleanup import CleanupReport
from .session import RecordingSession, SessionSnapshot
from .transcoder import RetryPolicy

__all__ = [
    "CleanupReport",
    "FlushError",
    "PipelineError",
    "Progress",
    "ProgressCallback",
    "PromotionResult",
    "PromotionTimeout",
    "Recorder",
    "RecordingSession",
    "RecoveryReport",
    "RetryPolicy",
    "SessionSnapshot",
]
