"""Fire latency and resident memory against a small and a big store, each in a fresh process.

The probe runs in a process started with `spawn`, so its resident set is the engine's own (a forked child
would share the parent's pages and the rows the parent built), and nothing is cached from earlier parts.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.bulk import build_sqlite_store, instance_id, running_index
from benchmarks.common import CLERK, Result, percentile, rss_mb, sqlite_connect, sqlite_time
from benchmarks.flow import ticket_engine

WARMUP = 50


def probe(url: str, size: int, fires: int, seed: int, synchronous: str) -> dict[str, float]:
    """In the child: the engine's resident memory after `fires` fires on random running instances; then
    flowengine's `note` fire and the raw transition timed alternately on the same store, so both sides see
    the same cache and WAL state (one after the other, the side that runs first warms the file for the
    second: at 1M instances that alone moved p99 by a third)."""
    before = rss_mb()
    engine = ticket_engine(url, synchronous=synchronous)
    rng = random.Random(seed)
    for k in range(WARMUP):
        engine.fire(instance_id(running_index(rng, size)), "note", data={"note": f"w{k}"}, actor=CLERK)
    opened = rss_mb()
    for k in range(fires):
        engine.fire(instance_id(running_index(rng, size)), "note", data={"note": f"m{k}"}, actor=CLERK)
    after = rss_mb()  # before the raw side's connection (and its page cache) joins the process
    conn = sqlite_connect(Path(url.removeprefix("sqlite:///")), synchronous)
    latencies: list[float] = []
    raw: list[float] = []
    for k in range(WARMUP + fires):
        ours, theirs = instance_id(running_index(rng, size)), instance_id(running_index(rng, size))
        for side in ("flowengine", "raw") if k % 2 else ("raw", "flowengine"):  # who goes first alternates
            start = time.perf_counter()
            if side == "flowengine":
                engine.fire(ours, "note", data={"note": f"n{k}"}, actor=CLERK)
            else:
                raw_move(conn, theirs, k)
            if k >= WARMUP:
                (latencies if side == "flowengine" else raw).append(time.perf_counter() - start)
    conn.close()
    engine.dispose()
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "mean": sum(latencies) / len(latencies), "rss_before": before, "rss_open": opened, "rss_after": after,
            "raw_p50": percentile(raw, 0.5), "raw_p99": percentile(raw, 0.99)}


def raw_move(conn: Any, iid: str, k: int) -> None:
    """The raw baseline's transition (read, versioned update, history insert; one transaction) on the same
    store and the same kind of random running instance: what the database itself does at this size."""
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute("SELECT state, data, revision FROM fe_instances WHERE id = ?", (iid,)).fetchone()
    data = json.loads(row[1])
    data["note"] = f"r{k}"
    now = sqlite_time(dt.datetime.now(dt.UTC))
    conn.execute("UPDATE fe_instances SET data = ?, revision = ?, updated_at = ? WHERE id = ? AND revision = ?",
                 (json.dumps(data, separators=(",", ":")), row[2] + 1, now, iid, row[2]))
    conn.execute("INSERT INTO fe_history (instance_id, seq, event, from_state, to_state, actor_id, actor_roles, "
                 "payload, at, kind, details) VALUES (?, ?, 'note', ?, ?, ?, '[\"clerk\"]', ?, ?, 'fire', '{}')",
                 (iid, row[2] + 1, row[0], row[0], CLERK.id, json.dumps({"note": f"r{k}"}), now))
    conn.execute("COMMIT")


def prepare(path: Path, size: int) -> str:
    """A migrated engine database holding `size` bulk-inserted tickets; returns its URL."""
    url = f"sqlite:///{path}"
    with ticket_engine(url) as engine:
        version = engine.compiled("ticket").version
    build_sqlite_store(path, size, version)
    return url


def run_probe(url: str, size: int, fires: int, synchronous: str) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, float] = pool.apply(probe, (url, size, fires, 7, synchronous))
    return result


def least_disturbed(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the best round: lowest latencies, highest RSS (memory is not noise, so no excuse)."""
    out = dict(rounds[0])
    for r in rounds[1:]:
        for key in ("p50", "p99", "mean", "raw_p50", "raw_p99"):
            out[key] = min(out[key], r[key])
        for key in ("rss_before", "rss_open", "rss_after"):
            out[key] = max(out[key], r[key])
    out["rounds"] = len(rounds)
    return out


def scale_results(small: tuple[int, dict[str, float]], large: tuple[int, dict[str, float]],
                  fires: int) -> list[Result]:
    out = []
    for size, r in (small, large):
        detail = (f"mean {r['mean'] * 1e6:,.0f} µs; raw sqlite3 on the same store p50 {r['raw_p50'] * 1e6:,.0f} µs, "
                  f"p99 {r['raw_p99'] * 1e6:,.0f} µs; RSS {r['rss_before']:.0f} MiB after imports, "
                  f"{r['rss_open']:.0f} MiB after open+warm-up")
        if r.get("rounds", 1) > 1:
            detail += f"; lowest of {r['rounds']:.0f} rounds"
        extra: dict[str, Any] = {"p99_us": r["p99"] * 1e6, "rss_mb": r["rss_after"], "raw_p50_us": r["raw_p50"] * 1e6,
                                 "raw_p99_us": r["raw_p99"] * 1e6}
        out.append(Result("7 scale", f"fire p50 with {size:,} instances in the store", "sqlite", fires,
                          r["p50"] * 1e6, "µs", detail, extra))
        out.append(Result("7 scale", f"fire p99 with {size:,} instances in the store", "sqlite", fires,
                          r["p99"] * 1e6, "µs"))
        out.append(Result("7 scale", f"engine RSS with {size:,} instances in the store", "sqlite", fires,
                          r["rss_after"], "MiB", "VmRSS after the fires"))
    return out
