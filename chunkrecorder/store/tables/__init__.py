"""One class per table, each a :class:`..database.Database` over the same connection and lock.

``SqlRecordingService`` (``store/service.py``) composes them; callers use that.
"""

from .gaps import GapsTable
from .meetings import MeetingsTable
from .notes import NotesTable
from .recordings import RecordingsTable
from .removals import Removals, RemovalsTable
from .temp_recordings import TempRecordingsTable
from .tracks import TracksTable

__all__ = ["GapsTable", "MeetingsTable", "NotesTable", "RecordingsTable", "Removals", "RemovalsTable",
           "TempRecordingsTable", "TracksTable"]
