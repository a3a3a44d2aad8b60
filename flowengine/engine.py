"""`Engine`: the facade. Loads definitions, pins versions, and runs every advance as one transaction.

A fire: read the instance, check revision and idempotency key, `decide` (pure), then write the
instance with the optimistic lock, history, timers, outbox, started children and hand-offs, and a
finished child's outcome on its parent, all in the same transaction. Side effects leave through the
outbox after commit.
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy import Engine as SAEngine

from flowengine.calendar import WorkingCalendar
from flowengine.clock import Clock, SystemClock
from flowengine.compile import CANCEL_EVENT, CANCELLED_STATE, CompiledProcess, compile_process
from flowengine.definition.loader import Definition, definition_from_json, load_directory
from flowengine.errors import (
    ConcurrencyConflict,
    DataValidationError,
    FlowEngineError,
    InstanceExists,
    UnknownInstance,
    UnknownProcess,
)
from flowengine.hooks import HookRegistry
from flowengine.migrate import MigrationReport, migrate
from flowengine.results import SYSTEM, Actor, HistoryEntry, Instance, InstanceView, Status, Step
from flowengine.runtime import Decision, Snapshot, decide, decide_start
from flowengine.store import hotpath as hp
from flowengine.store import repository as repo
from flowengine.store.database import as_store_error, make_engine, store_errors, upgrade
from flowengine.store.tx import Transactions, Tx
from flowengine.timers import OutboxMessage, TickReport, dispatch_outbox, tick

T = TypeVar("T")
ANONYMOUS = Actor("anonymous")


class _Services:
    """What the pure runtime needs from outside, bound to the current transaction."""

    __slots__ = ("calendar", "instances", "tx")

    def __init__(self, tx: Tx, calendar: WorkingCalendar) -> None:
        self.tx, self.calendar = tx, calendar
        self.instances = self

    def next_number(self, prefix: str, year: int, *, gap_free: bool) -> int:
        # One counter row per prefix and year, updated in the transaction: gap-free for every form.
        return hp.next_number(self.tx, prefix, year)

    def find(self, process: str, *, states: Sequence[str] | None = None,
             status: str | None = None) -> Sequence[InstanceView]:
        return hp.find_views(self.tx, process, states, status)


class Engine:
    """Run processes defined in YAML against a database.

        engine = Engine("sqlite:///flow.db", processes="processes/")
        ticket = engine.start("remote_service", data={...}, actor=Actor("li", {"service_clerk"}))
        step = engine.fire(ticket.id, "assign_engineer", data={"engineer": "eng-li"}, actor=clerk)
    """

    def __init__(self, db: str | SAEngine = "sqlite:///flowengine.db", *,
                 processes: str | Path | Mapping[str, Definition] | None = "processes",
                 hooks: HookRegistry | Sequence[HookRegistry] | None = None, clock: Clock | None = None,
                 calendar: WorkingCalendar | None = None, migrate: bool = True) -> None:
        if hooks is None:
            from flowengine.shipped import hooks as shipped

            hooks = shipped
        self.hooks = hooks if isinstance(hooks, HookRegistry) else HookRegistry.merge(*hooks)
        self.clock: Clock = clock or SystemClock()
        self.calendar = calendar or WorkingCalendar()
        self.db = db if isinstance(db, SAEngine) else make_engine(db)
        # Option-carrying copies of the engine share its pool; connections come out already tagged.
        self._writer = self.db.execution_options(flowengine_write=True)
        self._reader = self.db.execution_options(flowengine_write=False)
        self._transactions = Transactions(self.db)
        if migrate:
            upgrade(self.db)
        if processes is None:
            definitions: Mapping[str, Definition] = {}
        elif isinstance(processes, str | Path):
            definitions = load_directory(Path(processes), hooks=self.hooks.names())
        else:
            definitions = processes
        self._compiled: dict[tuple[str, int], CompiledProcess] = {}
        self._current: dict[str, CompiledProcess] = {}
        self._register(definitions)

    @classmethod
    def open(cls, db: str | SAEngine = "sqlite:///flowengine.db", **options: Any) -> Engine:
        """Same as the constructor; reads well at call sites: `Engine.open(url, processes=...)`."""
        return cls(db, **options)

    # -- definitions --------------------------------------------------------------------------
    def _register(self, definitions: Mapping[str, Definition]) -> None:
        now = self.clock.now()
        for pid, definition in sorted(definitions.items()):
            def register(conn: Connection, d: Definition = definition) -> int:
                version = repo.definition_version(conn, d.process_id, d.content_hash)
                if version is None:
                    version = repo.add_definition(conn, d.process_id, d.content_hash, d.source, d.canonical_json(),
                                                  now)
                return version
            version = self._retrying(register, "registering definitions")
            compiled = compile_process(definition, self.hooks, version)
            self._compiled[(pid, version)] = compiled
            self._current[pid] = compiled

    def _retrying(self, fn: Callable[[Connection], T], action: str) -> T:
        # Two engines registering the same new version race on the unique hash; the loser re-reads.
        from sqlalchemy.exc import IntegrityError

        for attempt in range(3):
            try:
                return self._write_core(fn, action)
            except FlowEngineError as exc:
                if attempt == 2 or not isinstance(exc.__cause__, IntegrityError):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def processes(self) -> Mapping[str, CompiledProcess]:
        """The current version of every loaded process (what new instances use)."""
        return dict(self._current)

    def compiled(self, process_id: str, version: int | None = None) -> CompiledProcess:
        if version is None:
            try:
                return self._current[process_id]
            except KeyError:
                raise UnknownProcess(process_id, list(self._current)) from None
        key = (process_id, version)
        if key not in self._compiled:
            found = self._read(lambda c: repo.load_definition(c, process_id, version), "loading a definition")
            if found is None:
                raise UnknownProcess(process_id, list(self._current), version)
            self._compiled[key] = compile_process(definition_from_json(found[0], found[1]), self.hooks, version)
        return self._compiled[key]

    # -- transactions -------------------------------------------------------------------------
    def _write(self, fn: Callable[[Tx], T], action: str) -> T:
        """The write path of fires, starts and ticks: one transaction at driver level (store/tx.py)."""
        try:
            return self._transactions.run(fn)
        except Exception as exc:
            error = as_store_error(exc, action)
            if error is None:
                raise
            raise error from exc

    def _write_core(self, fn: Callable[[Connection], T], action: str) -> T:
        """A write transaction on an SQLAlchemy connection, for the rare writes built with Core."""
        with store_errors(action), self._writer.connect() as conn, conn.begin():
            return fn(conn)

    def _read(self, fn: Callable[[Connection], T], action: str) -> T:
        with store_errors(action), self._reader.connect() as conn, conn.begin():
            return fn(conn)

    # -- start ----------------------------------------------------------------------------------
    def start(self, process_id: str, *, data: Mapping[str, Any] | None = None, actor: Actor | None = None,
              instance_id: str | None = None, now: dt.datetime | None = None) -> Instance:
        """Start an instance of the current version of `process_id`; `instance_id` names it (business key)."""
        compiled = self.compiled(process_id)
        when = now or self.clock.now()
        who = actor or ANONYMOUS
        _check_new(who, instance_id)
        snap = self._write(lambda tx: self._start_in(tx, compiled, dict(data or {}), who, when,
                                                        instance_id=instance_id), f"starting {process_id}")
        return self._instance(compiled, snap, when)

    def _start_in(self, tx: Tx, compiled: CompiledProcess, data: dict[str, Any], actor: Actor,
                  now: dt.datetime, *, instance_id: str | None = None, parent_id: str | None = None,
                  origin_id: str | None = None, system: bool = False) -> Snapshot:
        snap = Snapshot(instance_id or _new_id(), compiled.process_id, compiled.version, compiled.spec.initial,
                        "running", {}, 1, parent_id, actor.id, now)
        decision = decide_start(compiled, snap, data, actor, now, self._services(tx),
                                check_role=not system)
        snap = replace(snap, data=decision.data, status=decision.status)
        while not hp.insert_instance(tx, snap, now, origin_id):
            if instance_id is not None:
                raise InstanceExists(instance_id)
            snap = replace(snap, id=_new_id())
        started = self._spawn(tx, compiled, snap, decision, now)
        details = {k: v for k, v in (("parent", parent_id), ("origin", origin_id), ("started", started)) if v}
        hp.insert_history(tx, snap.id, 1, "start", None, snap.state, actor, decision.payload, now, "start", details)
        hp.schedule_timers(tx, snap.id, decision.schedule, now)
        hp.insert_outbox(tx, snap.id, 1, ((m.topic, m.payload) for m in decision.messages), now)
        return snap

    def _spawn(self, tx: Tx, compiled: CompiledProcess, snap: Snapshot, decision: Decision,
               now: dt.datetime) -> list[str]:
        """Start the call state's child and any hand-offs, as `system`, in this transaction."""
        started = []
        if decision.call is not None:
            child = self.compiled(decision.call.process)
            started.append(self._start_in(tx, child, decision.call.data, SYSTEM, now, parent_id=snap.id,
                                          system=True).id)
        for plan in decision.handoffs:
            other = self.compiled(plan.process)
            started.append(self._start_in(tx, other, plan.data, SYSTEM, now, origin_id=snap.id, system=True).id)
        return started

    # -- fire -----------------------------------------------------------------------------------
    def fire(self, instance_id: str, event: str, *, data: Mapping[str, Any] | None = None,
             actor: Actor | None = None, expected_revision: int | None = None,
             idempotency_key: str | None = None, now: dt.datetime | None = None) -> Step:
        """Fire `event` on an instance in one transaction; refusals raise and leave it unchanged."""
        when = now or self.clock.now()
        who = actor or ANONYMOUS
        _check_lookup(instance_id)
        _check_new(who)
        payload = dict(data or {})

        def run(tx: Tx) -> Step:
            return self._fire_in(tx, instance_id, event, payload, who, when, expected_revision=expected_revision,
                                 idempotency_key=idempotency_key)
        try:
            return self._write(run, f"firing {event} on {instance_id}")
        except ConcurrencyConflict:
            if idempotency_key is None:
                raise
            # A concurrent retry with the same key may have won: then its result is ours.
            replay = self._read(lambda c: self._replay(Tx.of(c), instance_id, idempotency_key), "reading a result")
            if replay is None:
                raise
            return replay

    def _replay(self, tx: Tx, instance_id: str, key: str) -> Step | None:
        seq = hp.idempotent_seq(tx, instance_id, key)
        if seq is None:
            return None
        entry = hp.history_entry(tx, instance_id, seq)
        snap = hp.get_snapshot(tx, instance_id)
        assert entry is not None and snap is not None
        compiled = self.compiled(snap.process, snap.version)
        return Step(instance_id, entry.event, entry.source or "", entry.target, seq, seq,
                    entry.details.get("transition"), (), self._instance(compiled, snap, entry.at),
                    tuple(entry.details.get("started", ())), replayed=True)

    def _fire_in(self, tx: Tx, instance_id: str, event: str, payload: dict[str, Any], actor: Actor,
                 now: dt.datetime, *, expected_revision: int | None = None, idempotency_key: str | None = None,
                 kind: str = "fire", details: Mapping[str, Any] | None = None,
                 snap: Snapshot | None = None) -> Step:
        """`snap`: the instance as already read in this transaction (a tick's batch read), else read here."""
        if idempotency_key is not None:
            replay = self._replay(tx, instance_id, idempotency_key)
            if replay is not None:
                return replay
        if snap is None:
            snap = hp.get_snapshot(tx, instance_id)
        if snap is None:
            raise UnknownInstance(instance_id)
        if expected_revision is not None and snap.revision != expected_revision:
            raise ConcurrencyConflict(instance_id, expected_revision, snap.revision)
        compiled = self.compiled(snap.process, snap.version)
        decision = decide(compiled, snap, event, payload, actor, now, self._services(tx))
        step = self._apply(tx, compiled, snap, decision, actor, now, kind, details or {})
        if idempotency_key is not None:
            hp.remember_key(tx, instance_id, idempotency_key, step.seq, now)
        return step

    def _apply(self, tx: Tx, compiled: CompiledProcess, snap: Snapshot, decision: Decision, actor: Actor,
               now: dt.datetime, kind: str, details: Mapping[str, Any]) -> Step:
        seq = snap.revision + 1
        new = Snapshot(snap.id, snap.process, snap.version, decision.target, decision.status, decision.data, seq,
                       snap.parent_id, snap.started_by, snap.created_at)
        if not hp.update_instance(tx, new, snap.revision, now, snap):
            raise ConcurrencyConflict(snap.id, snap.revision, hp.current_revision(tx, snap.id))
        started = self._spawn(tx, compiled, new, decision, now)
        row = decision.row
        info: dict[str, Any] = {**details}
        if row is not None and row.id:
            info["transition"] = row.id
        if decision.guards:
            info["guards"] = [{"name": g.name, "passed": g.passed} for g in decision.guards]
        if started:
            info["started"] = started
        hp.insert_history(tx, snap.id, seq, decision.event, decision.source, decision.target, actor,
                          decision.payload, now, kind, info)
        if decision.status != "running":
            if compiled.spec.timers:
                hp.cancel_timers(tx, snap.id, None, now)
        else:
            hp.cancel_timers(tx, snap.id, decision.cancel_timers, now)
            hp.schedule_timers(tx, snap.id, decision.schedule, now)
        if decision.messages:
            hp.insert_outbox(tx, snap.id, seq, ((m.topic, m.payload) for m in decision.messages), now)
        if decision.status == Status.CANCELLED.value:
            for child_id in hp.children(tx, snap.id, running_only=True):
                self._cascade_cancel(tx, child_id, decision.data.get("reason"), now)
        if decision.status != "running" and snap.parent_id is not None and kind != "cascade":
            # A child cancelled on its own reports it; one cancelled by its parent does not (§1.1).
            self._outcome(tx, snap.parent_id, new, now)
        return Step(snap.id, decision.event, decision.source or "", decision.target, seq, seq,
                    row.id if row else None, tuple(decision.guards), self._instance(compiled, new, now),
                    tuple(started))

    def _cascade_cancel(self, tx: Tx, instance_id: str, reason: Any, now: dt.datetime) -> None:
        """A cancelled parent cancels its running child as `system`, whatever the child's cancel row says."""
        snap = hp.get_snapshot(tx, instance_id)
        if snap is None or snap.status != "running":
            return
        compiled = self.compiled(snap.process, snap.version)
        data = {**snap.data, "reason": reason} if reason is not None else dict(snap.data)
        decision = Decision(CANCEL_EVENT, snap.state, CANCELLED_STATE, compiled.status_of(CANCELLED_STATE), data,
                            {"reason": reason} if reason is not None else {})
        self._apply(tx, compiled, snap, decision, SYSTEM, now, "cascade", {"parent": snap.parent_id})

    def _outcome(self, tx: Tx, parent_id: str, child: Snapshot, now: dt.datetime) -> None:
        """A finished child fires its parent's outcome event, in the same transaction as its last step."""
        parent = hp.get_snapshot(tx, parent_id)
        if parent is None or parent.status != "running":
            return
        compiled = self.compiled(parent.process, parent.version)
        call = compiled.spec.states[parent.state].call
        if call is None or call.process != child.process:
            return
        outcome = call.outcomes.get(child.state)
        if outcome is None:
            return
        payload = {p: child.data[c] for p, c in outcome.copy_.items() if child.data.get(c) is not None}
        self._fire_in(tx, parent_id, outcome.event, payload, SYSTEM, now, kind="outcome",
                      details={"child": child.id, "child_state": child.state})

    def _services(self, tx: Tx) -> _Services:
        return _Services(tx, self.calendar)

    # -- time -----------------------------------------------------------------------------------
    def tick(self, now: dt.datetime | None = None) -> TickReport:
        """Fire every timer due at `now` (default: the clock) exactly once, in due order."""
        return tick(self, now or self.clock.now())

    def migrate(self, process: str, *, from_version: int, to_version: int,
                mapping: Mapping[str, str] | None = None, dry_run: bool = False,
                actor: Actor = SYSTEM) -> MigrationReport:
        """Move running instances of `process` between versions (all or nothing); see flowengine.migrate."""
        return migrate(self, process, from_version, to_version, mapping or {}, dry_run=dry_run, actor=actor)

    def versions(self) -> builtins.list[tuple[str, int, str, dt.datetime]]:
        """Every stored (process, version, content hash, created_at)."""
        return self._read(repo.list_definitions, "listing versions")

    def dispatch_outbox(self, deliver: Callable[[OutboxMessage], None], *, limit: int = 100) -> int:
        """Deliver pending outbox messages at least once; returns how many were delivered."""
        return dispatch_outbox(self, deliver, limit=limit)

    # -- reads ----------------------------------------------------------------------------------
    def _instance(self, compiled: CompiledProcess, snap: Snapshot, updated_at: dt.datetime,
                  conn: Connection | None = None) -> Instance:
        timers: tuple[Any, ...] = ()
        kids: tuple[str, ...] = ()
        if conn is not None:
            kinds = {tid: (("fire", t.fire) if t.fire else ("escalate", None))
                     for tid, t in compiled.spec.timers.items()}
            timers = repo.timer_infos(conn, snap.id, kinds)
            kids = tuple(repo.children(conn, snap.id)) + tuple(repo.handoffs(conn, snap.id))
        return Instance(snap.id, snap.process, snap.version, snap.state, snap.status, snap.data, snap.revision,
                        snap.created_at or updated_at, updated_at, snap.parent_id,
                        compiled.allowed_events(snap.state) if snap.status == "running" else (), timers, kids)

    def get(self, instance_id: str) -> Instance:
        _check_lookup(instance_id)
        def read(conn: Connection) -> Instance:
            snap = repo.get_snapshot(conn, instance_id)
            if snap is None:
                raise UnknownInstance(instance_id)
            times = repo.instance_times(conn, instance_id)
            assert times is not None
            return self._instance(self.compiled(snap.process, snap.version), snap, times[1], conn)
        return self._read(read, f"reading {instance_id}")

    def list(self, *, process: str | None = None, state: str | None = None, status: str | None = None,
             overdue: bool = False, limit: int | None = None, offset: int = 0,
             now: dt.datetime | None = None) -> Sequence[Instance]:
        """Instances, oldest first; `overdue` keeps those with a pending timer already due."""
        when = (now or self.clock.now()) if overdue else None

        def read(conn: Connection) -> builtins.list[Instance]:
            rows = repo.list_rows(conn, process=process, state=state, status=status, overdue_at=when, limit=limit,
                                  offset=offset)
            return [self._instance(self.compiled(r[1], r[2]), hp.snapshot_of(r), r[10]) for r in rows]
        return self._read(read, "listing instances")

    def inbox(self, role: str) -> builtins.list[tuple[Instance, tuple[str, ...]]]:
        """Running instances where `role` can move the work on now (not just note or cancel), oldest first."""
        roles = frozenset({role})

        def read(conn: Connection) -> builtins.list[tuple[Instance, tuple[str, ...]]]:
            found = []
            for pid, version in repo.running_versions(conn):
                compiled = self.compiled(pid, version)
                work = {s: tuple(e for e in compiled.allowed_events(s, roles) if e != CANCEL_EVENT and not all(
                    r.self_loop for r in compiled.moves[s][e].rows)) for s in compiled.spec.states}
                states = [s for s, events in work.items() if events]
                if not states:
                    continue
                for r in repo.list_rows(conn, process=pid, version=version, status="running", states=states):
                    snap = hp.snapshot_of(r)
                    found.append((self._instance(compiled, snap, r[10], conn), work[snap.state]))
            return sorted(found, key=lambda item: (item[0].created_at, item[0].id))
        return self._read(read, f"reading the inbox of {role}")

    def children(self, instance_id: str) -> Sequence[Instance]:
        """Instances started by this one's call states (not hand-offs), oldest first."""
        def read(conn: Connection) -> builtins.list[Instance]:
            rows = repo.list_rows(conn, ids=repo.children(conn, instance_id))
            return [self._instance(self.compiled(r[1], r[2]), hp.snapshot_of(r), r[10]) for r in rows]
        return self._read(read, f"reading children of {instance_id}")

    def history(self, instance_id: str) -> Sequence[HistoryEntry]:
        _check_lookup(instance_id)
        def read(conn: Connection) -> builtins.list[HistoryEntry]:
            entries = repo.read_history(conn, instance_id)
            if not entries and repo.get_snapshot(conn, instance_id) is None:
                raise UnknownInstance(instance_id)
            return entries
        return self._read(read, f"reading history of {instance_id}")

    def available_events(self, instance_id: str, actor: Actor | None = None) -> tuple[str, ...]:
        """Events that can be fired now (by `actor`'s roles when given); guards are not pre-evaluated."""
        inst = self.get(instance_id)
        if inst.status != "running":
            return ()
        return self.compiled(inst.process, inst.version).allowed_events(inst.state,
                                                                        actor.roles if actor else None)

    def outbox(self, instance_id: str) -> builtins.list[dict[str, Any]]:
        """Messages written by an instance's steps, delivered or not (for inspection and tests)."""
        import json

        rows = self._read(lambda c: repo.outbox_for(c, instance_id), "reading the outbox")
        return [{"id": r.id, "delivery_id": r.delivery_id, "seq": r.seq, "topic": r.topic,
                 "payload": json.loads(r.payload), "delivered_at": r.delivered_at} for r in rows]

    def dispose(self) -> None:
        self._transactions.dispose()
        self.db.dispose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CHECKED: set[Actor] = set()


def _check_new(actor: Actor, instance_id: str | None = None) -> None:
    """Ids and roles are stored as text: refuse what is not valid Unicode (e.g. a non-UTF-8 argv byte)."""
    if instance_id is None and actor in _CHECKED:
        return  # an application fires as the same few actors over and over
    bad = [f"{what} {value!r} is not valid Unicode text"
           for what, value in (("actor id", actor.id), *(("role", r) for r in sorted(actor.roles)),
                               ("instance id", instance_id or ""))
           if not _utf8(value)]
    if bad:
        raise DataValidationError(bad, where="identifiers")
    if len(_CHECKED) > 4096:
        _CHECKED.clear()
    _CHECKED.add(actor)


def _check_lookup(instance_id: str) -> None:
    if not _utf8(instance_id):
        raise UnknownInstance(instance_id.encode("utf-8", "backslashreplace").decode("ascii", "replace"))


def _new_id() -> str:
    return uuid.uuid4().hex[:12]
