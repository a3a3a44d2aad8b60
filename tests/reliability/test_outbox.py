"""The outbox: side effects are written with their step and delivered after commit, at least once.

A dispatcher subprocess whose receiver records each delivery_id (fsynced) and then blocks is SIGKILLed
between delivering a message and marking it delivered, three times; after a restart every message has
been delivered, and every duplicate carries the delivery_id (and payload) of its first delivery.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowengine import Engine, EventNotAllowed
from flowengine.timers import OutboxMessage
from tests.reliability._support import CLERK, MANAGER, Child, impatient_db, open_engine, report

TICKETS = 60  # one `notify engineer` message each


def assigned_tickets(engine: Engine, n: int) -> list[str]:
    ids = []
    for k in range(n):
        iid = engine.start("ticket", data={"customer": f"C{k}"}, actor=CLERK).id
        engine.fire(iid, "assign", data={"engineer": "e1"}, actor=CLERK)
        ids.append(iid)
    return ids


def test_side_effects_are_in_the_outbox_after_commit_and_delivered_after_it(db_url: str) -> None:
    engine = open_engine(db_url)
    iid = engine.start("ticket", data={"customer": "A"}, actor=CLERK).id
    assert engine.outbox(iid) == []
    step = engine.fire(iid, "assign", data={"engineer": "e1"}, actor=CLERK)
    [message] = engine.outbox(iid)
    assert (message["seq"], message["topic"], message["delivered_at"]) == (step.seq, "notify", None)
    assert message["payload"]["to"] == "engineer" and len(message["delivery_id"]) == 36
    with pytest.raises(EventNotAllowed):
        engine.fire(iid, "approve", actor=MANAGER)  # refused (wrong state): writes nothing
    assert len(engine.outbox(iid)) == 1
    observer = open_engine(db_url)
    seen: list[tuple[str, int]] = []

    def deliver(m: OutboxMessage) -> None:
        # Another connection already sees the step the message belongs to: it was committed first.
        seen.append((m.delivery_id, observer.get(m.instance_id).revision))

    assert engine.dispatch_outbox(deliver) == 1
    assert seen == [(message["delivery_id"], step.revision)]
    assert engine.outbox(iid)[0]["delivered_at"] is not None
    assert engine.dispatch_outbox(deliver) == 0
    observer.dispose()
    engine.dispose()


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_dispatcher_killed_between_delivery_and_mark_loses_nothing(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    ids = assigned_tickets(engine, TICKETS)
    log = tmp_path / "deliveries.jsonl"
    blocked_ids = []
    began = time.monotonic()
    for kill, block_at in enumerate((3, 14, 25)):  # batches of 10: mid first, second, third batch
        child = Child("dispatch", {"url": db_url, "log": str(log), "block_at": block_at, "limit": 10},
                      tmp_path / f"dispatch-{kill}.stderr")
        child.expect("ready")
        child.expect("blocked", timeout=60)
        assert child.kill() == -9
        blocked_ids.append(read_log(log)[-1]["delivery_id"])

    def deliver(m: OutboxMessage) -> None:
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"delivery_id": m.delivery_id, "id": m.id, "instance": m.instance_id, "seq": m.seq,
                                "topic": m.topic, "payload": m.payload, "pid": 0}, sort_keys=True) + "\n")

    rounds = 0
    while engine.dispatch_outbox(deliver, limit=10) and rounds < 20:
        rounds += 1
    messages = [m for iid in ids for m in engine.outbox(iid)]
    assert len(messages) == TICKETS
    assert [m for m in messages if m["delivered_at"] is None] == []
    deliveries = read_log(log)
    counts = Counter(d["delivery_id"] for d in deliveries)
    assert set(counts) == {m["delivery_id"] for m in messages}, "a message was never delivered, or an id was made up"
    for did in counts:
        copies = {json.dumps({k: v for k, v in d.items() if k != "pid"}, sort_keys=True)
                  for d in deliveries if d["delivery_id"] == did}
        assert len(copies) == 1, f"redelivery of {did} differs from its first delivery: {copies}"
    assert all(counts[did] >= 2 for did in blocked_ids), "the message in flight at the kill was not redelivered"
    report("outbox/kill", db_url, messages=len(messages), kills=len(blocked_ids), deliveries=len(deliveries),
           duplicates=len(deliveries) - len(counts), lost=0, seconds=round(time.monotonic() - began, 1))
    engine.dispose()


@pytest.mark.slow
def test_two_dispatchers_at_once_deliver_each_message_once(db_url: str, tmp_path: Path) -> None:
    """Several workers may run (docs/deployment.md): without a crash, none delivers what another did."""
    engine = open_engine(db_url)
    ids = assigned_tickets(engine, TICKETS)
    log = tmp_path / "deliveries.jsonl"
    children = [Child("dispatch", {"url": db_url, "log": str(log), "block_at": 0, "limit": 10, "delay": 0.005,
                                   "wait_for_go": True}, tmp_path / f"dispatch-{n}.stderr") for n in range(2)]
    for child in children:
        child.expect("ready")
    for child in children:
        child.send("go")
    for child in children:
        child.expect("done", timeout=120)
        assert child.finish() == 0, child.stderr_tail()
    deliveries = read_log(log)
    counts = Counter(d["delivery_id"] for d in deliveries)
    messages = [m for iid in ids for m in engine.outbox(iid)]
    per_worker = Counter(d["pid"] for d in deliveries)
    report("outbox/two-dispatchers", db_url, messages=len(messages), deliveries=len(deliveries),
           per_dispatcher=sorted(per_worker.values()), duplicates=len(deliveries) - len(counts))
    assert set(counts) == {m["delivery_id"] for m in messages}
    assert [m for m in messages if m["delivered_at"] is None] == []
    assert {did: n for did, n in counts.items() if n > 1} == {}, "delivered twice without any crash"
    engine.dispose()


@pytest.mark.slow
def test_a_blocked_receiver_does_not_block_fires(db_url: str, tmp_path: Path) -> None:
    """Delivery is I/O to other systems; while one receiver hangs, the engine must keep taking fires."""
    engine = open_engine(db_url)
    [iid] = assigned_tickets(engine, 1)
    quick = open_engine(impatient_db(db_url, 1000))
    child = Child("dispatch", {"url": db_url, "log": str(tmp_path / "log.jsonl"), "block_at": 1, "limit": 10},
                  tmp_path / "dispatch.stderr")
    try:
        child.expect("blocked", timeout=60)
        outcome: list[str] = []

        def fire() -> None:
            try:
                quick.fire(iid, "note", data={"note": "while a receiver hangs"}, actor=CLERK)
                outcome.append("ok")
            except Exception as exc:
                outcome.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")

        began = time.monotonic()
        worker = threading.Thread(target=fire, daemon=True)
        worker.start()
        worker.join(timeout=10)
        took = time.monotonic() - began
        report("outbox/blocked-receiver", db_url, fire=outcome[0] if outcome else "still waiting",
               seconds=round(took, 2))
        assert outcome == ["ok"], f"a fire while a receiver blocks got {outcome or 'no answer in 10 s'}"
    finally:
        child.kill()
        quick.dispose()
        engine.dispose()
