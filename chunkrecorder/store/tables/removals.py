"""The ``removals`` table (V5): what an admin deleted and whose data was erased.

Each entry is written in the transaction that deletes the rows, before any file goes,
so that files a crash leaves behind are known to be removable (the cleanup finishes
the job) and are never adopted back: without it, a meeting's folder left after its
rows were deleted looks exactly like one whose database was lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import sql_statements as sql
from ..database import Database, Params, wall_clock

__all__ = ["RemovalsTable", "Removals", "removal"]


@dataclass(frozen=True, slots=True)
class Removals:
    """Deleted meetings, and each erased user's latest erasure (epoch seconds)."""

    meetings: frozenset[str] = frozenset()
    users: dict[int, float] = field(default_factory=dict)

    def covers(self, meeting_id: str, user_id: int | None, mtime: float) -> bool:
        """Whether a file of this meeting (and user, if its name says) was removed on purpose:
        its meeting deleted, or its user erased after the file was written."""
        if meeting_id in self.meetings:
            return True
        erased = self.users.get(user_id) if user_id is not None else None
        return erased is not None and mtime <= erased


def removal(kind: str, subject: str) -> tuple[str, Params]:
    """The statement that records one removal (for the deleting transaction)."""
    return sql.REMOVALS_INSERT, {"kind": kind, "subject": subject, "removed_at": wall_clock()}


class RemovalsTable(Database):
    async def removals(self) -> Removals:
        rows = await self._fetch(sql.REMOVALS_FETCH)
        meetings = frozenset(str(r[1]) for r in rows if r[0] == "meeting")
        users = {int(r[1]): float(r[2]) for r in rows if r[0] == "user"}
        return Removals(meetings, users)
