"""The engine facade on SQLite and PostgreSQL, against the fixture processes (tests/fixtures/processes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowengine import (
    Actor,
    ConcurrencyConflict,
    DataValidationError,
    Engine,
    EventNotAllowed,
    GuardRejected,
    HookError,
    HookRegistry,
    InstanceExists,
    ManualClock,
    RoleNotAllowed,
    UnknownInstance,
    UnknownProcess,
)
from flowengine.hooks import ActionContext
from tests.conftest import FIXTURES, PG_URL, _pg_schema_url, fixture_hooks

CLERK = Actor("c1", {"clerk"})
ENGINEER = Actor("e1", {"engineer"})
MANAGER = Actor("m1", {"manager"})
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # 09:00 in Shanghai


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(db_url: str, clock: ManualClock) -> Iterator[Engine]:
    e = Engine(db_url, processes=FIXTURES, hooks=fixture_hooks(), clock=clock)
    yield e
    e.dispose()


def start(engine: Engine, **data: object) -> str:
    return engine.start("ticket", data={"customer": "A", **data}, actor=CLERK).id


def test_start_fire_and_history(engine: Engine) -> None:
    tid = start(engine, amount="2000")
    step = engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK, expected_revision=1)
    assert (step.source, step.target, step.revision, step.transition) == ("open", "assigned", 2, "T1")
    step = engine.fire(tid, "resolve", actor=ENGINEER)
    assert step.target == "review"  # amount 2000 > big_amount 1000: the `if` branch
    assert [g.name for g in step.guards] == ["if big"]
    step = engine.fire(tid, "approve", actor=MANAGER)
    assert step.instance.status == "completed" and step.instance.data["note"] == "stamped by m1"
    history = engine.history(tid)
    assert [(h.seq, h.event, h.source, h.target) for h in history] == [
        (1, "start", None, "open"), (2, "assign", "open", "assigned"), (3, "resolve", "assigned", "review"),
        (4, "approve", "review", "closed")]
    assert history[1].actor == CLERK and history[1].payload == {"engineer": "e1"}
    assert engine.get(tid).revision == len(history)


def test_branch_falls_through_to_the_unconditional_row(engine: Engine) -> None:
    tid = start(engine, amount="10")
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    assert engine.fire(tid, "resolve", actor=ENGINEER).target == "closed"


def test_form_record_is_created_with_number(engine: Engine) -> None:
    tid = start(engine)
    data = engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK).instance.data
    assert data["forms"] == [{"form": "work_order", "number": "WO-2026-000001", "revision": 1,
                              "fields": {"engineer": "e1"}, "created_by": "c1", "role": "clerk",
                              "created_at": "2026-03-02T09:00:00+08:00"}]
    other = start(engine)
    assert engine.fire(other, "assign", data={"engineer": "e1"}, actor=CLERK).instance.data["forms"][0][
        "number"] == "WO-2026-000002"


def test_event_not_allowed_names_the_allowed_events(engine: Engine) -> None:
    tid = start(engine)
    with pytest.raises(EventNotAllowed) as info:
        engine.fire(tid, "approve", actor=MANAGER)
    assert info.value.allowed == ("assign", "note", "cancel")
    assert "it is in 'open'" in str(info.value)
    assert engine.get(tid).revision == 1


def test_role_refused_names_allowed_roles(engine: Engine) -> None:
    tid = start(engine)
    with pytest.raises(RoleNotAllowed) as info:
        engine.fire(tid, "assign", data={"engineer": "e1"}, actor=ENGINEER)
    assert info.value.allowed_roles == ("clerk",)


def test_guard_rejection_says_which_guard_and_leaves_instance_unchanged(engine: Engine) -> None:
    tid = start(engine, amount="9000")
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    engine.fire(tid, "resolve", actor=ENGINEER)
    before = engine.get(tid)
    with pytest.raises(GuardRejected) as info:
        engine.fire(tid, "approve", actor=MANAGER)
    assert info.value.guard == "amount ≤ 5000"
    after = engine.get(tid)
    assert (after.state, after.revision, after.data) == (before.state, before.revision, before.data)
    assert len(engine.history(tid)) == 3


def test_payload_is_validated(engine: Engine) -> None:
    tid = start(engine)
    with pytest.raises(DataValidationError, match="'engineer' is required"):
        engine.fire(tid, "assign", actor=CLERK)
    with pytest.raises(DataValidationError, match="'colour' is not a field"):
        engine.fire(tid, "assign", data={"engineer": "e1", "colour": "red"}, actor=CLERK)
    with pytest.raises(DataValidationError, match="expected text"):
        engine.fire(tid, "assign", data={"engineer": 7}, actor=CLERK)


def test_start_data_is_validated(engine: Engine) -> None:
    with pytest.raises(DataValidationError, match="'customer' is required"):
        engine.start("ticket", data={}, actor=CLERK)
    with pytest.raises(DataValidationError, match="not one of low, high"):
        engine.start("ticket", data={"customer": "A", "priority": "urgent"}, actor=CLERK)
    with pytest.raises(DataValidationError, match="'engineer' is not a field of the start data"):
        engine.start("ticket", data={"customer": "A", "engineer": "x"}, actor=CLERK)
    assert engine.list() == []


def test_start_role_is_checked(engine: Engine) -> None:
    with pytest.raises(RoleNotAllowed):
        engine.start("ticket", data={"customer": "A"}, actor=ENGINEER)


def test_business_key_and_unknown_ids(engine: Engine) -> None:
    engine.start("ticket", data={"customer": "A"}, actor=CLERK, instance_id="crm-4711")
    with pytest.raises(InstanceExists):
        engine.start("ticket", data={"customer": "B"}, actor=CLERK, instance_id="crm-4711")
    with pytest.raises(UnknownInstance):
        engine.fire("nope", "assign", actor=CLERK)
    with pytest.raises(UnknownProcess) as info:
        engine.start("tickets", actor=CLERK)
    assert "ticket" in info.value.known


def test_expected_revision_conflict_writes_nothing(engine: Engine) -> None:
    tid = start(engine)
    engine.fire(tid, "note", data={"note": "x"}, actor=CLERK)
    with pytest.raises(ConcurrencyConflict) as info:
        engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK, expected_revision=1)
    assert (info.value.expected_revision, info.value.actual_revision) == (1, 2)
    assert engine.get(tid).state == "open" and len(engine.history(tid)) == 2


def test_idempotency_key_returns_the_first_result(engine: Engine) -> None:
    tid = start(engine)
    first = engine.fire(tid, "note", data={"note": "once"}, actor=CLERK, idempotency_key="k1")
    again = engine.fire(tid, "note", data={"note": "once"}, actor=CLERK, idempotency_key="k1")
    assert again.replayed and not first.replayed
    assert (again.seq, again.event) == (first.seq, first.event)
    assert len(engine.history(tid)) == 2


def test_failing_action_rolls_everything_back(db_url: str, clock: ManualClock) -> None:
    hooks = fixture_hooks()
    broken = HookRegistry("broken")

    @broken.action("stamp")
    def stamp(ctx: ActionContext) -> None:
        ctx.set("note", "half-written")
        raise RuntimeError("printer on fire")

    registry = HookRegistry("mixed")
    registry.guard("has_engineer")(hooks.predicate("has_engineer"))
    registry.action("stamp")(stamp)
    engine = Engine(db_url, processes=FIXTURES, hooks=registry, clock=clock)
    tid = start(engine, amount="2000")
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    engine.fire(tid, "resolve", actor=ENGINEER)
    with pytest.raises(HookError, match="printer on fire") as info:
        engine.fire(tid, "approve", actor=MANAGER)
    assert isinstance(info.value.__cause__, RuntimeError)
    inst = engine.get(tid)
    assert (inst.state, inst.revision, inst.data.get("note")) == ("review", 3, None)
    assert engine.outbox(tid) == [m for m in engine.outbox(tid) if m["seq"] == 2]
    engine.dispose()


def test_outbox_written_with_the_step_and_delivered_after(engine: Engine) -> None:
    tid = start(engine)
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    [message] = engine.outbox(tid)
    assert message["topic"] == "notify" and message["payload"]["to"] == "engineer" and message["seq"] == 2
    delivered = []
    assert engine.dispatch_outbox(delivered.append) == 1
    assert engine.dispatch_outbox(delivered.append) == 0
    assert delivered[0].delivery_id == message["delivery_id"]


def test_timer_fires_once_not_before_its_time_and_is_cancelled_on_leaving(engine: Engine, clock: ManualClock) -> None:
    tid = start(engine)
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    engine.fire(tid, "park", actor=ENGINEER)
    [timer] = engine.get(tid).timers
    assert (timer.timer, timer.due_at) == ("wake_up", T0 + dt.timedelta(hours=1))
    clock.set(T0 + dt.timedelta(minutes=59))
    assert engine.tick().fired == ()
    clock.set(T0 + dt.timedelta(hours=1))
    [fired] = engine.tick().fired
    assert (fired.timer, fired.event, fired.state) == ("wake_up", "wake", "assigned")
    assert engine.tick().fired == ()
    history = engine.history(tid)
    assert (history[-1].event, history[-1].kind, history[-1].actor.id) == ("wake", "timer", "system")
    engine.fire(tid, "park", actor=ENGINEER)
    engine.fire(tid, "cancel", data={"reason": "dup"}, actor=CLERK)
    clock.set(T0 + dt.timedelta(hours=5))
    assert engine.tick().fired == ()


def test_escalation_sets_flag_and_keeps_state(engine: Engine, clock: ManualClock) -> None:
    tid = start(engine, due_at="2026-03-02T12:00")
    clock.set(T0 + dt.timedelta(hours=3))
    [fired] = engine.tick().fired
    assert (fired.timer, fired.outcome) == ("deadline", "escalated")
    inst = engine.get(tid)
    assert (inst.state, inst.data["overdue"]) == ("open", True)
    assert engine.history(tid)[-1].event == "!deadline"
    assert any(m["payload"]["channel"] == "sms" for m in engine.outbox(tid))
    assert [i.id for i in engine.list(overdue=True)] == [tid]
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    assert [i.id for i in engine.list(overdue=True)] == [tid]  # still inside the deadline's scope
    engine.fire(tid, "park", actor=ENGINEER)
    assert engine.list(overdue=True) == []


def test_call_state_starts_child_and_resumes_on_outcome(engine: Engine) -> None:
    tid = start(engine)
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    step = engine.fire(tid, "delegate", actor=ENGINEER)
    [child_id] = step.started
    child = engine.get(child_id)
    assert (child.process, child.parent_id, child.data["title"]) == ("subtask", tid, "A")
    engine.fire(child_id, "finish", data={"result": "done well"}, actor=ENGINEER)
    parent = engine.get(tid)
    assert (parent.state, parent.data["sub_result"]) == ("closed", "done well")
    last = engine.history(tid)[-1]
    assert (last.event, last.kind, last.details["child"]) == ("sub_done", "outcome", child_id)


def test_cancelled_child_returns_and_cancelled_parent_cascades(engine: Engine) -> None:
    tid = start(engine)
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    child = engine.fire(tid, "delegate", actor=ENGINEER).started[0]
    engine.fire(child, "cancel", data={"reason": "not needed"}, actor=ENGINEER)
    assert engine.get(tid).state == "assigned"
    second = engine.fire(tid, "delegate", actor=ENGINEER).started[0]
    engine.fire(tid, "cancel", data={"reason": "customer withdrew"}, actor=CLERK)
    cancelled = engine.get(second)
    assert (cancelled.state, cancelled.data["reason"]) == ("cancelled", "customer withdrew")
    assert engine.history(second)[-1].actor.id == "system"
    assert engine.get(tid).state == "cancelled"


def test_inbox_lists_work_per_role(engine: Engine, clock: ManualClock) -> None:
    first = start(engine)
    clock.advance(dt.timedelta(seconds=1))
    second = start(engine)
    engine.fire(second, "assign", data={"engineer": "e1"}, actor=CLERK)
    assert [(i.id, ev) for i, ev in engine.inbox("clerk")] == [(first, ("assign",))]
    assert [i.id for i, _ in engine.inbox("engineer")] == [second]


def test_changed_definition_is_a_new_version_and_running_instances_keep_theirs(db_url: str, tmp_path,
                                                                                 clock: ManualClock) -> None:
    import shutil

    folder = tmp_path / "procs"
    shutil.copytree(FIXTURES, folder)
    e1 = Engine(db_url, processes=folder, hooks=fixture_hooks(), clock=clock)
    old = start(e1)
    e1.dispose()
    path = folder / "ticket.yaml"
    path.write_text(path.read_text().replace("event: note, roles: [clerk, engineer]",
                                             "event: note, roles: [clerk, engineer, manager]"))
    e2 = Engine(db_url, processes=folder, hooks=fixture_hooks(), clock=clock)
    new = start(e2)
    assert (e2.get(old).version, e2.get(new).version) == (1, 2)
    with pytest.raises(RoleNotAllowed):
        e2.fire(old, "note", data={"note": "x"}, actor=MANAGER)
    assert e2.fire(new, "note", data={"note": "x"}, actor=MANAGER).target == "open"
    e2.dispose()
    e3 = Engine(db_url, processes=folder, hooks=fixture_hooks(), clock=clock)
    assert e3.compiled("ticket").version == 2
    e3.dispose()


def test_list_filters(engine: Engine, clock: ManualClock) -> None:
    a = start(engine)
    clock.advance(dt.timedelta(seconds=1))
    b = start(engine)
    engine.fire(b, "assign", data={"engineer": "e1"}, actor=CLERK)
    assert [i.id for i in engine.list(state="open")] == [a]
    assert [i.id for i in engine.list(process="ticket", status="running")] == [a, b]
    assert engine.list(process="subtask") == []


def test_hot_path_writes_what_core_reads(engine: Engine, clock: ManualClock) -> None:
    tid = start(engine)
    at = T0 + dt.timedelta(hours=2, microseconds=123456)
    clock.set(at)
    engine.fire(tid, "note", data={"note": "é 中文 \"quoted\""}, actor=CLERK)
    entry = engine.history(tid)[-1]
    assert (entry.at, entry.payload, entry.actor) == (at, {"note": "é 中文 \"quoted\""}, CLERK)
    inst = engine.get(tid)
    assert (inst.updated_at, inst.created_at, inst.data["note"]) == (at, T0, "é 中文 \"quoted\"")
    assert [i.id for i in engine.list(state="open")] == [tid]


def test_make_engine_passes_connect_args_through_on_sqlite(tmp_path: Path) -> None:
    from flowengine.store.database import make_engine

    db = make_engine(f"sqlite:///{tmp_path / 'flow.db'}", connect_args={"timeout": 2.5, "cached_statements": 16})
    engine = Engine(db, processes=FIXTURES, hooks=fixture_hooks())
    iid = engine.start("ticket", data={"customer": "C-1"}, actor=Actor("c1", {"clerk"})).id
    assert engine.get(iid).state == "open"
    engine.dispose()


def test_kept_write_connections_are_returned_on_dispose(tmp_path: Path) -> None:
    engine = Engine(f"sqlite:///{tmp_path / 'flow.db'}", processes=FIXTURES, hooks=fixture_hooks())
    clerk = Actor("c1", {"clerk"})
    iid = engine.start("ticket", data={"customer": "C-1"}, actor=clerk).id
    engine.fire(iid, "note", data={"note": "kept"}, actor=clerk)
    assert engine.db.pool.checkedout() >= 1  # type: ignore[attr-defined]  # the write path keeps one
    engine.dispose()
    assert engine.db.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_kept_connection_the_server_dropped_is_replaced_without_failing_the_fire() -> None:
    if PG_URL is None:
        pytest.skip("set FLOWENGINE_TEST_PG_URL (or CI=true) to run PostgreSQL tests")
    for db_url in _pg_schema_url(PG_URL):  # a server that drops connections: PostgreSQL only
        _fire_after_the_server_dropped_the_kept_connection(db_url)


def _fire_after_the_server_dropped_the_kept_connection(db_url: str) -> None:
    import sqlalchemy as sa

    engine = Engine(db_url, processes=FIXTURES, hooks=fixture_hooks())
    clerk = Actor("c1", {"clerk"})
    iid = engine.start("ticket", data={"customer": "C-1"}, actor=clerk).id
    kept = engine._transactions._free
    assert kept, "the write path keeps its connection between fires"
    pids = [fairy.driver_connection.info.backend_pid for fairy in kept]
    admin = sa.create_engine(db_url)
    with admin.begin() as conn:  # what a server restart or an idle timeout does to it
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    step = engine.fire(iid, "note", data={"note": "after the drop"}, actor=clerk)
    assert step.revision == 2
    assert [h.event for h in engine.history(iid)] == ["start", "note"]  # fired once, not twice
    engine.dispose()
