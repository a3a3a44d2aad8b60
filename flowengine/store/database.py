"""Database connections: SQLite tuned for an embedded store, PostgreSQL as is; schema upgrades by Alembic.

SQLite: WAL, a busy timeout, foreign keys on, and write transactions opened with BEGIN IMMEDIATE so
two writers queue on the lock instead of failing with "database is locked" when a reader upgrades.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from flowengine.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "fe_alembic_version"
SQLITE_BUSY_MS = 30_000


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL", **kwargs: Any) -> Engine:
    """An SQLAlchemy engine for `url` with flowengine's connection settings.

    SQLite runs in WAL mode with `synchronous=NORMAL` by default, SQLite's recommendation for WAL: a
    committed transaction survives a crash of the process (kill -9); an OS crash or power cut may lose
    the last commits but never corrupts the file. Pass `sqlite_synchronous="FULL"` to fsync every commit.
    """
    if sqlite_synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
        raise StoreError(f"sqlite_synchronous must be NORMAL, FULL or EXTRA, not {sqlite_synchronous!r}")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        if url.startswith("sqlite"):
            connect_args = {"timeout": SQLITE_BUSY_MS / 1000, **kwargs.pop("connect_args", {})}
            engine = create_engine(url, connect_args=connect_args, **kwargs)
            _tune_sqlite(engine, sqlite_synchronous.upper())
        else:
            engine = create_engine(url, pool_pre_ping=True, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"can't use database URL {url!r}: {exc}") from exc
    return engine


def _tune_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions can't do IMMEDIATE).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        if ":memory:" not in str(engine.url) and engine.url.database:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("flowengine_write", True) else "DEFERRED"
        conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]


@contextlib.contextmanager
def scratch_schema(url: str, prefix: str = "fe_scratch") -> Iterator[tuple[str, str]]:
    """A new PostgreSQL schema for one test run or benchmark; yields (`url` pinned to it, its name).

    Everything in it is dropped afterwards, so runs against one database never see each other's rows.
    """
    import uuid

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in url else "?"
        try:
            yield f"{url}{sep}options=-csearch_path%3D{schema}", schema
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def store_errors(action: str) -> Iterator[None]:
    """Turn driver errors into StoreError with one clear line; the transaction has rolled back."""
    try:
        yield
    except Exception as exc:
        error = as_store_error(exc, action)
        if error is None:
            raise
        raise error from exc


def as_store_error(exc: Exception, action: str) -> StoreError | None:
    """The StoreError for a database error met while doing `action`; None for anything else."""
    if isinstance(exc, DBAPIError):
        return StoreError(f"database error while {action}: {_first_line(exc)}")
    # The write path talks to the driver directly, so its errors arrive unwrapped.
    if not (_is_driver_error(exc) or isinstance(exc, UnicodeEncodeError)):
        return None
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(f"database error while {action}: {text}")


def _is_driver_error(exc: BaseException) -> bool:
    import sqlite3

    if isinstance(exc, sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - PostgreSQL support is an extra
        return False
    return isinstance(exc, psycopg.Error)


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic; several processes may call this at once."""
    with store_errors("upgrading the schema"):
        if revision == "head" and current_revision(engine) == head_revision():
            return
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Workers starting together must not both create the tables.
                conn.execute(text("SELECT pg_advisory_xact_lock(7462011)"))
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
