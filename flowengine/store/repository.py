"""Reads (lists, history, timers, the outbox) and the rare writes (definitions, outbox delivery) as
SQLAlchemy Core on a caller's connection; the caller owns the transaction. The write path of fires,
starts and ticks is driver SQL in `hotpath.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from flowengine.results import HistoryEntry, TimerInfo
from flowengine.runtime import Snapshot
from flowengine.store import hotpath
from flowengine.store.tables import definitions, history, instances, outbox, timers
from flowengine.store.tx import Tx

# --- definitions ----------------------------------------------------------------------------------

def definition_version(conn: Connection, process_id: str, content_hash: str) -> int | None:
    row = conn.execute(select(definitions.c.version).where(
        definitions.c.process_id == process_id, definitions.c.content_hash == content_hash)).first()
    return None if row is None else int(row[0])


def add_definition(conn: Connection, process_id: str, content_hash: str, source: str, definition_json: str,
                   now: dt.datetime) -> int:
    latest = conn.execute(select(func.max(definitions.c.version)).where(
        definitions.c.process_id == process_id)).scalar()
    version = int(latest or 0) + 1
    conn.execute(insert(definitions).values(process_id=process_id, version=version, content_hash=content_hash,
                                            source=source, definition_json=definition_json, created_at=now))
    return version


def load_definition(conn: Connection, process_id: str, version: int) -> tuple[str, str] | None:
    row = conn.execute(select(definitions.c.definition_json, definitions.c.source).where(
        definitions.c.process_id == process_id, definitions.c.version == version)).first()
    return None if row is None else (row[0], row[1])


def list_definitions(conn: Connection) -> list[tuple[str, int, str, dt.datetime]]:
    rows = conn.execute(select(definitions.c.process_id, definitions.c.version, definitions.c.content_hash,
                               definitions.c.created_at).order_by(definitions.c.process_id,
                                                                  definitions.c.version))
    return [(r[0], r[1], r[2], r[3]) for r in rows]


# --- instances ------------------------------------------------------------------------------------

_SNAPSHOT_COLUMNS = (instances.c.id, instances.c.process_id, instances.c.version, instances.c.state,
                     instances.c.status, instances.c.data, instances.c.revision, instances.c.parent_id,
                     instances.c.started_by, instances.c.created_at)


def get_snapshot(conn: Connection, instance_id: str) -> Snapshot | None:
    return hotpath.get_snapshot(Tx.of(conn), instance_id)


def instance_times(conn: Connection, instance_id: str) -> tuple[dt.datetime, dt.datetime, str | None] | None:
    row = conn.execute(select(instances.c.created_at, instances.c.updated_at, instances.c.origin_id).where(
        instances.c.id == instance_id)).first()
    return None if row is None else (row[0], row[1], row[2])








def list_rows(conn: Connection, *, process: str | None = None, state: str | None = None,
              status: str | None = None, overdue_at: dt.datetime | None = None, ids: Sequence[str] | None = None,
              states: Sequence[str] | None = None, version: int | None = None, limit: int | None = None,
              offset: int = 0) -> list[Any]:
    stmt = select(*_SNAPSHOT_COLUMNS, instances.c.updated_at)
    if process is not None:
        stmt = stmt.where(instances.c.process_id == process)
    if state is not None:
        stmt = stmt.where(instances.c.state == state)
    if status is not None:
        stmt = stmt.where(instances.c.status == status)
    if ids is not None:
        stmt = stmt.where(instances.c.id.in_(list(ids)))
    if states is not None:
        stmt = stmt.where(instances.c.state.in_(list(states)))
    if version is not None:
        stmt = stmt.where(instances.c.version == version)
    if overdue_at is not None:
        # Overdue: a deadline passed and not yet handled, or an escalation fired and its scope not left.
        due = select(timers.c.instance_id).where(or_(and_(timers.c.status == "pending",
                                                          timers.c.due_at <= overdue_at),
                                                     timers.c.status == "escalated"))
        stmt = stmt.where(instances.c.id.in_(due))
    stmt = stmt.order_by(instances.c.created_at, instances.c.id).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt))


def running_versions(conn: Connection) -> list[tuple[str, int]]:
    rows = conn.execute(select(instances.c.process_id, instances.c.version).where(
        instances.c.status == "running").distinct())
    return sorted((r[0], r[1]) for r in rows)




def children(conn: Connection, parent_id: str, *, running_only: bool = False) -> list[str]:
    stmt = select(instances.c.id).where(instances.c.parent_id == parent_id)
    if running_only:
        stmt = stmt.where(instances.c.status == "running")
    return [r[0] for r in conn.execute(stmt.order_by(instances.c.created_at, instances.c.id))]


def handoffs(conn: Connection, origin_id: str) -> list[str]:
    return [r[0] for r in conn.execute(select(instances.c.id).where(instances.c.origin_id == origin_id).order_by(
        instances.c.created_at, instances.c.id))]


# --- history --------------------------------------------------------------------------------------



def read_history(conn: Connection, instance_id: str) -> list[HistoryEntry]:
    rows = conn.execute(select(*(history.c[name] for name in hotpath.HISTORY_COLUMNS))
                        .where(history.c.instance_id == instance_id).order_by(history.c.seq))
    return [hotpath.history_entry_of(r) for r in rows]


# --- timers ---------------------------------------------------------------------------------------





def pending_timers(conn: Connection, instance_id: str) -> list[tuple[int, str, dt.datetime]]:
    rows = conn.execute(select(timers.c.id, timers.c.timer, timers.c.due_at).where(
        timers.c.instance_id == instance_id, timers.c.status == "pending").order_by(timers.c.due_at, timers.c.id))
    return [(r[0], r[1], r[2]) for r in rows]


def timer_infos(conn: Connection, instance_id: str, kinds: dict[str, tuple[str, str | None]]) -> tuple[TimerInfo, ...]:
    return tuple(TimerInfo(name, due, *kinds.get(name, ("escalate", None)))
                 for _, name, due in pending_timers(conn, instance_id))


def due_timer_ids(conn: Connection, cutoff: dt.datetime, limit: int) -> list[int]:
    """Ids of timers due at `cutoff`, oldest first (ties: the order they were scheduled)."""
    rows = conn.execute(select(timers.c.id).where(timers.c.status == "pending", timers.c.due_at <= cutoff)
                        .order_by(timers.c.due_at, timers.c.id).limit(limit))
    return [r[0] for r in rows]






def count_pending_timers(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(timers).where(timers.c.status == "pending")).scalar()
               or 0)


# --- outbox, idempotency, counters -----------------------------------------------------------------



def pending_outbox(conn: Connection, limit: int) -> list[Any]:
    stmt = select(outbox).where(outbox.c.delivered_at.is_(None)).order_by(outbox.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(conn.execute(stmt))


def mark_delivered(conn: Connection, message_id: int, now: dt.datetime) -> None:
    conn.execute(update(outbox).where(outbox.c.id == message_id).values(delivered_at=now,
                                                                       attempts=outbox.c.attempts + 1))


def mark_failed(conn: Connection, message_id: int, error: str) -> None:
    conn.execute(update(outbox).where(outbox.c.id == message_id).values(attempts=outbox.c.attempts + 1,
                                                                       last_error=error[:1000]))


def outbox_for(conn: Connection, instance_id: str) -> list[Any]:
    return list(conn.execute(select(outbox).where(outbox.c.instance_id == instance_id).order_by(outbox.c.id)))





