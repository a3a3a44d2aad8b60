"""Timers through the engine: repetition, working days, data-relative due times, workers."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowengine import Actor, Engine, ManualClock
from tests.conftest import FIXTURES, PG_URL, ROOT, _pg_schema_url, fixture_hooks

CLERK = Actor("c1", {"clerk"})
SH = dt.timezone(dt.timedelta(hours=8))
FRIDAY = dt.datetime(2026, 3, 6, 10, 0, tzinfo=SH)


def make(db_url: str, at: dt.datetime) -> tuple[Engine, ManualClock]:
    clock = ManualClock(at)
    return Engine(db_url, processes=FIXTURES, hooks=fixture_hooks(), clock=clock), clock


def dues(engine: Engine, iid: str) -> dict[str, dt.datetime]:
    return {t.timer: t.due_at.astimezone(SH) for t in engine.get(iid).timers}


def test_working_day_and_field_relative_due_times(db_url: str) -> None:
    engine, _ = make(db_url, FRIDAY)
    iid = engine.start("chase", data={"promised_on": "2026-09-30"}, actor=CLERK).id
    due = dues(engine, iid)
    assert due["sla"] == dt.datetime(2026, 3, 10, 10, 0, tzinfo=SH)  # Fri + 2 working days skips the weekend
    # Sept 30 2026 + 1 working day: Oct 1-7 are the National Day holiday, Oct 10 (Sat) a make-up day.
    assert due["promise"] == dt.datetime(2026, 10, 8, 0, 0, tzinfo=SH)
    assert due["nag"] == FRIDAY + dt.timedelta(hours=1)
    assert due["give_up"] == FRIDAY + dt.timedelta(days=30)
    no_field = engine.start("chase", data={}, actor=CLERK).id
    assert "promise" not in dues(engine, no_field)  # not scheduled while the field is empty
    engine.dispose()


def test_reminder_repeats_while_in_scope_and_stops_after(db_url: str) -> None:
    engine, clock = make(db_url, FRIDAY)
    iid = engine.start("chase", data={}, actor=CLERK).id
    for hour in (1, 2, 3):
        clock.set(FRIDAY + dt.timedelta(hours=hour))
        assert [f.timer for f in engine.tick().fired] == ["nag"]
    assert engine.get(iid).data["nags"] == 3
    assert len([m for m in engine.outbox(iid) if m["topic"] == "notify"]) == 3
    engine.fire(iid, "finish", actor=CLERK)
    clock.set(FRIDAY + dt.timedelta(hours=10))
    assert engine.tick().fired == ()
    assert engine.get(iid).timers == ()
    engine.dispose()


def test_one_tick_never_chains_and_late_ticks_fire_in_due_order(db_url: str) -> None:
    engine, clock = make(db_url, FRIDAY)
    iid = engine.start("chase", data={}, actor=CLERK).id
    clock.set(FRIDAY + dt.timedelta(days=31))
    fired = [f.timer for f in engine.tick().fired]
    # All four were due; nag fires once (its repeat waits for the next tick), then the cancel ends the rest.
    assert fired == ["nag", "sla", "give_up"]
    inst = engine.get(iid)
    assert (inst.state, inst.data["reason"], inst.data["late"]) == ("cancelled", "no answer in 30 days", True)
    assert [h.event for h in engine.history(iid)] == ["start", "!nag", "!sla", "cancel"]
    assert engine.tick().fired == ()
    engine.dispose()


def _tick_worker(url: str, now_iso: str, queue: multiprocessing.Queue[int]) -> None:
    engine = Engine(url, processes=FIXTURES, hooks=fixture_hooks(), clock=ManualClock(dt.datetime.fromisoformat(
        now_iso)))
    queue.put(len(engine.tick().fired))
    engine.dispose()


@pytest.mark.postgres
def test_two_workers_ticking_at_once_on_postgresql_fire_each_timer_once() -> None:
    if PG_URL is None:
        pytest.skip("set FLOWENGINE_TEST_PG_URL (or CI=true) to run PostgreSQL tests")
    for url in _pg_schema_url(PG_URL):
        engine, _ = make(url, FRIDAY)
        ids = [engine.start("ticket", data={"customer": f"c{i}", "due_at": "2026-03-06T11:00"}, actor=CLERK).id
               for i in range(200)]
        ctx = multiprocessing.get_context("spawn")
        queue: multiprocessing.Queue[int] = ctx.Queue()
        later = (FRIDAY + dt.timedelta(hours=2)).isoformat()
        workers = [ctx.Process(target=_tick_worker, args=(url, later, queue)) for _ in range(2)]
        for w in workers:
            w.start()
        counts = [queue.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        assert sum(counts) == 200, counts
        for iid in ids:
            assert [h.event for h in engine.history(iid)].count("!deadline") == 1
        engine.dispose()


def test_worker_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWENGINE_DB": f"sqlite:///{tmp_path / 'w.db'}", "FLOWENGINE_PROCESSES": str(FIXTURES),
           "FLOWENGINE_HOOKS": "tests.fixture_hooks_module", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "flowengine", "worker", "--poll", "0.1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "worker stopped after firing 0 timers" in err


def test_a_timer_whose_scope_an_earlier_timer_of_the_same_tick_left_does_not_fire(db_url: str) -> None:
    engine, clock = make(db_url, FRIDAY)
    # `promise` falls due after `give_up` (30 days), which cancels the instance and so leaves its scope.
    iid = engine.start("chase", data={"promised_on": "2026-05-20"}, actor=CLERK).id
    clock.set(FRIDAY + dt.timedelta(days=90))
    report = engine.tick()
    assert [(f.timer, f.outcome) for f in report.firings] == [("nag", "escalated"), ("sla", "escalated"),
                                                               ("give_up", "fired")]
    inst = engine.get(iid)
    assert inst.state == "cancelled" and "promise_missed" not in inst.data
    assert [h.event for h in engine.history(iid)] == ["start", "!nag", "!sla", "cancel"]
    assert engine.tick().firings == ()
    engine.dispose()


def test_timer_rows_record_what_happened_when_a_later_timer_of_the_tick_leaves_their_scope(db_url: str) -> None:
    import sqlalchemy as sa

    from flowengine.store.tables import timers

    engine, clock = make(db_url, FRIDAY)
    iid = engine.start("chase", data={}, actor=CLERK).id
    clock.set(FRIDAY + dt.timedelta(days=31))  # nag and sla escalate, then give_up cancels the instance
    engine.tick()
    with engine.db.connect() as conn:
        rows = conn.execute(sa.select(timers.c.timer, timers.c.status).where(timers.c.instance_id == iid)
                            .order_by(timers.c.id)).all()
    # Escalations whose scope was left are closed; nag's next repetition, still pending, is cancelled.
    assert [tuple(r) for r in rows] == [("nag", "closed"), ("sla", "closed"), ("give_up", "fired"),
                                        ("nag", "cancelled")]
    engine.dispose()


def test_a_failing_timer_is_undone_alone_and_recorded(db_url: str, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "procs"
    shutil.copytree(FIXTURES, folder)
    path = folder / "chase.yaml"
    # A cancel without its required reason: the timer's event is refused when it fires.
    path.write_text(path.read_text().replace("payload: {reason: no answer in 30 days}", "payload: {}"))
    clock = ManualClock(FRIDAY)
    engine = Engine(db_url, processes=folder, hooks=fixture_hooks(), clock=clock)
    ids = [engine.start("chase", data={}, actor=CLERK).id for _ in range(3)]
    clock.set(FRIDAY + dt.timedelta(days=31))
    report = engine.tick()
    outcomes = sorted((f.timer, f.outcome) for f in report.firings)
    assert outcomes == sorted([("nag", "escalated"), ("sla", "escalated"), ("give_up", "failed")] * 3)
    assert all("'reason' is required" in (f.error or "") for f in report.firings if f.outcome == "failed")
    for iid in ids:
        inst = engine.get(iid)
        assert (inst.state, inst.data["nags"], inst.data["late"]) == ("waiting", 1, True)
        assert [h.event for h in engine.history(iid)] == ["start", "!nag", "!sla"]
    assert [f.timer for f in engine.tick().fired] == ["nag"] * 3  # the failed one is not retried forever
    engine.dispose()
