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
