"""Every statement of the write path (fire, start, tick), as pre-written driver SQL on a `Tx`.

Building a Core statement per call costs more than SQLite's own work (cache keys over every column,
`.values()` coercion, result processing); these statements never change shape, so each is written
once for both dialects. They read and write exactly what `tables.py` describes (UTC times as
`Tx.instant` stores them, JSON text), and the store tests check them against the Core reads.
"""

from __future__ import annotations

import datetime as dt
import json
import json.decoder
import json.encoder
import os
from collections.abc import Iterable, Sequence
from typing import Any

from flowengine.results import Actor, HistoryEntry, InstanceView
from flowengine.runtime import Snapshot, TimerPlan
from flowengine.store.tables import read_instant
from flowengine.store.tx import Tx

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
# `JSONEncoder.encode` builds its C encoder on every call; this one is built once. No cycle check:
# what is stored is validated JSON-native data (a cycle would raise RecursionError, not loop).
_C_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_ENCODE = None if _C_ENCODER is None else _C_ENCODER(
    None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)
_SCAN: Any = getattr(json.decoder.JSONDecoder(), "scan_once")  # noqa: B009 (not in the stubs)


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept, unknown types as str (what every stored JSON column holds)."""
    if _ENCODE is None:  # pragma: no cover - CPython always has the C encoder
        return _ENCODER.encode(value)
    return "".join(_ENCODE(value, 0))


def loads(text: str) -> Any:
    """JSON written by `dumps`, without `json.loads`' whitespace handling; anything else goes to it."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the usual JSONDecodeError
    return value if end == len(text) else json.loads(text)


_ROLES: dict[frozenset[str], str] = {}


def _roles_json(roles: frozenset[str]) -> str:
    # Few distinct role sets exist in practice; bounded in case callers invent one per request.
    text = _ROLES.get(roles)
    if text is None:
        if len(_ROLES) > 1024:
            _ROLES.clear()
        text = _ROLES[roles] = dumps(sorted(roles))
    return text


def _q(sql: str) -> tuple[str, str]:
    """(SQLite text, PostgreSQL text) of a statement with positional `?` parameters.

    Positional, not named: the driver binds a tuple by index, where a name costs a lookup per parameter.
    """
    return sql, sql.replace("?", "%s")


_COLUMNS = "id, process_id, version, state, status, data, revision, parent_id, started_by, created_at"
_SELECT = _q(f"SELECT {_COLUMNS} FROM fe_instances WHERE id = ?")
_SELECT_FOR_UPDATE = _q(f"SELECT {_COLUMNS} FROM fe_instances WHERE id = ? FOR UPDATE")
_REVISION = _q("SELECT revision FROM fe_instances WHERE id = ?")
_UPDATE = _q("UPDATE fe_instances SET state = ?, status = ?, data = ?, revision = ?, version = ?, updated_at = ? "
             "WHERE id = ? AND revision = ?")
# A self-loop or escalation keeps state, status and version: naming them in SET would make SQLite
# delete and re-insert the instance's entries in every index on them, unchanged as they are.
_UPDATE_DATA = _q("UPDATE fe_instances SET data = ?, revision = ?, updated_at = ? WHERE id = ? AND revision = ?")
_INSERT = _q("INSERT INTO fe_instances (id, process_id, version, state, status, data, revision, parent_id, "
             "origin_id, started_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
             "ON CONFLICT (id) DO NOTHING")
_CHILDREN = _q("SELECT id FROM fe_instances WHERE parent_id = ? ORDER BY created_at, id")
_RUNNING_CHILDREN = _q("SELECT id FROM fe_instances WHERE parent_id = ? AND status = 'running' "
                       "ORDER BY created_at, id")
_HISTORY = _q("INSERT INTO fe_history (instance_id, seq, event, from_state, to_state, actor_id, actor_roles, "
              "payload, at, kind, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
HISTORY_COLUMNS = ("seq", "event", "from_state", "to_state", "actor_id", "actor_roles", "at", "payload", "kind",
                   "details")
_HISTORY_ENTRY = _q(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM fe_history WHERE instance_id = ? AND seq = ?")
_TIMER = _q("INSERT INTO fe_timers (instance_id, timer, due_at, status, created_at) VALUES (?, ?, ?, 'pending', ?)")
_CLAIM_ONE = "SELECT instance_id, timer, due_at FROM fe_timers WHERE id = ? AND status = 'pending'"
_CLAIM = _q(_CLAIM_ONE)
_CLAIM_SKIP_LOCKED = _q(_CLAIM_ONE + " FOR UPDATE SKIP LOCKED")
_FINISH = _q("UPDATE fe_timers SET status = ?, fired_at = ?, result = ? WHERE id = ?")
# Leaving a scope: pending timers are cancelled, escalations that already fired are closed.
_CANCEL = ("UPDATE fe_timers SET status = CASE status WHEN 'pending' THEN 'cancelled' ELSE 'closed' END, "
           "fired_at = CASE status WHEN 'pending' THEN ? ELSE fired_at END "
           "WHERE instance_id = ? AND status IN ('pending', 'escalated')")
_CANCEL_ALL = _q(_CANCEL)
_CANCEL_ALL_RETURNING = _q(_CANCEL + " RETURNING id")
_OUTBOX = _q("INSERT INTO fe_outbox (delivery_id, instance_id, seq, topic, payload, created_at, attempts) "
             "VALUES (?, ?, ?, ?, ?, ?, 0)")
_KEY = _q("SELECT seq FROM fe_idempotency WHERE instance_id = ? AND key = ?")
_REMEMBER = _q("INSERT INTO fe_idempotency (instance_id, key, seq, created_at) VALUES (?, ?, ?, ?)")
# One statement, no race: the first number of a (prefix, year) inserts the row, later ones bump it.
_NEXT_NUMBER = _q("INSERT INTO fe_counters (prefix, year, value) VALUES (?, ?, 1) "
                  "ON CONFLICT (prefix, year) DO UPDATE SET value = fe_counters.value + 1 RETURNING value")

_VARIABLE: dict[tuple[str, int], tuple[str, str]] = {}


def _in(template: str, count: int) -> tuple[str, str]:
    """`template` with `{IN}` replaced by `count` parameters (`?, ?, …`), cached per shape."""
    sql = _VARIABLE.get((template, count))
    if sql is None:
        sql = _VARIABLE[(template, count)] = _q(template.replace("{IN}", ", ".join("?" * count)))
    return sql


# --- instances ------------------------------------------------------------------------------------

def get_snapshot(tx: Tx, instance_id: str) -> Snapshot | None:
    """The instance row; in a PostgreSQL write transaction it is locked (FOR UPDATE) until commit.

    The lock makes fires without an expected revision queue behind each other instead of failing, as
    BEGIN IMMEDIATE already does on SQLite; a fire with `expected_revision` still gets its conflict.
    """
    row = tx.execute(_SELECT_FOR_UPDATE if tx.pg and tx.write else _SELECT, (instance_id,)).fetchone()
    return None if row is None else snapshot_of(row)


def snapshot_of(row: Any) -> Snapshot:
    """An instance row (the columns of `_COLUMNS`, from the driver or from Core) as a Snapshot."""
    return Snapshot(row[0], row[1], row[2], row[3], row[4], loads(row[5]), row[6], row[7], row[8],
                    read_instant(row[9]))


def get_snapshots(tx: Tx, instance_ids: Sequence[str]) -> dict[str, Snapshot]:
    """Several instance rows in one statement (locked in id order on PostgreSQL, as `get_snapshot` locks)."""
    if not instance_ids:
        return {}
    lock = " ORDER BY id FOR UPDATE" if tx.pg and tx.write else ""
    sql = _in(f"SELECT {_COLUMNS} FROM fe_instances WHERE id IN ({{IN}}){lock}", len(instance_ids))
    return {row[0]: snapshot_of(row) for row in tx.execute(sql, tuple(instance_ids))}


def current_revision(tx: Tx, instance_id: str) -> int | None:
    row = tx.execute(_REVISION, (instance_id,)).fetchone()
    return None if row is None else int(row[0])


def insert_instance(tx: Tx, snap: Snapshot, now: dt.datetime, origin_id: str | None) -> bool:
    """False if the id is taken."""
    at = tx.instant(now)
    cursor = tx.execute(_INSERT, (snap.id, snap.process, snap.version, snap.state, snap.status, dumps(snap.data),
                                  snap.revision, snap.parent_id, origin_id, snap.started_by, at, at))
    return bool(cursor.rowcount == 1)


def update_instance(tx: Tx, snap: Snapshot, expected_revision: int, now: dt.datetime,
                    before: Snapshot | None = None) -> bool:
    """The optimistic lock: False when the revision moved since it was read (someone else won).

    `before`: the row as read; when state, status and version are unchanged only the rest is written.
    """
    if before is not None and (before.state, before.status, before.version) == (snap.state, snap.status,
                                                                                 snap.version):
        cursor = tx.execute(_UPDATE_DATA, (dumps(snap.data), snap.revision, tx.instant(now), snap.id,
                                           expected_revision))
    else:
        cursor = tx.execute(_UPDATE, (snap.state, snap.status, dumps(snap.data), snap.revision, snap.version,
                                      tx.instant(now), snap.id, expected_revision))
    if tx.touched is not None:
        tx.touched.add(snap.id)
    return bool(cursor.rowcount == 1)


def children(tx: Tx, parent_id: str, *, running_only: bool = False) -> list[str]:
    return [r[0] for r in tx.execute(_RUNNING_CHILDREN if running_only else _CHILDREN, (parent_id,))]


def find_views(tx: Tx, process: str, states: Sequence[str] | None, status: str | None) -> list[InstanceView]:
    """Instances of `process` (in `states`, with `status`), oldest first, as hooks see them."""
    if states is not None and not states:
        return []
    template = "SELECT id, process_id, state, status, data FROM fe_instances WHERE process_id = ?"
    params: list[Any] = [process]
    if status is not None:
        template += " AND status = ?"
        params.append(status)
    if states is not None:
        template += " AND state IN ({IN})"
        params.extend(states)
    sql = _in(template + " ORDER BY created_at, id", len(states or ()))
    return [InstanceView(r[0], r[1], r[2], r[3], loads(r[4])) for r in tx.execute(sql, params)]


# --- history --------------------------------------------------------------------------------------

def insert_history(tx: Tx, instance_id: str, seq: int, event: str, source: str | None, target: str,
                   actor: Actor, payload: dict[str, Any], at: dt.datetime, kind: str,
                   details: dict[str, Any]) -> None:
    tx.execute(_HISTORY, (instance_id, seq, event, source, target, actor.id, _roles_json(actor.roles),
                          dumps(payload) if payload else "{}", tx.instant(at), kind,
                          dumps(details) if details else "{}"))


def history_entry(tx: Tx, instance_id: str, seq: int) -> HistoryEntry | None:
    row = tx.execute(_HISTORY_ENTRY, (instance_id, seq)).fetchone()
    return None if row is None else history_entry_of(row)


def history_entry_of(r: Any) -> HistoryEntry:
    """A history row (the columns of `HISTORY_COLUMNS`, from the driver or from Core) as a HistoryEntry."""
    return HistoryEntry(r[0], r[1], r[2], r[3], Actor(r[4], loads(r[5])), read_instant(r[6]), loads(r[7]), r[8],
                        loads(r[9]))


# --- timers ---------------------------------------------------------------------------------------

def schedule_timers(tx: Tx, instance_id: str, plans: Iterable[TimerPlan], now: dt.datetime) -> None:
    due = [(p.timer, tx.instant(p.due_at)) for p in plans]
    if due:
        at = tx.instant(now)
        tx.executemany(_TIMER, [(instance_id, timer, when, at) for timer, when in due])


def cancel_timers(tx: Tx, instance_id: str, timer_ids: Iterable[str] | None, now: dt.datetime) -> None:
    """Cancel pending timers (all of them when `timer_ids` is None); close escalations whose scope is left."""
    tracking = tx.cancelled is not None
    if timer_ids is None:
        cursor = tx.execute(_CANCEL_ALL_RETURNING if tracking else _CANCEL_ALL, (tx.instant(now), instance_id))
    else:
        names = sorted(timer_ids)
        if not names:
            return
        sql = _CANCEL + " AND timer IN ({IN})" + (" RETURNING id" if tracking else "")
        cursor = tx.execute(_in(sql, len(names)), (tx.instant(now), instance_id, *names))
    if tx.cancelled is not None:
        tx.cancelled.update(row[0] for row in cursor.fetchall())


def claim_timer(tx: Tx, timer_id: int) -> tuple[str, str, dt.datetime] | None:
    """Lock one pending timer for this transaction (SKIP LOCKED on PostgreSQL: other workers pass it by)."""
    row = tx.execute(_CLAIM_SKIP_LOCKED if tx.pg else _CLAIM, (timer_id,)).fetchone()
    return None if row is None else (row[0], row[1], read_instant(row[2]))


def claim_timers(tx: Tx, timer_ids: Sequence[int]) -> dict[int, tuple[str, str, dt.datetime]]:
    """Of `timer_ids`, those still pending, locked for this transaction (SKIP LOCKED on PostgreSQL)."""
    if not timer_ids:
        return {}
    sql = _in("SELECT id, instance_id, timer, due_at FROM fe_timers WHERE status = 'pending' AND id IN ({IN})"
              + (" FOR UPDATE SKIP LOCKED" if tx.pg else ""), len(timer_ids))
    return {r[0]: (r[1], r[2], read_instant(r[3])) for r in tx.execute(sql, tuple(timer_ids))}


def finish_timer(tx: Tx, timer_id: int, status: str, now: dt.datetime, result: str | None) -> None:
    tx.execute(_FINISH, (status, tx.instant(now), result, timer_id))


def finish_timers(tx: Tx, outcomes: list[tuple[int, str, str | None]], now: dt.datetime) -> None:
    """Several timers' outcomes, (row id, status, result) each, in one statement."""
    if outcomes:
        at = tx.instant(now)
        tx.executemany(_FINISH, [(status, at, result, row) for row, status, result in outcomes])


def savepoint(tx: Tx, name: str, action: str = "SAVEPOINT") -> None:
    """SAVEPOINT / RELEASE SAVEPOINT / ROLLBACK TO SAVEPOINT (balanced by the caller)."""
    tx.driver.execute(f"{action} {name}")


# --- outbox, idempotency, counters -----------------------------------------------------------------

def insert_outbox(tx: Tx, instance_id: str, seq: int, messages: Iterable[tuple[str, dict[str, Any]]],
                  now: dt.datetime) -> None:
    at = tx.instant(now)
    rows = [(_uuid4(), instance_id, seq, topic, dumps(payload), at) for topic, payload in messages]
    if rows:
        tx.executemany(_OUTBOX, rows)


def _uuid4() -> str:
    """`str(uuid.uuid4())` without building a UUID object: 16 random bytes, version 4, RFC 4122 variant."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def idempotent_seq(tx: Tx, instance_id: str, key: str) -> int | None:
    row = tx.execute(_KEY, (instance_id, key)).fetchone()
    return None if row is None else int(row[0])


def remember_key(tx: Tx, instance_id: str, key: str, seq: int, now: dt.datetime) -> None:
    tx.execute(_REMEMBER, (instance_id, key, seq, tx.instant(now)))


def next_number(tx: Tx, prefix: str, year: int) -> int:
    """The next number of a form counter; rolled back with the transaction, so numbers have no gaps."""
    rows = tx.execute(_NEXT_NUMBER, (prefix, year)).fetchall()
    return int(rows[0][0])
