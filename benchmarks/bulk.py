"""Big stores, built fast: instance and history rows inserted with SQL straight into the engine's tables.

Starting a million instances through `Engine.start` would take an hour; the rows below are what a start
writes (tables.py columns, `UTCDateTime` text on SQLite, revision 1 and its `start` history row), in one
transaction. Ids are a fixed bijection of the row number, so they look random to the B-trees (as uuid ids
do) and a child process can pick running instances without reading them back. The state mix is that of a
store that has run for a while: 90% closed, 10% running.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import CLERK, T0, sqlite_connect

REVIEW_SHARE = 0.01
_GOLDEN = 0x9E3779B97F4A7C15  # odd, so i ↦ i·k mod 2⁴⁸ is a bijection: no two rows share an id


def instance_id(i: int) -> str:
    return f"{(i * _GOLDEN) % (1 << 48):012x}"


def state_of(i: int) -> tuple[str, str]:
    """(state, status) of row i: 1% review, 4% open, 5% assigned, 90% closed."""
    r = i % 100
    if r == 0:
        return "review", "running"
    if r < 5:
        return "open", "running"
    if r < 10:
        return "assigned", "running"
    return "closed", "completed"


def running_index(rng: random.Random, size: int) -> int:
    """A random row in `open` or `assigned` (where the ticket's `note` self-loop is allowed)."""
    while True:
        i = rng.randrange(max(1, size // 100)) * 100 + rng.randint(1, 9)
        if i < size:
            return i


def _data_tails() -> dict[str, str]:
    """Per state, the JSON of the instance data after the customer name (one dumps per state, not per row)."""
    tails = {}
    for state in ("review", "open", "assigned", "closed"):
        data: dict[str, Any] = {"amount": "2000", "priority": "low"}
        if state != "open":
            data["engineer"] = "e1"
        if state == "closed":
            data.update(approved=True, closed_at="2026-03-01T10:00:00+08:00", note="stamped by m1")
        tails[state] = json.dumps(data, separators=(",", ":"))[1:]
    return tails


def _rows(size: int, version: int) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    roles = json.dumps(sorted(CLERK.roles))
    tails = _data_tails()
    first = T0.astimezone(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=size)
    second = dt.timedelta(seconds=1)
    for i in sorted(range(size), key=instance_id):  # in key order: B-tree appends instead of page splits
        state, status = state_of(i)
        created = (first + i * second).isoformat(sep=" ", timespec="microseconds")  # as sqlite_time() writes
        text = f'{{"customer":"C-{i}",{tails[state]}'
        iid = instance_id(i)
        yield ((iid, "ticket", version, state, status, text, 1, None, None, CLERK.id, created, created),
               (iid, 1, "start", None, "open", CLERK.id, roles, text, created, "start", "{}"))


def build_sqlite_store(path: Path, size: int, version: int, chunk: int = 50_000) -> None:
    """Insert `size` ticket instances (and their start history) into an engine database at `path`."""
    conn = sqlite_connect(path, "OFF")  # this connection only: the load is not what is measured
    conn.execute("PRAGMA cache_size=-262144")
    # Secondary indexes are dropped and rebuilt after the load (a sorted build beats 1M random inserts);
    # their definitions are read back from the schema Alembic made, so they stay exactly the engine's.
    indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND "
                           "tbl_name IN ('fe_instances', 'fe_history')").fetchall()
    conn.execute("BEGIN IMMEDIATE")
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    rows = _rows(size, version)
    while True:
        batch = [r for _, r in zip(range(chunk), rows, strict=False)]
        if not batch:
            break
        conn.executemany("INSERT INTO fe_instances (id, process_id, version, state, status, data, revision, "
                         "parent_id, origin_id, started_by, created_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [r[0] for r in batch])
        conn.executemany("INSERT INTO fe_history (instance_id, seq, event, from_state, to_state, actor_id, "
                         "actor_roles, payload, at, kind, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [r[1] for r in batch])
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
