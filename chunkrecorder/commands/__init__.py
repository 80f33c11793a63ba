"""One mixin per command group: ``[p]record``, ``[p]recordings``, ``[p]recordingset``."""

from .record import RecordCommands
from .recordings import RecordingsCommands
from .settings import SettingsCommands

__all__ = ["RecordCommands", "RecordingsCommands", "SettingsCommands"]
