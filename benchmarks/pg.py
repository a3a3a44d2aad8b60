"""PostgreSQL: aggregate fires/s of 1, 2, 4… worker processes, flowengine against raw psycopg.

Each worker owns its instances (no lock contention between workers: this measures throughput, not
conflicts), warms up, waits at a barrier, then fires the ticket's `note` self-loop round-robin. Aggregate
rate = all fires / (last worker's end − first worker's start). Both sides run in one schema made for
the run and dropped after it; raw psycopg uses tables shaped like fe_instances / fe_history.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from benchmarks.baselines import note_moves, raw_pg_moves, raw_pg_seed, raw_pg_setup
from benchmarks.common import Result, pg_connect_kwargs, throughput
from benchmarks.flow import started, ticket_engine

WARMUP = 10
Timing = tuple[int, float, float]  # fires, start, end (time.monotonic, comparable across processes)


def flow_worker(worker: int, barrier: Any, out: Any, url: str, instances: int, fires: int) -> None:
    engine = ticket_engine(url, migrate=False)  # the parent migrated the schema
    try:
        ids = started(engine, instances)
        for iid, event, payload, actor in note_moves(ids, WARMUP):
            engine.fire(iid, event, data=payload, actor=actor)
        moves = note_moves(ids, fires)
        barrier.wait()
        begin = time.monotonic()
        for iid, event, payload, actor in moves:
            engine.fire(iid, event, data=payload, actor=actor)
        out.put((len(moves), begin, time.monotonic()))
    except BaseException as exc:
        barrier.abort()
        out.put(exc)
        raise
    finally:
        engine.dispose()


def raw_worker(worker: int, barrier: Any, out: Any, base_url: str, schema: str, instances: int, fires: int) -> None:
    import psycopg

    try:
        with psycopg.connect(**pg_connect_kwargs(base_url, schema)) as conn:
            ids = [f"raw-{worker}-{i}-{time.monotonic_ns()}" for i in range(instances)]
            raw_pg_seed(conn, ids)
            raw_pg_moves(conn, note_moves(ids, WARMUP))
            moves = note_moves(ids, fires)
            barrier.wait()
            begin = time.monotonic()
            raw_pg_moves(conn, moves)
            out.put((len(moves), begin, time.monotonic()))
    except BaseException as exc:
        barrier.abort()
        out.put(exc)
        raise


def _run(workers: int, target: Callable[..., None], args: tuple[Any, ...]) -> tuple[int, float]:
    # fork: workers start fast and inherit nothing they use (each opens its own connections).
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=target, args=(w, barrier, out, *args)) for w in range(workers)]
    for p in procs:
        p.start()
    timings: list[Timing] = []
    for _ in procs:
        item = out.get(timeout=600)
        if isinstance(item, BaseException):
            for p in procs:
                p.terminate()
            raise RuntimeError(f"a PostgreSQL worker failed: {item!r}") from item
        timings.append(item)
    for p in procs:
        p.join()
    total = sum(t[0] for t in timings)
    return total, max(t[2] for t in timings) - min(t[1] for t in timings)


def pg_results(url: str, base_url: str, schema: str, workers: tuple[int, ...], instances: int, fires: int,
               rounds: int) -> list[Result]:
    """For each worker count, raw and flowengine in interleaved rounds; the best round of each is kept."""
    import psycopg

    with ticket_engine(url):  # migrate and register once, before the workers race to do it
        pass
    with psycopg.connect(**pg_connect_kwargs(base_url, schema)) as conn:
        raw_pg_setup(conn)
    results = []
    for w in workers:
        raw_runs, flow_runs = [], []
        for _ in range(rounds):
            raw_runs.append(_run(w, raw_worker, (base_url, schema, instances, fires)))
            flow_runs.append(_run(w, flow_worker, (url, instances, fires)))
        plural = "s" if w > 1 else ""
        raw_ops, raw_s = max(raw_runs, key=lambda r: r[0] / r[1])
        flow_ops, flow_s = max(flow_runs, key=lambda r: r[0] / r[1])
        raw = throughput("4 postgresql", f"raw psycopg, {w} worker{plural}", "postgresql", raw_ops, raw_s,
                         "read + versioned update + history insert" + _rounds(raw_runs))
        flow = throughput("4 postgresql", f"flowengine fire `note`, {w} worker{plural}", "postgresql", flow_ops,
                          flow_s, f"{w} × {fires} fires" + _rounds(flow_runs),
                          vs_raw=(flow_ops / flow_s) / (raw_ops / raw_s))
        results += [raw, flow]
    return results


def _rounds(runs: list[tuple[int, float]]) -> str:
    return "; rounds " + "/".join(f"{o / s:,.0f}" for o, s in runs) if len(runs) > 1 else ""
