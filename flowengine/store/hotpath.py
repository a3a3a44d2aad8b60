"""Every statement of the write path (fire, start, tick), as pre-written driver SQL on a `Tx`.

Building a Core statement per call costs more than SQLite's own work (cache keys over every column,
`.values()` coercion, result processing); these statements never change shape, so each is written
once for both dialects. They read and write exactly what `tables.py` describes (UTC times as
`Tx.instant` stores them, JSON text), and the store tests check them against the Core reads.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from flowengine.results import Actor, HistoryEntry, InstanceView
from flowengine.runtime import Snapshot, TimerPlan
from flowengine.store.tx import Tx, read_instant

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


_ROLES: dict[frozenset[str], str] = {}


def _roles_json(roles: frozenset[str]) -> str:
    # Few distinct role sets exist in practice; bounded in case callers invent one per request.
    text = _ROLES.get(roles)
    if text is None:
        if len(_ROLES) > 1024:
            _ROLES.clear()
        text = _ROLES[roles] = dumps(sorted(roles))
    return text


def _q(template: str) -> tuple[str, str]:
    """(SQLite text, PostgreSQL text) of a statement whose parameters are written `{name}`."""
    names = [part.split("}")[0] for part in template.split("{")[1:]]
    return (template.format(**{n: f":{n}" for n in names}), template.format(**{n: f"%({n})s" for n in names}))


_COLUMNS = "id, process_id, version, state, status, data, revision, parent_id, started_by, created_at"
_SELECT = _q(f"SELECT {_COLUMNS} FROM fe_instances WHERE id = {{id}}")
_SELECT_FOR_UPDATE = _q(f"SELECT {_COLUMNS} FROM fe_instances WHERE id = {{id}} FOR UPDATE")
_REVISION = _q("SELECT revision FROM fe_instances WHERE id = {id}")
_UPDATE = _q("UPDATE fe_instances SET state = {state}, status = {status}, data = {data}, revision = {revision}, "
             "version = {version}, updated_at = {updated_at} WHERE id = {id} AND revision = {expected}")
_INSERT = _q("INSERT INTO fe_instances (id, process_id, version, state, status, data, revision, parent_id, "
             "origin_id, started_by, created_at, updated_at) VALUES ({id}, {process_id}, {version}, {state}, "
             "{status}, {data}, {revision}, {parent_id}, {origin_id}, {started_by}, {created_at}, {updated_at}) "
             "ON CONFLICT (id) DO NOTHING")
_CHILDREN = _q("SELECT id FROM fe_instances WHERE parent_id = {parent} ORDER BY created_at, id")
_RUNNING_CHILDREN = _q("SELECT id FROM fe_instances WHERE parent_id = {parent} AND status = 'running' "
                       "ORDER BY created_at, id")
_HISTORY = _q("INSERT INTO fe_history (instance_id, seq, event, from_state, to_state, actor_id, actor_roles, "
              "payload, at, kind, details) VALUES ({instance_id}, {seq}, {event}, {from_state}, {to_state}, "
              "{actor_id}, {actor_roles}, {payload}, {at}, {kind}, {details})")
_HISTORY_ENTRY = _q("SELECT seq, event, from_state, to_state, actor_id, actor_roles, at, payload, kind, details "
                    "FROM fe_history WHERE instance_id = {id} AND seq = {seq}")
_TIMER = _q("INSERT INTO fe_timers (instance_id, timer, due_at, status, created_at) "
            "VALUES ({instance_id}, {timer}, {due_at}, 'pending', {created_at})")
_CLAIM = _q("SELECT instance_id, timer, due_at FROM fe_timers WHERE id = {id} AND status = 'pending'")
_CLAIM_SKIP_LOCKED = _q("SELECT instance_id, timer, due_at FROM fe_timers WHERE id = {id} AND status = 'pending' "
                        "FOR UPDATE SKIP LOCKED")
_FINISH = _q("UPDATE fe_timers SET status = {status}, fired_at = {fired_at}, result = {result} WHERE id = {id}")
# Leaving a scope: pending timers are cancelled, escalations that already fired are closed.
_CANCEL = ("UPDATE fe_timers SET status = CASE status WHEN 'pending' THEN 'cancelled' ELSE 'closed' END, "
           "fired_at = CASE status WHEN 'pending' THEN {now} ELSE fired_at END "
           "WHERE instance_id = {id} AND status IN ('pending', 'escalated')")
_CANCEL_ALL = _q(_CANCEL)
_OUTBOX = _q("INSERT INTO fe_outbox (delivery_id, instance_id, seq, topic, payload, created_at, attempts) "
             "VALUES ({delivery_id}, {instance_id}, {seq}, {topic}, {payload}, {created_at}, 0)")
_KEY = _q("SELECT seq FROM fe_idempotency WHERE instance_id = {id} AND key = {key}")
_REMEMBER = _q("INSERT INTO fe_idempotency (instance_id, key, seq, created_at) VALUES ({id}, {key}, {seq}, {at})")
# One statement, no race: the first number of a (prefix, year) inserts the row, later ones bump it.
_NEXT_NUMBER = _q("INSERT INTO fe_counters (prefix, year, value) VALUES ({prefix}, {year}, 1) "
                  "ON CONFLICT (prefix, year) DO UPDATE SET value = fe_counters.value + 1 RETURNING value")

_VARIABLE: dict[str, tuple[str, str]] = {}


def _in(template: str, column: str, count: int) -> tuple[tuple[str, str], list[str]]:
    """`template` with `{IN}` replaced by `column IN (...)` of `count` parameters (cached per shape)."""
    names = [f"p{i}" for i in range(count)]
    key = f"{template}|{column}|{count}"
    sql = _VARIABLE.get(key)
    if sql is None:
        clause = f"{column} IN ({', '.join('{' + n + '}' for n in names)})"
        sql = _VARIABLE[key] = _q(template.replace("{IN}", clause))
    return sql, names


# --- instances ------------------------------------------------------------------------------------

def get_snapshot(tx: Tx, instance_id: str) -> Snapshot | None:
    """The instance row; in a PostgreSQL write transaction it is locked (FOR UPDATE) until commit.

    The lock makes fires without an expected revision queue behind each other instead of failing, as
    BEGIN IMMEDIATE already does on SQLite; a fire with `expected_revision` still gets its conflict.
    """
    row = tx.execute(_SELECT_FOR_UPDATE if tx.pg and tx.write else _SELECT, {"id": instance_id}).fetchone()
    if row is None:
        return None
    return Snapshot(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7], row[8],
                    read_instant(row[9]))


def current_revision(tx: Tx, instance_id: str) -> int | None:
    row = tx.execute(_REVISION, {"id": instance_id}).fetchone()
    return None if row is None else int(row[0])


def insert_instance(tx: Tx, snap: Snapshot, now: dt.datetime, origin_id: str | None) -> bool:
    """False if the id is taken."""
    at = tx.instant(now)
    cursor = tx.execute(_INSERT, {
        "id": snap.id, "process_id": snap.process, "version": snap.version, "state": snap.state,
        "status": snap.status, "data": dumps(snap.data), "revision": snap.revision, "parent_id": snap.parent_id,
        "origin_id": origin_id, "started_by": snap.started_by, "created_at": at, "updated_at": at})
    return bool(cursor.rowcount == 1)


def update_instance(tx: Tx, snap: Snapshot, expected_revision: int, now: dt.datetime) -> bool:
    """The optimistic lock: False when the revision moved since it was read (someone else won)."""
    cursor = tx.execute(_UPDATE, {
        "state": snap.state, "status": snap.status, "data": dumps(snap.data), "revision": snap.revision,
        "version": snap.version, "updated_at": tx.instant(now), "id": snap.id, "expected": expected_revision})
    return bool(cursor.rowcount == 1)


def children(tx: Tx, parent_id: str, *, running_only: bool = False) -> list[str]:
    return [r[0] for r in tx.execute(_RUNNING_CHILDREN if running_only else _CHILDREN, {"parent": parent_id})]


def find_views(tx: Tx, process: str, states: Sequence[str] | None, status: str | None) -> list[InstanceView]:
    """Instances of `process` (in `states`, with `status`), oldest first, as hooks see them."""
    template = "SELECT id, process_id, state, status, data FROM fe_instances WHERE process_id = {process}"
    params: dict[str, Any] = {"process": process}
    if status is not None:
        template += " AND status = {status}"
        params["status"] = status
    template += " AND {IN}" if states is not None else ""
    template += " ORDER BY created_at, id"
    if states is None:
        sql = _VARIABLE.get(template) or _VARIABLE.setdefault(template, _q(template))
    else:
        sql, names = _in(template, "state", len(states))
        params.update(zip(names, states, strict=True))
        if not states:
            return []
    return [InstanceView(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in tx.execute(sql, params)]


# --- history --------------------------------------------------------------------------------------

def insert_history(tx: Tx, instance_id: str, seq: int, event: str, source: str | None, target: str,
                   actor: Actor, payload: dict[str, Any], at: dt.datetime, kind: str,
                   details: dict[str, Any]) -> None:
    tx.execute(_HISTORY, {
        "instance_id": instance_id, "seq": seq, "event": event, "from_state": source, "to_state": target,
        "actor_id": actor.id, "actor_roles": _roles_json(actor.roles), "payload": dumps(payload) if payload else "{}",
        "at": tx.instant(at), "kind": kind, "details": dumps(details) if details else "{}"})


def history_entry(tx: Tx, instance_id: str, seq: int) -> HistoryEntry | None:
    r = tx.execute(_HISTORY_ENTRY, {"id": instance_id, "seq": seq}).fetchone()
    if r is None:
        return None
    return HistoryEntry(r[0], r[1], r[2], r[3], Actor(r[4], json.loads(r[5])), read_instant(r[6]),
                        json.loads(r[7]), r[8], json.loads(r[9]))


# --- timers ---------------------------------------------------------------------------------------

def schedule_timers(tx: Tx, instance_id: str, plans: Iterable[TimerPlan], now: dt.datetime) -> None:
    rows = [{"instance_id": instance_id, "timer": p.timer, "due_at": tx.instant(p.due_at), "created_at": None}
            for p in plans]
    if rows:
        at = tx.instant(now)
        for row in rows:
            row["created_at"] = at
        tx.executemany(_TIMER, rows)


def cancel_timers(tx: Tx, instance_id: str, timer_ids: Iterable[str] | None, now: dt.datetime) -> None:
    """Cancel pending timers (all of them when `timer_ids` is None); close escalations whose scope is left."""
    params: dict[str, Any] = {"id": instance_id, "now": tx.instant(now)}
    if timer_ids is None:
        tx.execute(_CANCEL_ALL, params)
        return
    names = sorted(timer_ids)
    if names:
        sql, keys = _in(_CANCEL + " AND {IN}", "timer", len(names))
        params.update(zip(keys, names, strict=True))
        tx.execute(sql, params)


def claim_timer(tx: Tx, timer_id: int) -> tuple[str, str, dt.datetime] | None:
    """Lock one pending timer for this transaction (SKIP LOCKED on PostgreSQL: other workers pass it by)."""
    row = tx.execute(_CLAIM_SKIP_LOCKED if tx.pg else _CLAIM, {"id": timer_id}).fetchone()
    return None if row is None else (row[0], row[1], read_instant(row[2]))


def finish_timer(tx: Tx, timer_id: int, status: str, now: dt.datetime, result: str | None) -> None:
    tx.execute(_FINISH, {"status": status, "fired_at": tx.instant(now), "result": result, "id": timer_id})


def savepoint(tx: Tx, name: str, action: str = "SAVEPOINT") -> None:
    """SAVEPOINT / RELEASE SAVEPOINT / ROLLBACK TO SAVEPOINT (balanced by the caller)."""
    tx.driver.execute(f"{action} {name}")


# --- outbox, idempotency, counters -----------------------------------------------------------------

def insert_outbox(tx: Tx, instance_id: str, seq: int, messages: Iterable[tuple[str, dict[str, Any]]],
                  now: dt.datetime) -> None:
    rows = [{"delivery_id": str(uuid.uuid4()), "instance_id": instance_id, "seq": seq, "topic": topic,
             "payload": dumps(payload), "created_at": None} for topic, payload in messages]
    if rows:
        at = tx.instant(now)
        for row in rows:
            row["created_at"] = at
        tx.executemany(_OUTBOX, rows)


def idempotent_seq(tx: Tx, instance_id: str, key: str) -> int | None:
    row = tx.execute(_KEY, {"id": instance_id, "key": key}).fetchone()
    return None if row is None else int(row[0])


def remember_key(tx: Tx, instance_id: str, key: str, seq: int, now: dt.datetime) -> None:
    tx.execute(_REMEMBER, {"id": instance_id, "key": key, "seq": seq, "at": tx.instant(now)})


def next_number(tx: Tx, prefix: str, year: int) -> int:
    """The next number of a form counter; rolled back with the transaction, so numbers have no gaps."""
    rows = tx.execute(_NEXT_NUMBER, {"prefix": prefix, "year": year}).fetchall()
    return int(rows[0][0])
