"""Processes the reliability tests start, race and kill.

`python -m tests.reliability._child MODE JSON-ARGS` runs one of `fire-loop`, `tick`, `dispatch`; each
prints `ready` once its engine is open and one line per committed unit of work (flushed at once), so
the parent can SIGKILL it at a known point. `concurrent_fires` is a multiprocessing ("spawn") target.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from flowengine import ConcurrencyConflict, Engine, ManualClock
from flowengine.timers import OutboxMessage
from tests.reliability._support import CLERK, ENGINEER, open_engine

MAX_STEPS = 20_000  # a child the parent forgot to kill still ends


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def block_until_killed(limit: float = 300.0) -> None:
    """Sleep until SIGKILL arrives, or until the parent is gone (reparented) or `limit` seconds pass."""
    parent = os.getppid()
    end = time.monotonic() + limit
    while time.monotonic() < end and os.getppid() == parent:
        time.sleep(0.05)
    os._exit(3)


# -- fire-loop: a stream of steps touching every table --------------------------------------------

def _next_step(engine: Engine, rng: random.Random, iid: str) -> tuple[str, str] | None:
    """Fire one random allowed step on ticket `iid` (or its child); None when the ticket has finished."""
    inst = engine.get(iid)
    if inst.status != "running":
        return None
    note = {"note": f"n{rng.randrange(10**9)}"}
    if inst.state == "open":
        event, actor, data = rng.choice([("assign", CLERK, {"engineer": "e1"}), ("note", CLERK, note)])
    elif inst.state == "assigned":
        event, actor, data = rng.choice([("park", ENGINEER, {}), ("delegate", ENGINEER, {}),
                                         ("resolve", ENGINEER, {}), ("note", ENGINEER, note)])
    elif inst.state == "waiting":
        event, actor, data = rng.choice([("note", CLERK, note), ("cancel", CLERK, {"reason": "r"})])
    elif inst.state == "delegated":
        [child] = [c for c in engine.children(iid) if c.status == "running"]
        event, data = rng.choice([("finish", {"result": "fixed"}), ("cancel", {"reason": "not needed"})])
        engine.fire(child.id, event, data=data, actor=ENGINEER)
        return child.id, event
    else:
        raise AssertionError(f"unexpected state {inst.state}")
    engine.fire(iid, event, data=data, actor=actor)
    return iid, event


def fire_loop(args: dict[str, Any]) -> None:
    rng = random.Random(args["seed"])
    engine = open_engine(args["url"])
    running = [i.id for i in engine.list(process="ticket", status="running")]
    say("ready")
    for _ in range(MAX_STEPS):
        if len(running) < 30 and (not running or rng.random() < 0.2):
            due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
            inst = engine.start("ticket", data={"customer": "C", "due_at": due}, actor=CLERK)
            running.append(inst.id)
            say(f"step {inst.id} start")
            continue
        iid = rng.choice(running)
        done = _next_step(engine, rng, iid)
        if done is None:
            running.remove(iid)
        else:
            say(f"step {done[0]} {done[1]}")


# -- tick: one tick over many due timers --------------------------------------------------------------

def tick(args: dict[str, Any]) -> None:
    engine = open_engine(args["url"], clock=ManualClock(dt.datetime.fromisoformat(args["now"])))
    say("ready")
    report = engine.tick()
    say(f"done {len(report.fired)}")


# -- dispatch: deliver the outbox, block inside one delivery -----------------------------------------

def dispatch(args: dict[str, Any]) -> None:
    engine = open_engine(args["url"])
    log = Path(args["log"])
    block_at: int = args["block_at"]
    delivered = 0

    def deliver(message: OutboxMessage) -> None:
        nonlocal delivered
        record = {"delivery_id": message.delivery_id, "id": message.id, "instance": message.instance_id,
                  "seq": message.seq, "topic": message.topic, "payload": message.payload, "pid": os.getpid()}
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        delivered += 1
        time.sleep(args.get("delay", 0))
        if delivered == block_at:
            say("blocked")  # delivered, not yet marked: the parent kills us here
            block_until_killed()

    say("ready")
    if args.get("wait_for_go"):
        sys.stdin.readline()
    while engine.dispatch_outbox(deliver, limit=args["limit"]):
        pass
    say(f"done {delivered}")


# -- concurrent fires (multiprocessing target) --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FireResult:
    worker: int
    index: int
    instance_id: str
    note: str
    outcome: str  # ok, conflict, error
    seq: int | None = None
    conflicts: int = 0  # conflicts retried before the outcome (retry mode)
    error: str | None = None


def concurrent_fires(url: str, ids: list[str], worker: int, fires: int, mode: str, barrier: Barrier,
                     results: Any) -> None:
    """Fire `note` `fires` times on `ids`. mode: `optimistic` (expected_revision read just before; a
    conflict is recorded), `retry` (re-read and retry on conflict), `plain` (no expected_revision)."""
    out: list[dict[str, Any]] = []
    try:
        engine = open_engine(url)
        barrier.wait(timeout=120)
        for i in range(fires):
            iid = ids[(worker + i) % len(ids)] if i else ids[0]
            note = f"w{worker}-f{i}"
            conflicts = 0
            while True:
                # Every worker's first fire expects revision 1 of ids[0]: exactly one of them can win.
                expected = 1 if i == 0 and conflicts == 0 else engine.get(iid).revision
                try:
                    step = engine.fire(iid, "note", data={"note": note}, actor=CLERK,
                                       expected_revision=None if mode == "plain" else expected)
                except ConcurrencyConflict:
                    if mode == "retry" and conflicts < 1000:
                        conflicts += 1
                        continue
                    out.append(asdict(FireResult(worker, i, iid, note, "conflict", conflicts=conflicts)))
                except Exception as exc:
                    out.append(asdict(FireResult(worker, i, iid, note, "error", conflicts=conflicts,
                                                 error=f"{type(exc).__module__}.{type(exc).__name__}: {exc}")))
                else:
                    out.append(asdict(FireResult(worker, i, iid, note, "ok", step.seq, conflicts)))
                break
        engine.dispose()
    except Exception as exc:  # report, don't hang the parent
        out.append(asdict(FireResult(worker, -1, "", "", "error", error=f"{type(exc).__name__}: {exc}")))
    results.put(out)


MODES = {"fire-loop": fire_loop, "tick": tick, "dispatch": dispatch}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(sys.argv[2]))
