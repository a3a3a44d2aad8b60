"""Write transactions at driver level: the path every fire, start and tick takes.

SQLAlchemy's `Connection` (pool checkout, events, transaction objects, checkin with a reset) costs more
than SQLite's own work for a transition, so the write path runs on the DBAPI connection itself:
`BEGIN IMMEDIATE` (SQLite) or the driver's implicit BEGIN (PostgreSQL), pre-written statements
(`store/hotpath.py`), then COMMIT, or ROLLBACK on any error. Connections still come from SQLAlchemy's
pool, so its connect events (WAL, busy timeout, foreign keys) apply; a few are kept checked out between
transactions instead of going back through the pool every time.
"""

from __future__ import annotations

import datetime as dt
import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy import Engine as SAEngine
from sqlalchemy.pool import QueuePool

from flowengine.store.tables import sqlite_text, to_utc

T = TypeVar("T")


class Tx:
    """One open transaction on a DBAPI connection, with the dialect its SQL must be written for."""

    __slots__ = ("_moment", "_stored", "cancelled", "driver", "pg", "statements", "touched", "write")

    def __init__(self, driver: Any, dialect: str, *, write: bool) -> None:
        self.driver = driver
        self.pg = dialect == "postgresql"
        self.write = write
        self.statements = 0
        # Set by a tick batch, whose claimed timers and prefetched instances may go stale: the timers
        # this transaction cancelled and the instances it updated.
        self.cancelled: set[int] | None = None
        self.touched: set[str] | None = None
        self._moment: dt.datetime | None = None
        self._stored: Any = None

    @classmethod
    def of(cls, conn: Connection) -> Tx:
        """The driver side of an SQLAlchemy connection that is already in a transaction."""
        driver = conn.connection.driver_connection
        return cls(driver, conn.dialect.name, write=bool(conn.get_execution_options().get("flowengine_write")))

    def execute(self, sql: tuple[str, str], params: tuple[Any, ...] | list[Any] = ()) -> Any:
        """Run one statement (`sql` is (SQLite text, PostgreSQL text)); returns the driver cursor."""
        self.statements += 1
        return self.driver.execute(sql[self.pg], params)

    def executemany(self, sql: tuple[str, str], rows: list[tuple[Any, ...]]) -> None:
        self.statements += 1
        cursor = self.driver.cursor()
        try:
            cursor.executemany(sql[self.pg], rows)
        finally:
            cursor.close()

    def instant(self, value: dt.datetime) -> Any:
        """`value` as stored (tables.UTCDateTime): naive UTC text on SQLite, aware UTC on PostgreSQL.

        A transaction stores the same `now` many times; it is converted once.
        """
        if value is self._moment:
            return self._stored
        utc = to_utc(value)
        stored: Any = utc if self.pg else sqlite_text(utc)
        self._moment, self._stored = value, stored
        return stored


class Transactions:
    """Runs `fn(tx)` in one write transaction on a pooled connection; commits, or rolls back and raises.

    Up to `keep` connections stay checked out between transactions (a free list; a thread takes one or
    opens another), which saves the pool's checkout, reset and checkin on every fire. Only for a
    `QueuePool` (file SQLite, PostgreSQL): other pools tie a connection to a thread or to one memory
    database, so those go through the pool each time. In a forked child the inherited connections are
    forgotten, never used: they belong to the parent.
    """

    def __init__(self, engine: SAEngine, *, keep: int = 4) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.sqlite = self.dialect == "sqlite"
        self.keep = keep if isinstance(engine.pool, QueuePool) else 0
        self._free: list[Any] = []
        _ALL.add(self)

    def _forked(self) -> None:
        self._free = []  # the parent's connections: never use them, never close them from here

    def _acquire(self) -> Any:
        try:
            return self._free.pop()
        except IndexError:
            return self.engine.raw_connection()

    def _release(self, fairy: Any) -> None:
        if len(self._free) < self.keep:
            self._free.append(fairy)
        else:
            fairy.close()

    def run(self, fn: Callable[[Tx], T]) -> T:
        for attempt in (1, 2):
            fairy = self._acquire()
            tx = Tx(fairy.driver_connection, self.dialect, write=True)
            try:
                if self.sqlite:
                    tx.driver.execute("BEGIN IMMEDIATE")
                result = fn(tx)
                if self.sqlite:
                    tx.driver.execute("COMMIT")
                else:
                    tx.driver.commit()
            except BaseException as exc:
                healthy = self._rollback(fairy)
                if not healthy:
                    fairy.invalidate()
                    # A pooled connection that died while idle (server restart) fails on the first
                    # statement: nothing was sent that could have committed, so one retry is safe.
                    if attempt == 1 and tx.statements <= 1 and isinstance(exc, Exception) and not self.sqlite:
                        continue
                else:
                    self._release(fairy)
                raise
            self._release(fairy)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _rollback(fairy: Any) -> bool:
        driver = fairy.driver_connection
        try:
            driver.rollback()
        except Exception:
            return False
        return not (getattr(driver, "closed", False) or getattr(driver, "broken", False))

    def dispose(self) -> None:
        free, self._free = self._free, []
        for fairy in free:
            fairy.close()


_ALL: weakref.WeakSet[Transactions] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for transactions in list(_ALL):
        transactions._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
