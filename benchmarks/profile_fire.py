"""Where a fire's time goes: cProfile self time grouped by component, per operation.

    python benchmarks/profile_fire.py                    # note, path, start and tick, 2,000 ops each
    python benchmarks/profile_fire.py --case note --ops 5000 --top 25
    python benchmarks/profile_fire.py --case note --pyinstrument   # call tree, if pyinstrument is installed

cProfile charges its own overhead to every Python call, so pure-Python components look heavier than they
are next to C (sqlite3, json's C encoder); the ranking holds, the absolute µs are ~1.5-2x too high. The
same engine settings as benchmarks/run.py (the engine's default synchronous level unless --sqlite-sync).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import pstats
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.baselines import note_moves, path_moves
from benchmarks.common import T0, engine_sqlite_sync
from benchmarks.flow import started, ticket_engine
from flowengine import Engine, ManualClock

# (component, test on "file:function"), first match wins; the order matters (sqlite3 before "other").
COMPONENTS: list[tuple[str, Callable[[str], bool]]] = [
    ("sqlite3 C: statement execution", lambda k: "sqlite3." in k and "execute" in k),
    ("sqlite3 C: commit (WAL write, fsync)", lambda k: "sqlite3.Connection" in k and "commit" in k),
    ("sqlite3 C: other (cursor, fetch, rollback)", lambda k: "sqlite3." in k),
    ("psycopg / libpq", lambda k: "psycopg" in k),
    ("SQLAlchemy: statement build, compile, cache key", lambda k: "/sqlalchemy/sql/" in k),
    ("SQLAlchemy: connection, pool, events, results", lambda k: "/sqlalchemy/" in k),
    ("pydantic", lambda k: "pydantic" in k),
    ("JSON encode/decode", lambda k: "/json/" in k or "_json" in k),
    ("flowengine runtime (decide, effects, hooks, datatypes, compile)",
     lambda k: any(f"/flowengine/{m}" in k for m in ("runtime.py", "effects.py", "hooks.py", "datatypes.py",
                                                      "compile.py", "calendar.py", "durations.py", "clock.py",
                                                      "definition/"))),
    ("flowengine engine + store + timers", lambda k: "/flowengine/" in k),
    ("fixture hooks", lambda k: "/tests/" in k),
    ("dataclasses, datetime, uuid, zoneinfo", lambda k: any(m in k for m in ("dataclasses", "datetime", "uuid",
                                                                             "zoneinfo"))),
    ("Python builtins (isinstance, getattr, dict/str methods)", lambda k: k.startswith("~:")),
]


def component(key: str) -> str:
    for name, test in COMPONENTS:
        if test(key):
            return name
    return "other Python (stdlib, contextlib, threading)"


def describe(entry: tuple[str, int, str]) -> str:
    file, _line, func = entry
    return f"{file}:{func}" if file != "~" else f"~:{func}"


def breakdown(stats: pstats.Stats, ops: int) -> tuple[list[tuple[str, float]], float]:
    per: dict[str, float] = defaultdict(float)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for entry, (_cc, _nc, tottime, _ct, _callers) in raw.items():
        per[component(describe(entry))] += tottime
    total = sum(per.values()) / ops * 1e6
    return sorted(((name, seconds / ops * 1e6) for name, seconds in per.items()), key=lambda x: -x[1]), total


def cumulative(stats: pstats.Stats, ops: int, names: Sequence[str]) -> list[tuple[str, float, float]]:
    """(function, calls per op, cumulative µs per op) of the flowengine functions named."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out = []
    for (file, line, func), (_cc, nc, _tt, ct, _callers) in raw.items():
        if "/flowengine/" in file and func in names:
            short = file.split("/flowengine/")[1]
            out.append((f"{short}:{line} {func}", nc / ops, ct / ops * 1e6))
    return sorted(out, key=lambda x: -x[2])


KEY_FUNCTIONS = ("fire", "_write", "_fire_in", "decide", "_apply", "get_snapshot", "update_instance",
                 "insert_history", "cancel_timers", "schedule_timers", "insert_outbox", "_instance", "start",
                 "_start_in", "decide_start", "insert_instance", "tick", "_fire_one", "claim_timer", "finish_timer",
                 "decide_escalation", "next_number", "validate_data", "validate_payload", "_spawn", "dumps")


def workload(case: str, engine: Engine, clock: ManualClock, ops: int) -> tuple[Callable[[], None], int]:
    """Prepares the case (untimed) and returns the loop to profile and how many operations it does."""
    if case == "note":
        ids = started(engine, 100)
        for iid, event, payload, actor in note_moves(ids, 50):
            engine.fire(iid, event, data=payload, actor=actor)
        moves = note_moves(ids, ops)
    elif case == "path":
        moves = path_moves(started(engine, max(1, ops // 3)))
    elif case == "start":
        started(engine, 20)

        def starts() -> None:
            started(engine, ops)
        return starts, ops
    elif case == "tick":
        started(engine, ops, due_at=(T0 + dt.timedelta(minutes=30)).isoformat())
        clock.set(T0 + dt.timedelta(hours=1))

        def ticks() -> None:
            engine.tick()
        return ticks, ops
    else:
        raise ValueError(case)

    def fires() -> None:
        for iid, event, payload, actor in moves:
            engine.fire(iid, event, data=payload, actor=actor)
    return fires, len(moves)


def profile(case: str, ops: int, top: int, sync: str, use_pyinstrument: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="flowengine-profile-") as tmp:
        clock = ManualClock(T0)
        with ticket_engine(f"sqlite:///{Path(tmp) / 'p.db'}", clock, sync) as engine:
            loop, count = workload(case, engine, clock, ops)
            if use_pyinstrument:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0001)
                profiler.start()
                loop()
                profiler.stop()
                print(profiler.output_text(unicode=True, color=False, show_all=False))
                return
            prof = cProfile.Profile()
            prof.enable()
            loop()
            prof.disable()
    stats = pstats.Stats(prof)
    parts, total = breakdown(stats, count)
    print(f"\n== {case}: {count:,} ops, {total:,.0f} µs/op under cProfile (synchronous={sync}) ==")
    for name, us in parts:
        print(f"  {us:8.1f} µs/op  {us / total:6.1%}  {name}")
    print("  -- flowengine functions, cumulative:")
    for name, calls, us in cumulative(stats, count, KEY_FUNCTIONS)[:18]:
        print(f"  {us:8.1f} µs/op  {calls:5.2f} calls/op  {name}")
    if top:
        print(f"  -- top {top} by self time:")
        stats.sort_stats("tottime").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Profile flowengine's fire, start and tick paths on SQLite.")
    parser.add_argument("--case", choices=("note", "path", "start", "tick", "all"), default="all")
    parser.add_argument("--ops", type=int, default=2_000)
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with most self time")
    parser.add_argument("--sqlite-sync", choices=("engine", "NORMAL", "FULL"), default="engine")
    parser.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument call tree instead")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sync = engine_sqlite_sync(Path(tmp), None if args.sqlite_sync == "engine" else args.sqlite_sync)
    for case in ("note", "path", "start", "tick") if args.case == "all" else (args.case,):
        profile(case, args.ops, args.top, sync, args.pyinstrument)
    return 0


if __name__ == "__main__":
    sys.exit(main())
