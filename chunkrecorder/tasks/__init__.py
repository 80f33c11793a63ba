"""The cog's background jobs, one module each, one owner for all: the cog.

``cog_load`` starts them in one ``utils.background.BackgroundTasks`` and ``cog_unload``
cancels them, so no job outlives the cog and none runs twice. The pipeline runs no loop
of its own (besides its encoder workers): these call its ``tick``, ``cleanup`` and
``promote``; the harness calls the same methods with its simulated clock.

* ``ticker.py``: every 0.2 s, release held frames, flush what is due, end meetings due to end;
* ``cleanup.py``: every hour, each guild's retention and leftover temp files;
* ``restart.py``: once after a load, what a crash or an unload left behind;
* ``autorecord.py``: every 2 s, start the meetings auto-record rules call for.
"""

from .autorecord import AutoRecordJob
from .cleanup import CleanupJob
from .restart import RestartJob
from .ticker import Ticker

__all__ = ["AutoRecordJob", "CleanupJob", "RestartJob", "Ticker"]
