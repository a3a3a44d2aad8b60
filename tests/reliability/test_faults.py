"""Faults from outside the engine: failing hooks, an unreachable, read-only, locked or full database.

Each must surface as the documented error (`HookError`, `StoreError` with one clear line) and leave the
instance exactly as it was: same state, revision, data, history, timers and outbox.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flowengine import Actor, Engine, FlowEngineError, HookError, HookRegistry, StoreError, UnknownInstance
from flowengine.definition.loader import load_process_text
from flowengine.hooks import ActionContext, GuardContext
from flowengine.store.database import make_engine
from flowengine.store.tables import counters
from tests.conftest import FIXTURES, fixture_hooks
from tests.reliability._support import (
    CLERK,
    ENGINEER,
    MANAGER,
    consistency_problems,
    impatient_db,
    open_engine,
    report,
)

RISKY = """\
format: 1
process: risky
title: {zh: 风险, en: Risky}
initial: open
start_roles: [clerk]
on_start: [{run: maybe_explode}]
data:
  explode_on_start: {type: bool, start: optional}
  where: {type: string}
states:
  open: {label: {zh: 开, en: Open}}
  done: {label: {zh: 完, en: Done}, kind: final}
events:
  go: {label: {zh: 走, en: Go}}
  branch: {label: {zh: 分, en: Branch}}
  check: {label: {zh: 查, en: Check}}
transitions:
  - {from: open, event: go, to: done, roles: [clerk],
     actions: [{notify: clerk}, {create_form: sheet}, {set: {where: here}}, {run: explode}]}
  - {from: open, event: branch, to: done, if: exploding_condition, roles: [clerk]}
  - {from: open, event: branch, to: done, roles: [clerk]}
  - {from: open, event: check, to: done, guard: exploding_guard, roles: [clerk]}
forms:
  sheet: {label: {zh: 单, en: Sheet}, prefix: SH}
roles:
  clerk: {zh: 文员, en: Clerk}
"""


def risky_hooks() -> HookRegistry:
    hooks = HookRegistry("risky")

    @hooks.guard
    def exploding_guard(ctx: GuardContext) -> bool:
        raise RuntimeError("guard blew up")

    @hooks.condition
    def exploding_condition(ctx: GuardContext) -> bool:
        raise ValueError("condition blew up")

    @hooks.action
    def explode(ctx: ActionContext) -> None:
        ctx.outbox.add("side_effect", what="must never leave")
        raise RuntimeError("action blew up")

    @hooks.action
    def maybe_explode(ctx: ActionContext) -> None:
        if ctx.data.get("explode_on_start"):
            raise KeyError("start blew up")

    return hooks


def snapshot(engine: Engine, iid: str) -> tuple[Any, ...]:
    """Everything a failed fire must leave as it was."""
    inst = engine.get(iid)
    return (inst.state, inst.status, inst.revision, dict(inst.data), inst.timers, tuple(engine.history(iid)),
            tuple(m["delivery_id"] for m in engine.outbox(iid)))


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.strip() == text and 0 < len(text) < 400, repr(text)
    return text


# -- hooks ----------------------------------------------------------------------------------------

def test_raising_guard_condition_or_action_is_a_hook_error_and_changes_nothing(db_url: str) -> None:
    hooks = risky_hooks()
    definition = load_process_text(RISKY, Path("risky.yaml"), hooks=hooks.names())
    engine = Engine(db_url, processes={"risky": definition}, hooks=hooks)
    iid = engine.start("risky", actor=CLERK).id
    before = snapshot(engine, iid)
    for event, hook, cause in (("go", "explode", RuntimeError), ("branch", "exploding_condition", ValueError),
                               ("check", "exploding_guard", RuntimeError)):
        with pytest.raises(HookError) as info:
            engine.fire(iid, event, actor=CLERK)
        assert info.value.hook == hook and isinstance(info.value.__cause__, cause)
        assert hook in one_line(info.value) and iid in str(info.value)
        assert snapshot(engine, iid) == before, f"{event} changed the instance"
    with engine.db.connect() as conn:  # the form number drawn before `explode` raised was rolled back
        assert conn.execute(sa.select(counters.c.value).where(counters.c.prefix == "SH")).first() is None
    with pytest.raises(HookError, match="start blew up"):
        engine.start("risky", data={"explode_on_start": True}, actor=CLERK, instance_id="R-1")
    with pytest.raises(UnknownInstance):
        engine.get("R-1")
    assert engine.start("risky", actor=CLERK, instance_id="R-1").revision == 1  # no half-started row in the way
    engine.dispose()


def test_raising_fixture_hooks_leave_ticket_and_its_timers_unchanged(db_url: str) -> None:
    boom = HookRegistry("fixture")

    @boom.guard
    def has_engineer(ctx: GuardContext) -> bool:
        return 1 / 0 > 0

    @boom.action
    def stamp(ctx: ActionContext) -> None:
        raise OSError("disk on fire")

    engine = open_engine(db_url)
    iid = engine.start("ticket", data={"customer": "A", "amount": "2000", "due_at": "2030-01-01T00:00"},
                       actor=CLERK).id
    engine.fire(iid, "assign", data={"engineer": "e1"}, actor=CLERK)
    engine.fire(iid, "resolve", actor=ENGINEER)
    engine.dispose()
    for registry, hook in ((boom, "has_engineer"), (HookRegistry.merge(_passing_guard(), _only(boom, "stamp")),
                                                   "stamp")):
        faulty = Engine(db_url, processes=FIXTURES, hooks=registry)
        before = snapshot(faulty, iid)
        assert [t.timer for t in faulty.get(iid).timers] == ["deadline"]
        with pytest.raises(HookError) as info:
            faulty.fire(iid, "approve", actor=MANAGER)  # to `closed`: would cancel the deadline
        assert info.value.hook == hook
        assert snapshot(faulty, iid) == before
        faulty.dispose()


def _passing_guard() -> HookRegistry:
    hooks = HookRegistry("pass")

    @hooks.guard
    def has_engineer(ctx: GuardContext) -> bool:
        return True

    return hooks


def _only(registry: HookRegistry, action: str) -> HookRegistry:
    hooks = HookRegistry("only")
    hooks.action(action)(registry.action_fn(action))
    return hooks


# -- identifiers that are not text ----------------------------------------------------------------

NOT_UTF8 = "x\udcff"  # what Python makes of the byte 0xFF in argv, a file name or a lax decoder


@pytest.mark.parametrize("where", ["actor id", "actor role", "new instance id", "instance id"])
def test_identifiers_that_are_not_valid_unicode_are_refused_cleanly(db_url: str, where: str) -> None:
    """Caller-supplied ids go into the database as text; one that can't be encoded must not surface as a
    raw UnicodeEncodeError from the driver."""
    engine = open_engine(db_url)
    iid = engine.start("ticket", data={"customer": "A"}, actor=CLERK).id
    before = snapshot(engine, iid)
    note = {"note": "n"}
    with pytest.raises(FlowEngineError):
        if where == "actor id":
            engine.fire(iid, "note", data=note, actor=Actor(NOT_UTF8, {"clerk"}))
        elif where == "actor role":
            engine.fire(iid, "note", data=note, actor=Actor("c1", {"clerk", NOT_UTF8}))
        elif where == "new instance id":
            engine.start("ticket", data={"customer": "A"}, actor=CLERK, instance_id=NOT_UTF8)
        else:
            engine.fire(NOT_UTF8, "note", data=note, actor=CLERK)
    assert snapshot(engine, iid) == before
    engine.dispose()


# -- unreachable ----------------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_postgresql_unreachable_is_one_line_store_error() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    began = time.monotonic()
    with pytest.raises(StoreError) as info:
        open_engine(url)
    assert "database error while" in one_line(info.value)
    lazy = Engine(url, processes=None, migrate=False)  # nothing touches the database yet
    for call in (lambda: lazy.get("x"), lambda: lazy.fire("x", "note", data={"note": "n"}, actor=CLERK),
                 lambda: lazy.list(), lambda: lazy.tick()):
        with pytest.raises(StoreError) as info:
            call()
        one_line(info.value)
    took = time.monotonic() - began
    report("faults/unreachable-postgresql", url, error=str(info.value), seconds=round(took, 2))
    assert took < 10


def test_sqlite_in_a_missing_directory_is_one_line_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        open_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'flow.db'}")
    assert "unable to open database file" in one_line(info.value)


@pytest.fixture
def stored_ticket(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    path = tmp_path / "db" / "flow.db"
    path.parent.mkdir()
    engine = open_engine(f"sqlite:///{path}")
    iid = engine.start("ticket", data={"customer": "A"}, actor=CLERK).id
    engine.fire(iid, "note", data={"note": "before"}, actor=CLERK)
    engine.dispose()
    yield path, iid
    for p in (path.parent, *path.parent.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)


def _read_only(path: Path, how: str) -> str:
    if how == "uri":
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files anyway; the uri case covers a read-only database")
    for p in path.parent.iterdir():
        p.chmod(0o444)
    path.parent.chmod(0o555)
    return f"sqlite:///{path}"


@pytest.mark.parametrize("how", ["uri", "chmod"])
def test_sqlite_read_only_is_store_error_and_writes_nothing(stored_ticket: tuple[Path, str], how: str) -> None:
    path, iid = stored_ticket
    url = _read_only(path, how)
    with pytest.raises(StoreError) as info:
        engine = Engine(url, processes=FIXTURES, hooks=fixture_hooks(), migrate=False)
        engine.fire(iid, "note", data={"note": "refused"}, actor=CLERK)
    assert "readonly" in one_line(info.value) or "read-only" in str(info.value)
    for p in (path.parent, *path.parent.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    engine = open_engine(f"sqlite:///{path}")
    assert [h.payload.get("note") for h in engine.history(iid)] == [None, "before"]
    assert consistency_problems(engine, iid) == []
    engine.dispose()


# -- locked ---------------------------------------------------------------------------------------

def test_locked_database_is_store_error_and_the_instance_is_unchanged(db_url: str) -> None:
    engine = open_engine(db_url)
    iid = engine.start("ticket", data={"customer": "A"}, actor=CLERK).id
    before = snapshot(engine, iid)
    impatient = open_engine(impatient_db(db_url, 200))
    holder = _hold_lock(db_url, iid)
    try:
        began = time.monotonic()
        with pytest.raises(StoreError) as info:
            impatient.fire(iid, "note", data={"note": "blocked"}, actor=CLERK)
        took = time.monotonic() - began
        text = one_line(info.value)
        assert "locked" in text or "lock timeout" in text, text
        assert took < 2, f"waited {took:.1f}s for a 0.2 s lock timeout"
    finally:
        holder()
    report("faults/locked", db_url, error=text, seconds=round(took, 2))
    assert snapshot(engine, iid) == before
    assert impatient.fire(iid, "note", data={"note": "after"}, actor=CLERK).revision == 2
    impatient.dispose()
    engine.dispose()


def _hold_lock(url: str, iid: str) -> Any:
    """Another client takes the lock a fire needs; returns the function that lets it go."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")

        def release_sqlite() -> None:
            conn.execute("ROLLBACK")
            conn.close()
        return release_sqlite
    other = sa.create_engine(url)
    pg = other.connect()
    tx = pg.begin()
    pg.execute(sa.text("SELECT id FROM fe_instances WHERE id = :id FOR UPDATE"), {"id": iid})

    def release_pg() -> None:
        tx.rollback()
        pg.close()
        other.dispose()
    return release_pg


# -- full -----------------------------------------------------------------------------------------

def test_full_sqlite_database_is_store_error_and_the_instance_stays_consistent(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    iid = engine.start("ticket", data={"customer": "A"}, actor=CLERK).id
    with engine.db.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    engine.dispose()
    db = make_engine(sqlite_url)

    @sa.event.listens_for(db, "connect")
    def _small_disk(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={pages + 6}")

    full = open_engine(db)
    landed: list[str] = []
    error: BaseException | None = None
    for n in range(300):
        note = f"{n:04d}" + "x" * 3000
        try:
            full.fire(iid, "note", data={"note": note}, actor=Actor("c1", {"clerk"}))
        except Exception as exc:
            error = exc
            break
        landed.append(note)
    full.dispose()
    report("faults/disk-full", sqlite_url, fires_before_full=len(landed),
           error=f"{type(error).__module__}.{type(error).__name__}: {error}")
    assert isinstance(error, StoreError), f"got {type(error).__module__}.{type(error).__name__}: {error}"
    assert "full" in one_line(error)
    engine = open_engine(sqlite_url)
    assert consistency_problems(engine, iid) == []
    assert [h.payload["note"] for h in engine.history(iid)[1:]] == landed
    assert engine.fire(iid, "note", data={"note": "room again"}, actor=CLERK).revision == len(landed) + 2
    engine.dispose()
