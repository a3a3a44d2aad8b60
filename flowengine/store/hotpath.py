"""The four statements every fire runs, as pre-written driver SQL.

Building a Core statement per call costs more than SQLite's own work (cache keys over every column,
`.values()` coercion); these statements never change shape, so they are written once per dialect and
run on the DBAPI cursor of the same pooled connection (so inside the same transaction), skipping the
result machinery that costs more than the statement. They read and write exactly what the Core
definitions in `tables.py` describe, and the tests run both paths against each other.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Connection

from flowengine.runtime import Snapshot

_SELECT = ("SELECT id, process_id, version, state, status, data, revision, parent_id, started_by, created_at "
           "FROM fe_instances WHERE id = {id}")
_SELECT_FOR_UPDATE = _SELECT + " FOR UPDATE"
_UPDATE = ("UPDATE fe_instances SET state = {state}, status = {status}, data = {data}, revision = {revision}, "
           "version = {version}, updated_at = {updated_at} WHERE id = {id} AND revision = {expected}")
_HISTORY = ("INSERT INTO fe_history (instance_id, seq, event, from_state, to_state, actor_id, actor_roles, payload, "
            "at, kind, details) VALUES ({instance_id}, {seq}, {event}, {from_state}, {to_state}, {actor_id}, "
            "{actor_roles}, {payload}, {at}, {kind}, {details})")


_INSERT = ("INSERT INTO fe_instances (id, process_id, version, state, status, data, revision, parent_id, origin_id, "
           "started_by, created_at, updated_at) VALUES ({id}, {process_id}, {version}, {state}, {status}, {data}, "
           "{revision}, {parent_id}, {origin_id}, {started_by}, {created_at}, {updated_at}) "
           "ON CONFLICT (id) DO NOTHING")


_CLAIM = "SELECT instance_id, timer, due_at FROM fe_timers WHERE id = {id} AND status = 'pending'"
_FINISH = "UPDATE fe_timers SET status = {status}, fired_at = {fired_at}, result = {result} WHERE id = {id}"
_TIMER = ("INSERT INTO fe_timers (instance_id, timer, due_at, status, created_at) "
          "VALUES ({instance_id}, {timer}, {due_at}, 'pending', {created_at})")
_OUTBOX = ("INSERT INTO fe_outbox (delivery_id, instance_id, seq, topic, payload, created_at, attempts) "
           "VALUES ({delivery_id}, {instance_id}, {seq}, {topic}, {payload}, {created_at}, 0)")


def _style(template: str, dialect: str) -> str:
    names = [part.split("}")[0] for part in template.split("{")[1:]]
    if dialect == "sqlite":
        return template.format(**{n: f":{n}" for n in names})
    return template.format(**{n: f"%({n})s" for n in names})


_CACHE: dict[tuple[str, str], str] = {}


def _sql(conn: Connection, template: str) -> str:
    key = (template, conn.dialect.name)
    text = _CACHE.get(key)
    if text is None:
        text = _CACHE[key] = _style(template, conn.dialect.name)
    return text


def _instant(conn: Connection, value: dt.datetime) -> Any:
    # Same representation as tables.UTCDateTime: naive UTC text on SQLite, aware on PostgreSQL.
    utc = value.astimezone(dt.UTC)
    if conn.dialect.name == "sqlite":
        return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return utc


def _read_instant(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    moment: dt.datetime = value
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _execute(conn: Connection, template: str, params: dict[str, Any]) -> Any:
    cursor = conn.connection.cursor()
    cursor.execute(_sql(conn, template), params)
    return cursor


def get_snapshot(conn: Connection, instance_id: str) -> Snapshot | None:
    """The instance row; in a PostgreSQL write transaction it is locked (FOR UPDATE) until commit.

    The lock makes fires without an expected revision queue behind each other instead of failing, as
    BEGIN IMMEDIATE already does on SQLite; a fire with `expected_revision` still gets its conflict.
    """
    lock = conn.dialect.name == "postgresql" and conn.get_execution_options().get("flowengine_write", False)
    cursor = _execute(conn, _SELECT_FOR_UPDATE if lock else _SELECT, {"id": instance_id})
    row = cursor.fetchone()
    cursor.close()
    if row is None:
        return None
    return Snapshot(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7], row[8],
                    _read_instant(row[9]))


def insert_instance(conn: Connection, snap: Snapshot, now: dt.datetime, origin_id: str | None,
                    data_json: str) -> bool:
    at = _instant(conn, now)
    cursor = _execute(conn, _INSERT, {
        "id": snap.id, "process_id": snap.process, "version": snap.version, "state": snap.state,
        "status": snap.status, "data": data_json, "revision": snap.revision, "parent_id": snap.parent_id,
        "origin_id": origin_id, "started_by": snap.started_by, "created_at": at, "updated_at": at})
    inserted: int = cursor.rowcount
    cursor.close()
    return inserted == 1


def update_instance(conn: Connection, snap: Snapshot, expected_revision: int, now: dt.datetime,
                    data_json: str) -> bool:
    cursor = _execute(conn, _UPDATE, {
        "state": snap.state, "status": snap.status, "data": data_json, "revision": snap.revision,
        "version": snap.version, "updated_at": _instant(conn, now), "id": snap.id, "expected": expected_revision})
    changed: int = cursor.rowcount
    cursor.close()
    return changed == 1


def insert_history(conn: Connection, instance_id: str, seq: int, event: str, source: str | None, target: str,
                   actor_id: str, actor_roles_json: str, payload_json: str, at: dt.datetime, kind: str,
                   details_json: str) -> None:
    _execute(conn, _HISTORY, {
        "instance_id": instance_id, "seq": seq, "event": event, "from_state": source, "to_state": target,
        "actor_id": actor_id, "actor_roles": actor_roles_json, "payload": payload_json, "at": _instant(conn, at),
        "kind": kind, "details": details_json}).close()


def claim_timer(conn: Connection, timer_id: int) -> tuple[str, str, dt.datetime] | None:
    """Lock one pending timer for this transaction (SKIP LOCKED on PostgreSQL: other workers pass it by)."""
    template = _CLAIM + (" FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else "")
    cursor = _execute(conn, template, {"id": timer_id})
    row = cursor.fetchone()
    cursor.close()
    return None if row is None else (row[0], row[1], _read_instant(row[2]))


def finish_timer(conn: Connection, timer_id: int, status: str, now: dt.datetime, result: str | None) -> None:
    _execute(conn, _FINISH, {"status": status, "fired_at": _instant(conn, now), "result": result,
                             "id": timer_id}).close()


def insert_many(conn: Connection, template: str, rows: list[dict[str, Any]]) -> None:
    cursor = conn.connection.cursor()
    cursor.executemany(_sql(conn, template), rows)
    cursor.close()


def schedule_timers(conn: Connection, instance_id: str, plans: list[tuple[str, dt.datetime]],
                    now: dt.datetime) -> None:
    at = _instant(conn, now)
    insert_many(conn, _TIMER, [{"instance_id": instance_id, "timer": timer, "due_at": _instant(conn, due),
                                "created_at": at} for timer, due in plans])


def insert_outbox(conn: Connection, rows: list[dict[str, Any]], now: dt.datetime) -> None:
    at = _instant(conn, now)
    insert_many(conn, _OUTBOX, [{**row, "created_at": at} for row in rows])


def savepoint(conn: Connection, name: str, action: str = "SAVEPOINT") -> None:
    """SAVEPOINT / RELEASE SAVEPOINT / ROLLBACK TO SAVEPOINT at driver level (balanced by the caller)."""
    cursor = conn.connection.cursor()
    cursor.execute(f"{action} {name}")
    cursor.close()
