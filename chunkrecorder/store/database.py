"""The store's one connection, its lock, and the plumbing every table class shares.

One aiosqlite connection per service. Every public coroutine holds ``self._lock`` for
its whole database conversation, because statements of two coroutines on one
connection would otherwise join each other's transactions. With one connection per
database file there is one writer, so "database is locked" cannot happen inside a
process; the busy timeout covers a second process (the harness's ``recover`` next to
a running bot, say).

The table classes (``tables/``) subclass :class:`Database` and are composed into
``SqlRecordingService``, so they all share this one connection and this one lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Optional, Self, Sequence, TypeVar

import aiosqlite

from ..objects.errors import StoreError
from . import sql_statements as sql
from .rows import DataclassInstance, row_to
from .schema import LATEST_VERSION, MIGRATIONS

__all__ = ["Database", "Params", "fetch_in", "new_id", "wall_clock"]

R = TypeVar("R", bound=DataclassInstance)

#: A statement's parameters: a dict for the named ones (``:meeting_id``), or a sequence.
Params = Mapping[str, Any] | Sequence[Any]


def new_id() -> str:
    """16 hex characters: the design's id width, 64 random bits."""
    return secrets.token_hex(8)


def wall_clock() -> float:
    """The wall clock for row timestamps, looked up at call time so freezegun's patch applies."""
    return time.time()


def _bind(params: Params) -> Mapping[str, Any] | tuple[Any, ...]:
    return params if isinstance(params, Mapping) else tuple(params)


class Database:
    """Open, migrate and close the database file; run statements under the one lock.

    Use ``async with SqlRecordingService(path) as store`` or ``await store.open()``.
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: Optional[aiosqlite.Connection] = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> Self:
        """Open the file (creating it and its folder), set the pragmas and migrate it."""
        if self._conn is not None:
            return self
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
            # Rows carry their column names: the mapper fills fields by name.
            conn.row_factory = sqlite3.Row
            await conn.execute(sql.PRAGMA_SET_BUSY_TIMEOUT.format(milliseconds=int(self._busy_timeout_ms)))
            await conn.execute(sql.PRAGMA_SET_JOURNAL_MODE_WAL)
            await conn.execute(sql.PRAGMA_SET_SYNCHRONOUS_NORMAL)
            await conn.execute(sql.PRAGMA_SET_FOREIGN_KEYS_ON)
            await self._migrate(conn)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._unusable(exc) from exc
            raise
        self._conn = conn
        return self

    def _unusable(self, exc: sqlite3.Error) -> StoreError:
        """The one sentence for a database file SQLite refuses to open or read.

        A damaged file (not a database, a malformed image) says how the owner gets going
        again: move it aside, and the next load starts a new one and finds the recording
        files again (``pipeline/adoption.py``); nothing in the data folder is deleted.
        """
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        if isinstance(exc, sqlite3.OperationalError):
            return StoreError(
                f"The recordings database {self.path.name} cannot be opened ({reason}), "
                f"so check that the bot may read and write {self.path.parent} and that its disk is not full."
            )
        return StoreError(
            f"The recordings database {self.path.name} is damaged ({reason}), so move it aside and load again: "
            f"the recording files stay in {self.path.parent} and are found again."
        )

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    async def _migrate(cls, conn: aiosqlite.Connection) -> None:
        """Apply every migration past the file's version, each in its own transaction.

        A file from a newer cog is refused before anything is written: this cog would
        not know what its extra columns mean.
        """
        rows = list(await conn.execute_fetchall(sql.PRAGMA_FETCH_USER_VERSION))
        version = int(rows[0][0]) if rows else 0
        if version > LATEST_VERSION:
            raise StoreError(
                f"The recordings database is version {version}, newer than this cog "
                f"understands ({LATEST_VERSION}), so update the cog to open it."
            )
        for target in range(version + 1, LATEST_VERSION + 1):
            async with cls._immediate(conn):
                for statement in MIGRATIONS[target - 1]:
                    await conn.execute(statement)
                await conn.execute(sql.PRAGMA_SET_USER_VERSION.format(version=target))

    async def schema_version(self) -> int:
        rows = await self._fetch(sql.PRAGMA_FETCH_USER_VERSION)
        return int(rows[0][0])

    # ------------------------------------------------------------------ plumbing
    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("The recordings database is not open.")
        return self._conn

    @staticmethod
    @contextlib.asynccontextmanager
    async def _immediate(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
        """One IMMEDIATE transaction: committed if the block ends, rolled back if it raises.

        The caller holds ``self._lock`` (or owns the connection alone, as migrations do).
        """
        await conn.execute(sql.TRANSACTION_BEGIN_IMMEDIATE)
        try:
            yield conn
        except BaseException:
            await conn.execute(sql.TRANSACTION_ROLLBACK)
            raise
        await conn.execute(sql.TRANSACTION_COMMIT)

    async def _fetch(self, statement: str, params: Params = ()) -> list[sqlite3.Row]:
        """One statement on its own (autocommit), under the lock; all its rows."""
        async with self._lock:
            return list(await self.conn.execute_fetchall(statement, _bind(params)))

    async def _fetch_as(self, cls: type[R], statement: str, params: Params = ()) -> list[R]:
        """:meth:`_fetch`, each row mapped to ``cls``."""
        return [row_to(cls, row) for row in await self._fetch(statement, params)]

    async def _transaction(self, statements: Sequence[tuple[str, Params]]) -> list[list[sqlite3.Row]]:
        """Run statements in one IMMEDIATE transaction; all or nothing."""
        async with self._lock, self._immediate(self.conn) as conn:
            return [list(await conn.execute_fetchall(s, _bind(p))) for s, p in statements]


async def fetch_in(conn: aiosqlite.Connection, statement: str, params: Params = ()) -> list[sqlite3.Row]:
    """One statement on a connection the caller already holds (inside ``_immediate``)."""
    return list(await conn.execute_fetchall(statement, _bind(params)))
