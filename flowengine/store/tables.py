"""The flowengine tables (SQLAlchemy Core). Alembic migrations create and upgrade them; nothing here
creates tables at run time. Times are stored as UTC and read back aware on every database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from flowengine.clock import TWO_DIGITS, date_text

metadata = MetaData()


def to_utc(value: dt.datetime) -> dt.datetime:
    """An aware datetime in UTC, as every stored time is; a naive one is refused (its zone is unknown)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(dt.UTC)


def sqlite_text(utc: dt.datetime) -> str:
    """A UTC datetime as SQLite stores it (naive `YYYY-MM-DD HH:MM:SS.ffffff`, as SQLAlchemy writes it).

    Joined from a day cache and a table: `replace(tzinfo=None).isoformat(sep=..., timespec=...)` parses
    its keywords on every call, three times the cost, and a fire stores one or two instants.
    """
    two = TWO_DIGITS
    return f"{date_text(utc)} {two[utc.hour]}:{two[utc.minute]}:{two[utc.second]}.{utc.microsecond:06d}"


def read_instant(value: Any) -> dt.datetime:
    """A stored time back as an aware UTC datetime (SQLite keeps naive UTC, as text or parsed)."""
    if isinstance(value, str):
        try:
            # Naive UTC text parsed with its zone in one step; fromisoformat gives `dt.UTC` itself.
            return dt.datetime.fromisoformat(value + "+00:00")
        except ValueError:
            value = dt.datetime.fromisoformat(value)  # text that carries its own offset
    moment: dt.datetime = value
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out; SQLite keeps no zone, so we normalise to UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        utc = to_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else read_instant(value)


definitions = Table(
    "fe_definitions", metadata,
    Column("process_id", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("definition_json", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("process_id", "version"),
    UniqueConstraint("process_id", "content_hash", name="uq_fe_definitions_hash"),
)

instances = Table(
    "fe_instances", metadata,
    Column("id", String(200), primary_key=True),
    Column("process_id", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("data", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("parent_id", String(200), nullable=True),
    Column("origin_id", String(200), nullable=True),
    Column("started_by", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # `list` orders by (created_at, id): with these its first page reads `limit` rows, sorts nothing.
    Index("ix_fe_instances_process_state_created", "process_id", "state", "created_at", "id"),
    Index("ix_fe_instances_state_created", "state", "created_at", "id"),
    Index("ix_fe_instances_status", "status"),
    Index("ix_fe_instances_parent", "parent_id"),
)

history = Table(
    "fe_history", metadata,
    Column("instance_id", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event", String(100), nullable=False),
    Column("from_state", String(100), nullable=True),
    Column("to_state", String(100), nullable=False),
    Column("actor_id", String(200), nullable=False),
    Column("actor_roles", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("details", Text, nullable=False),
    PrimaryKeyConstraint("instance_id", "seq"),
    Index("ix_fe_history_at", "at"),
)

timers = Table(
    "fe_timers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("instance_id", String(200), nullable=False),
    Column("timer", String(100), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),  # pending, fired, escalated, closed, cancelled, failed
    Column("created_at", UTCDateTime, nullable=False),
    Column("fired_at", UTCDateTime, nullable=True),
    Column("result", Text, nullable=True),
    Index("ix_fe_timers_due", "status", "due_at"),
    Index("ix_fe_timers_instance", "instance_id", "status"),
)

outbox = Table(
    "fe_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("instance_id", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("topic", String(100), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Index("ix_fe_outbox_pending", "delivered_at", "id"),
)

idempotency = Table(
    "fe_idempotency", metadata,
    Column("instance_id", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("instance_id", "key"),
)

counters = Table(
    "fe_counters", metadata,
    Column("prefix", String(20), nullable=False),
    Column("year", Integer, nullable=False),
    Column("value", Integer, nullable=False),
    PrimaryKeyConstraint("prefix", "year"),
)
