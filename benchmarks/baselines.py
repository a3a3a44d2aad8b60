"""The raw baseline, the limit, and the workloads every side runs (`note_moves`, `path_moves`).

raw: per transition, by hand with the driver: read the instance row, update it with a revision check,
append a history row, one transaction each, on tables shaped like fe_instances / fe_history (same columns
and indexes). Nothing is validated and no guard runs: it is what any engine must at least do.
The naive baseline is in benchmarks/naive.py.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import CLERK, ENGINEER, MANAGER, T0, Sample, Stopwatch, sqlite_connect, sqlite_time
from flowengine import Actor

# (instance id, event, payload, actor): one transition to make.
Move = tuple[str, str, dict[str, Any], Actor]

# The ticket fixture's transitions that the benchmark walks (tests/fixtures/processes/ticket.yaml).
TARGETS = {("open", "assign"): "assigned", ("assigned", "resolve"): "review", ("review", "approve"): "closed"}

RAW_SCHEMA = """
CREATE TABLE raw_instances (
    id VARCHAR(200) PRIMARY KEY, process_id VARCHAR(100) NOT NULL, version INTEGER NOT NULL,
    state VARCHAR(100) NOT NULL, status VARCHAR(20) NOT NULL, data TEXT NOT NULL, revision INTEGER NOT NULL,
    parent_id VARCHAR(200), origin_id VARCHAR(200), started_by VARCHAR(200),
    created_at {ts} NOT NULL, updated_at {ts} NOT NULL);
CREATE INDEX ix_raw_instances_process_state_created ON raw_instances (process_id, state, created_at, id);
CREATE INDEX ix_raw_instances_state_created ON raw_instances (state, created_at, id);
CREATE INDEX ix_raw_instances_status ON raw_instances (status);
CREATE INDEX ix_raw_instances_parent ON raw_instances (parent_id);
CREATE TABLE raw_history (
    instance_id VARCHAR(200) NOT NULL, seq INTEGER NOT NULL, event VARCHAR(100) NOT NULL,
    from_state VARCHAR(100), to_state VARCHAR(100) NOT NULL, actor_id VARCHAR(200) NOT NULL,
    actor_roles TEXT NOT NULL, payload TEXT NOT NULL, at {ts} NOT NULL, kind VARCHAR(20) NOT NULL,
    details TEXT NOT NULL, PRIMARY KEY (instance_id, seq));
CREATE INDEX ix_raw_history_at ON raw_history (at);
"""

_SELECT = "SELECT id, process_id, version, state, status, data, revision FROM raw_instances WHERE id = {p}"
_UPDATE = ("UPDATE raw_instances SET state = {p}, status = {p}, data = {p}, revision = {p}, updated_at = {p} "
           "WHERE id = {p} AND revision = {p}")
# Hand-written code that knows the state did not change leaves the indexed columns out of SET (SQLite
# rewrites every index entry on a column named there, changed or not); flowengine does the same.
_UPDATE_DATA = "UPDATE raw_instances SET data = {p}, revision = {p}, updated_at = {p} WHERE id = {p} AND revision = {p}"
_INSERT_HISTORY = ("INSERT INTO raw_history (instance_id, seq, event, from_state, to_state, actor_id, actor_roles, "
                   "payload, at, kind, details) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})")
_INSERT_INSTANCE = ("INSERT INTO raw_instances (id, process_id, version, state, status, data, revision, started_by, "
                    "created_at, updated_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def start_data(i: int) -> dict[str, Any]:
    return {"customer": f"C-{i}", "amount": "2000", "priority": "low"}


def note_moves(ids: Sequence[str], count: int) -> list[Move]:
    """`count` fires of the ticket's `note` self-loop (payload: the note), round-robin over `ids`."""
    return [(ids[i % len(ids)], "note", {"note": f"note {i}"}, CLERK) for i in range(count)]


def path_moves(ids: Sequence[str]) -> list[Move]:
    """assign → resolve (the `if big` branch, amount 2000) → approve (two guards, actions) for each id."""
    moves: list[Move] = []
    for iid in ids:
        moves += [(iid, "assign", {"engineer": "e1"}, CLERK), (iid, "resolve", {}, ENGINEER),
                  (iid, "approve", {}, MANAGER)]
    return moves


WARMUP_MOVES = 30  # untimed first moves on every side (caches, prepared statements); a multiple of 3


def warm_then_time(run: Callable[[Sequence[Move]], object], moves: list[Move]) -> Sample:
    """`run` the first WARMUP_MOVES untimed (caches, prepared statements), then the rest timed; every side
    of a comparison goes through here. Returns (moves timed, wall seconds, CPU seconds)."""
    warmup, timed = moves[:WARMUP_MOVES], moves[WARMUP_MOVES:]
    run(warmup)
    with Stopwatch() as sw:
        run(timed)
    return len(timed), sw.seconds, sw.cpu


def _transition(state: str, event: str) -> tuple[str, str]:
    target = TARGETS.get((state, event), state)
    return target, "completed" if target == "closed" else "running"


# --- raw sqlite3 ----------------------------------------------------------------------------------

def raw_sqlite(directory: Path, instances: int, moves_for: Callable[[list[str]], list[Move]],
               synchronous: str) -> Sample:
    """Seed `instances` rows, then time the moves; returns (transitions, wall seconds, CPU seconds)."""
    conn = sqlite_connect(directory / "raw.db", synchronous)
    conn.executescript(RAW_SCHEMA.format(ts="DATETIME"))
    created = sqlite_time(T0)
    ids = [f"raw-{i:06d}" for i in range(instances)]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(_INSERT_INSTANCE.format(p="?"), [(iid, "ticket", 1, "open", "running", dumps(start_data(i)), 1,
                                                       CLERK.id, created, created) for i, iid in enumerate(ids)])
    conn.execute("COMMIT")
    sample = warm_then_time(lambda some: _raw_sqlite_moves(conn, some), moves_for(ids))
    conn.close()
    return sample


def _raw_sqlite_moves(conn: sqlite3.Connection, moves: Sequence[Move]) -> None:
    select, update, update_data, insert = (s.format(p="?") for s in (_SELECT, _UPDATE, _UPDATE_DATA,
                                                                      _INSERT_HISTORY))
    roles = {a.id: dumps(sorted(a.roles)) for a in (CLERK, ENGINEER, MANAGER)}
    for iid, event, payload, actor in moves:
        now = sqlite_time(dt.datetime.now(dt.UTC))
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(select, (iid,)).fetchone()
        state, revision = row[3], row[6]
        data = json.loads(row[5])
        data.update(payload)
        target, status = _transition(state, event)
        if target == state:
            changed = conn.execute(update_data, (dumps(data), revision + 1, now, iid, revision)).rowcount
        else:
            changed = conn.execute(update, (target, status, dumps(data), revision + 1, now, iid, revision)).rowcount
        if changed != 1:
            conn.execute("ROLLBACK")
            raise RuntimeError(f"lost the optimistic lock on {iid}")
        conn.execute(insert, (iid, revision + 1, event, state, target, actor.id, roles[actor.id], dumps(payload),
                              now, "fire", "{}"))
        conn.execute("COMMIT")


# --- raw psycopg (one worker's loop; see benchmarks/pg.py) ----------------------------------------

def raw_pg_setup(conn: Any) -> None:
    with conn.transaction():
        for statement in RAW_SCHEMA.format(ts="TIMESTAMPTZ").split(";"):
            if statement.strip():
                conn.execute(statement)


def raw_pg_seed(conn: Any, ids: Sequence[str]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_INSERT_INSTANCE.format(p="%s"), [(iid, "ticket", 1, "open", "running", dumps(start_data(i)),
                                                           1, CLERK.id, T0, T0) for i, iid in enumerate(ids)])


def raw_pg_moves(conn: Any, moves: Sequence[Move]) -> None:
    select, update, update_data, insert = (s.format(p="%s") for s in (_SELECT, _UPDATE, _UPDATE_DATA,
                                                                       _INSERT_HISTORY))
    roles = {a.id: dumps(sorted(a.roles)) for a in (CLERK, ENGINEER, MANAGER)}
    with conn.cursor() as cur:
        for iid, event, payload, actor in moves:
            now = dt.datetime.now(dt.UTC)
            with conn.transaction():
                cur.execute(select, (iid,))
                row = cur.fetchone()
                state, revision = row[3], row[6]
                data = json.loads(row[5])
                data.update(payload)
                target, status = _transition(state, event)
                if target == state:
                    cur.execute(update_data, (dumps(data), revision + 1, now, iid, revision))
                else:
                    cur.execute(update, (target, status, dumps(data), revision + 1, now, iid, revision))
                if cur.rowcount != 1:
                    raise RuntimeError(f"lost the optimistic lock on {iid}")
                cur.execute(insert, (iid, revision + 1, event, state, target, actor.id, roles[actor.id],
                                     dumps(payload), now, "fire", "{}"))
