"""Firing due timers (`tick`), delivering the outbox, and the long-running worker.

A tick lists the timers due when it begins, then fires them one at a time in due order, each in its
own transaction that claims the timer row (FOR UPDATE SKIP LOCKED on PostgreSQL, the write lock on
SQLite), so several workers never fire a timer twice. Timers scheduled during the tick wait for the
next one (§1.1: one tick never chains).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from flowengine.durations import parse_duration
from flowengine.errors import FlowEngineError
from flowengine.results import SYSTEM
from flowengine.runtime import Snapshot, decide_escalation
from flowengine.store import hotpath as hp
from flowengine.store import repository as repo
from flowengine.store.tx import Tx

if TYPE_CHECKING:
    from flowengine.engine import Engine

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class TimerFiring:
    timer_row: int
    instance_id: str
    timer: str
    due_at: dt.datetime
    outcome: str  # fired, escalated, skipped, failed
    event: str | None = None
    state: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance_id, "timer": self.timer, "due_at": self.due_at.isoformat(),
                "outcome": self.outcome, "event": self.event, "state": self.state, "error": self.error}


@dataclass(frozen=True, slots=True)
class TickReport:
    now: dt.datetime
    firings: tuple[TimerFiring, ...]

    @property
    def fired(self) -> tuple[TimerFiring, ...]:
        return tuple(f for f in self.firings if f.outcome in ("fired", "escalated"))


BATCH = 100


def tick(engine: Engine, now: dt.datetime, *, limit: int = 100_000, batch: int = BATCH) -> TickReport:
    ids = engine._read(lambda c: repo.due_timer_ids(c, now, limit), "listing due timers")
    firings: list[TimerFiring] = []
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        try:
            done = engine._write(functools.partial(_fire_batch, engine, timer_rows=chunk, now=now), "firing timers")
        except _BatchFailed:
            done = engine._write(functools.partial(_fire_isolated, engine, timer_rows=chunk, now=now),
                                 "firing timers")
        firings.extend(done)
    return TickReport(now, tuple(firings))


class _BatchFailed(Exception):
    """A timer of the batch failed: the batch rolls back and runs again, each timer in a savepoint."""


def _fire_batch(engine: Engine, tx: Tx, *, timer_rows: list[int], now: dt.datetime) -> list[TimerFiring]:
    """Fire timers one after another in one transaction, claimed with one statement.

    One commit per batch instead of per timer: the commit is most of a timer's cost. A crash loses the
    whole uncommitted batch, which the next tick fires again: nothing is fired twice or lost. Failures
    are rare, so no savepoint is paid for up front: the first failing timer rolls the batch back and
    `_fire_isolated` runs it again with one savepoint per timer.
    """
    tx.cancelled, tx.touched = set(), set()
    claimed = hp.claim_timers(tx, timer_rows)
    snaps = hp.get_snapshots(tx, sorted({c[0] for c in claimed.values()}))
    done = []
    finished: list[tuple[int, str, str | None]] = []
    for timer_row in timer_rows:
        timer = claimed.get(timer_row)
        if timer is None or timer_row in tx.cancelled:
            continue  # another worker has it, or an earlier timer of this batch left its scope
        iid = timer[0]
        snap = snaps.get(iid) if iid not in tx.touched else hp.get_snapshot(tx, iid)
        try:
            result = _fire_one(engine, tx, timer_row=timer_row, claimed=timer, now=now, snap=snap,
                               finish=lambda row, status, text: finished.append((row, status, text)))
        except FlowEngineError as exc:
            raise _BatchFailed() from exc
        done.append(result)
    # The timers' own rows last, in one statement. A row a later step of the batch cancelled (it was
    # still pending here) keeps its outcome, except an escalation whose scope was then left: closed.
    hp.finish_timers(tx, [(row, "closed" if status == "escalated" and row in tx.cancelled else status, text)
                          for row, status, text in finished], now)
    return done


def _fire_isolated(engine: Engine, tx: Tx, *, timer_rows: list[int], now: dt.datetime) -> list[TimerFiring]:
    """The batch again, each timer in a savepoint, so a failure undoes only itself and is recorded."""
    done = []
    for timer_row in timer_rows:
        hp.savepoint(tx, "fe_timer")
        try:
            claimed = hp.claim_timer(tx, timer_row)
            result = None if claimed is None else _fire_one(
                engine, tx, timer_row=timer_row, claimed=claimed, now=now, snap=hp.get_snapshot(tx, claimed[0]),
                finish=lambda row, status, text: hp.finish_timer(tx, row, status, now, text))
        except FlowEngineError as exc:
            hp.savepoint(tx, "fe_timer", "ROLLBACK TO SAVEPOINT")
            hp.savepoint(tx, "fe_timer", "RELEASE SAVEPOINT")
            result = _fail(tx, timer_row=timer_row, now=now, exc=exc)
        else:
            hp.savepoint(tx, "fe_timer", "RELEASE SAVEPOINT")
        if result is not None:
            done.append(result)
    return done


def _fire_one(engine: Engine, tx: Tx, *, timer_row: int, claimed: tuple[str, str, dt.datetime],
              now: dt.datetime, snap: Snapshot | None, finish: Callable[[int, str, str | None], None]) -> TimerFiring:
    """Fire one claimed timer; `finish(row, status, result)` records the timer's own outcome."""
    instance_id, name, due_at = claimed
    if snap is None or snap.status != "running":
        finish(timer_row, "cancelled", "instance not running")
        return TimerFiring(timer_row, instance_id, name, due_at, "skipped")
    compiled = engine.compiled(snap.process, snap.version)
    timer = compiled.timer(name)
    if snap.state not in timer.scope:
        finish(timer_row, "cancelled", "scope left")
        return TimerFiring(timer_row, instance_id, name, due_at, "skipped")
    if timer.fire is not None:
        step = engine._fire_in(tx, instance_id, timer.fire, dict(timer.payload), SYSTEM, now, kind="timer",
                               details={"timer": name, "due_at": due_at.isoformat()}, snap=snap)
        finish(timer_row, "fired", hp.dumps({"event": timer.fire, "seq": step.seq}))
        return TimerFiring(timer_row, instance_id, name, due_at, "fired", timer.fire, step.target)
    decision = decide_escalation(compiled, snap, name, SYSTEM, now, engine._services(tx))
    step = engine._apply(tx, compiled, snap, decision, SYSTEM, now, "escalation",
                         {"timer": name, "due_at": due_at.isoformat()})
    finish(timer_row, "escalated", hp.dumps({"escalation": name, "seq": step.seq}))
    if timer.repeat is not None:
        next_due = parse_duration(timer.repeat).apply(due_at, engine.calendar)
        from flowengine.runtime import TimerPlan

        hp.schedule_timers(tx, instance_id, [TimerPlan(name, max(next_due, now))], now)
    return TimerFiring(timer_row, instance_id, name, due_at, "escalated", f"!{name}", snap.state)


def _fail(tx: Tx, *, timer_row: int, now: dt.datetime, exc: FlowEngineError) -> TimerFiring | None:
    claimed = hp.claim_timer(tx, timer_row)
    if claimed is None:
        return None
    hp.finish_timer(tx, timer_row, "failed", now, str(exc))
    log.warning("timer %s on %s failed: %s", claimed[1], claimed[0], exc)
    return TimerFiring(timer_row, claimed[0], claimed[1], claimed[2], "failed", error=str(exc))


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One side effect to deliver; `delivery_id` lets receivers drop duplicates (delivery is at least once)."""

    id: int
    delivery_id: str
    instance_id: str
    seq: int
    topic: str
    payload: dict[str, Any]
    created_at: dt.datetime


def dispatch_outbox(engine: Engine, deliver: Callable[[OutboxMessage], None], *, limit: int = 100) -> int:
    """Deliver pending messages at least once; each is marked delivered only after `deliver` returned.

    A crash between delivery and marking means the message is delivered again, with the same delivery_id.
    PostgreSQL: delivery happens inside the transaction that holds the rows FOR UPDATE SKIP LOCKED, so
    two dispatchers never take the same message and fires (which never lock outbox rows) go on.
    SQLite: a transaction would stop every writer while a receiver runs, so delivery happens outside
    one, and dispatchers take turns on an OS file lock beside the database (released if one crashes).
    """
    if engine.db.dialect.name == "postgresql":
        return engine._write_core(functools.partial(_deliver_locked, engine=engine, deliver=deliver, limit=limit),
                             "delivering the outbox")
    with _dispatch_lock(engine) as held:
        if not held:
            return 0  # another dispatcher is delivering now
        rows = engine._read(lambda conn: repo.pending_outbox(conn, limit), "reading the outbox")
        count = 0
        for row in rows:
            try:
                deliver(_message(row))
            except Exception as exc:  # a failing receiver must not block the others
                error = f"{type(exc).__name__}: {exc}"
                engine._write_core(functools.partial(_mark_failed, message_id=row.id, error=error),
                                   "recording a failed delivery")
                continue
            engine._write_core(functools.partial(_mark_delivered, message_id=row.id, now=engine.clock.now()),
                               "marking a message delivered")
            count += 1
        return count


def _message(row: Any) -> OutboxMessage:
    return OutboxMessage(row.id, row.delivery_id, row.instance_id, row.seq, row.topic, json.loads(row.payload),
                         row.created_at)


def _deliver_locked(conn: Connection, *, engine: Engine, deliver: Callable[[OutboxMessage], None],
                    limit: int) -> int:
    count = 0
    for row in repo.pending_outbox(conn, limit):
        try:
            deliver(_message(row))
        except Exception as exc:  # a failing receiver must not block the others
            repo.mark_failed(conn, row.id, f"{type(exc).__name__}: {exc}")
            continue
        repo.mark_delivered(conn, row.id, engine.clock.now())
        count += 1
    return count


@contextlib.contextmanager
def _dispatch_lock(engine: Engine) -> Iterator[bool]:
    database = engine.db.url.database
    if not database or database == ":memory:":
        yield True  # one process owns an in-memory database
        return
    with open(f"{database}.outbox-lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mark_failed(conn: Connection, *, message_id: int, error: str) -> None:
    repo.mark_failed(conn, message_id, error)


def _mark_delivered(conn: Connection, *, message_id: int, now: dt.datetime) -> None:
    repo.mark_delivered(conn, message_id, now)


class Worker:
    """Ticks and delivers until stopped (SIGTERM/SIGINT when `install_signals`), sleeping `poll` seconds."""

    def __init__(self, engine: Engine, *, poll: float = 1.0, deliver: Callable[[OutboxMessage], None] | None = None,
                 on_tick: Callable[[TickReport], None] | None = None) -> None:
        self.engine, self.poll, self.deliver, self.on_tick = engine, poll, deliver, on_tick
        self.stopping = threading.Event()

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def run(self, *, install_signals: bool = True, max_rounds: int | None = None) -> int:
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        rounds = 0
        fired = 0
        while not self.stopping.is_set():
            report = tick(self.engine, self.engine.clock.now())
            fired += len(report.fired)
            if self.on_tick is not None and report.firings:
                self.on_tick(report)
            if self.deliver is not None:
                dispatch_outbox(self.engine, self.deliver)
            rounds += 1
            if max_rounds is not None and rounds >= max_rounds:
                break
            self.stopping.wait(self.poll)
        return fired
