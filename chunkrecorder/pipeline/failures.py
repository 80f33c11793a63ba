"""Which encoding failures pass (retry them as long as the audio is kept) and which do not.

A chunk's PCM is the only copy of its audio until it is encoded, so giving up on it
turns recorded speech into silence. Issue 8 reproduced exactly that: 40 s of a full
disk outlasted the five attempts (2+4+8+16 s of backoff) and the chunk stayed FAILED,
silent in the file for good. So the transcoder asks :func:`is_transient` of every
failure:

* **transient** (the machine, not the audio): a full disk or quota, an I/O error, too
  many open files, memory, a busy or locked database, a permission an owner can fix.
  Retried for as long as the PCM is kept, with a backoff capped at a few minutes;
* **deterministic** (the encoder rejects this input, the PCM is gone or not whole
  samples): the same input fails the same way, so it gives up after
  ``RetryPolicy.max_attempts``; the chunk is kept (FAILED) and becomes a gap a repair
  retries (after an update, say). Anything not recognised is treated like this, so an
  unknown error costs a few attempts, never an endless loop.
"""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["is_transient", "TRANSIENT_ERRNOS"]

#: errno values of a machine that is out of something, or not letting us write yet.
TRANSIENT_ERRNOS = frozenset(
    e for e in (
        errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
        errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.EACCES, errno.EPERM, errno.EROFS,
    ) if e is not None
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says "not now" rather than "not this input" (see the module docstring)."""
    if isinstance(exc, sqlite3.OperationalError):
        return True  # database locked or busy, disk I/O error
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return exc.errno in TRANSIENT_ERRNOS
    return False
