"""The two-tier store: temp chunks while recording, persistent recordings after.

``SqlRecordingService`` is the one object the pipeline, the cog and the harness hold.
It is the composition of one class per table (``tables/``), each a
:class:`.database.Database` subclass, so every method runs on the same connection
under the same lock; what a method does is in its table's module, its SQL in
``sql_statements.py``.
"""

from __future__ import annotations

from ..objects.errors import NotFound, StoreError
from ..objects.results import NewRecording, TrackAssembly
from .database import new_id
from .tables import (
    GapsTable,
    MeetingsTable,
    NotesTable,
    RecordingsTable,
    Removals,
    RemovalsTable,
    TempRecordingsTable,
    TracksTable,
)

__all__ = ["SqlRecordingService", "NewRecording", "StoreError", "NotFound", "TrackAssembly", "Removals", "new_id"]


class SqlRecordingService(MeetingsTable, TempRecordingsTable, RecordingsTable, TracksTable, NotesTable, GapsTable,
                          RemovalsTable):
    """CRUD for ``meetings``, ``temp_recordings``, ``recordings``, ``tracks``, ``notes``, ``gaps`` and ``removals``.

    Use ``async with SqlRecordingService(path) as store`` or ``await store.open()``.
    """
