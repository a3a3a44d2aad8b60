"""Several OS processes fire at the same few instances at once: no lost update, no duplicate, no gap.

Four "spawn" processes × 50 fires of the self-loop `note` on 3 ticket instances, each note text unique,
so every successful fire can be found in the history. Losers must get `ConcurrencyConflict`, never
another error; with the opt-in retry loop every attempted fire lands exactly once.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from typing import Any

import pytest

from flowengine import Engine
from tests.reliability._child import concurrent_fires
from tests.reliability._support import CLERK, open_engine, report

PROCESSES = 4
FIRES = 50
INSTANCES = 3

pytestmark = pytest.mark.slow


def race(url: str, mode: str) -> tuple[Engine, list[str], list[dict[str, Any]], float]:
    engine = open_engine(url)
    ids = [engine.start("ticket", data={"customer": f"C{n}"}, actor=CLERK).id for n in range(INSTANCES)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    workers = [ctx.Process(target=concurrent_fires, args=(url, ids, w, FIRES, mode, barrier, results))
               for w in range(PROCESSES)]
    began = time.monotonic()
    for w in workers:
        w.start()
    try:
        records = [r for _ in workers for r in results.get(timeout=180)]
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    return engine, ids, records, time.monotonic() - began


def check_histories(engine: Engine, ids: list[str], records: list[dict[str, Any]]) -> None:
    """Every successful fire is in the history once, at the seq its Step reported; nothing else is."""
    ok = [r for r in records if r["outcome"] == "ok"]
    for iid in ids:
        history = engine.history(iid)
        assert [h.seq for h in history] == list(range(1, len(history) + 1)), iid
        notes = Counter(h.payload["note"] for h in history if h.event == "note")
        mine = {r["note"]: r["seq"] for r in ok if r["instance_id"] == iid}
        assert notes == Counter(r["note"] for r in ok if r["instance_id"] == iid), \
            f"{iid}: history notes differ from the successful fires"
        assert max(notes.values(), default=1) == 1, f"{iid}: a note is in the history twice"
        by_seq = {h.seq: h.payload.get("note") for h in history}
        assert all(by_seq[seq] == note for note, seq in mine.items()), f"{iid}: a Step reported the wrong seq"
        inst = engine.get(iid)
        assert inst.revision == len(history) == 1 + len(mine), iid
        assert inst.state == history[-1].target == "open"


def test_losers_get_concurrency_conflict_and_no_update_is_lost(db_url: str) -> None:
    engine, ids, records, took = race(db_url, "optimistic")
    errors = [r for r in records if r["outcome"] == "error"]
    assert errors == [], errors[:3]
    assert len(records) == PROCESSES * FIRES
    check_histories(engine, ids, records)
    first = [r for r in records if r["index"] == 0]
    assert Counter(r["outcome"] for r in first) == {"ok": 1, "conflict": PROCESSES - 1}, first
    outcomes = Counter(r["outcome"] for r in records)
    report("concurrency/optimistic", db_url, processes=PROCESSES, instances=INSTANCES,
           fires=len(records), succeeded=outcomes["ok"], conflicts=outcomes["conflict"], other_errors=len(errors),
           seconds=round(took, 1))
    engine.dispose()


def test_retrying_on_conflict_lands_every_fire_exactly_once(db_url: str) -> None:
    engine, ids, records, took = race(db_url, "retry")
    assert [r for r in records if r["outcome"] != "ok"] == []
    assert len(records) == PROCESSES * FIRES
    check_histories(engine, ids, records)
    assert sum(engine.get(i).revision - 1 for i in ids) == PROCESSES * FIRES
    conflicts = sum(r["conflicts"] for r in records)
    report("concurrency/retry", db_url, processes=PROCESSES, instances=INSTANCES, fires=len(records),
           landed=len(records), conflicts_retried=conflicts,
           max_retries_one_fire=max(r["conflicts"] for r in records), seconds=round(took, 1))
    engine.dispose()


def test_fires_without_expected_revision_all_land(db_url: str) -> None:
    """Without `expected_revision` a fire is not optimistic: concurrent fires queue, none is refused."""
    engine, ids, records, took = race(db_url, "plain")
    outcomes = Counter(r["outcome"] for r in records)
    report("concurrency/plain", db_url, processes=PROCESSES, instances=INSTANCES, fires=len(records),
           succeeded=outcomes["ok"], conflicts=outcomes["conflict"], other_errors=outcomes["error"],
           seconds=round(took, 1))
    assert [r for r in records if r["outcome"] == "error"] == []
    check_histories(engine, ids, records)
    refused = [r for r in records if r["outcome"] != "ok"]
    assert refused == [], (f"{len(refused)} of {len(records)} fires without expected_revision were refused with "
                           f"ConcurrencyConflict (on {refused[0]['instance_id']}, note {refused[0]['note']})")
    engine.dispose()
