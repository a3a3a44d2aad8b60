"""Benchmark flowengine against raw drivers and a naive `transitions` + ORM implementation.

    python benchmarks/run.py                      # full run (several minutes; 1M-instance store)
    python benchmarks/run.py --quick              # every part at a small size, under 30 s (CI)
    python benchmarks/run.py --db sqlite --size 200000 --workers 1,2

Prints a table, then as its last line the key ratios (`ratios: sqlite_vs_raw=… …`). Parts: 1 raw sqlite3,
2 naive, 3 flowengine on SQLite, 4 PostgreSQL with 1/2/4 workers, 5 in-memory `decide`, 6 start/tick/list,
7 fire latency and memory with a small and a large store. docs/benchmarks.md explains what each measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `flowengine` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import baselines, flow, naive, scale
from benchmarks.common import (
    Plan,
    Result,
    Sample,
    Stopwatch,
    engine_sqlite_sync,
    pg_available,
    pg_base_url,
    pg_schema,
    pg_settings,
    throughput,
)

NOTE_INSTANCES = 100  # `note` fires go round-robin over this many instances


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        memory = "?"
    return (f"{os.cpu_count()} CPUs ({cpu}), {memory} RAM, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


MovesRunner = Callable[[Path, int, Callable[[list[str]], list[baselines.Move]], str], Sample]


def best_of(part: str, case: str, detail: str, runs: Sequence[Sample]) -> Result:
    """The round with the highest rate; the detail gives its CPU time and lists all rounds when there were several."""
    ops, seconds, cpu = max(runs, key=lambda r: r[0] / r[1])
    notes = [f"CPU {cpu / ops * 1e6:,.0f} µs/op"] + ([detail] if detail else [])
    if len(runs) > 1:
        notes.append("rounds " + "/".join(f"{o / s:,.0f}" for o, s, _ in runs))
    return throughput(part, case, "sqlite", ops, seconds, "; ".join(notes), cpu_us=cpu / ops * 1e6)


def revision() -> str:
    """Which flowengine was measured: the commit, and whether flowengine/ had uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "flowengine"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "flowengine at an unknown revision (no git)"
    changed = len(dirty.splitlines())
    return f"flowengine at {head}" + (f" with {changed} uncommitted file(s) in flowengine/" if changed else "")


def load_average() -> str:
    """Other processes on the machine skew every number: the report says how busy it was."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


class Runner:
    def __init__(self, plan: Plan, directory: Path, sync: str) -> None:
        self.plan, self.directory, self.sync = plan, directory, sync
        self.results: list[Result] = []
        self.notes: list[str] = []
        self.failed: list[str] = []

    def workdir(self, name: str) -> Path:
        path = self.directory / name
        path.mkdir()
        return path

    def part(self, title: str, fn: Callable[[], list[Result] | Result | str]) -> None:
        """Run one part; a part that raises is reported (and fails the run) without hiding the others."""
        log(f"{title} (load average {load_average()})")
        with Stopwatch() as sw:
            try:
                out = fn()
            except Exception as exc:
                traceback.print_exc()
                self.failed.append(f"{title}: {type(exc).__name__}: {exc}")
                log(f"  FAILED: {type(exc).__name__}: {exc}")
                return
        if isinstance(out, str):
            self.notes.append(f"{title}: skipped: {out}")
            log(f"  skipped: {out}")
            return
        self.results.extend(out if isinstance(out, list) else [out])
        log(f"  {sw.seconds:.1f} s")

    def sides(self) -> list[tuple[str, str, MovesRunner, int]]:
        p = self.plan
        return [("1 raw", "raw sqlite3", baselines.raw_sqlite, p.note_fires),
                ("2 naive", "naive Machine+ORM", naive.naive_sqlite, p.naive_fires),
                ("3 flowengine", "flowengine fire", flow.fire_cases, p.note_fires)]

    def comparisons(self) -> list[Result]:
        """raw, naive and flowengine on the same two workloads, in interleaved rounds; best round kept.

        Interleaving makes a burst of load from other processes hit every side alike, and the best round
        (as timeit reports) is the least disturbed one; the detail column lists every round.
        """
        p = self.plan
        samples: dict[tuple[str, str, str], list[Sample]] = defaultdict(list)
        for r in range(p.rounds):
            for part, name, run, fires in self.sides():
                def notes(ids: list[str], count: int = fires) -> list[baselines.Move]:
                    return baselines.note_moves(ids, count + baselines.WARMUP_MOVES)
                samples[(part, f"{name}: `note` self-loop with payload", "")].append(
                    run(self.workdir(f"{part}-note-{r}"), NOTE_INSTANCES, notes, self.sync))
                samples[(part, f"{name}: assign → resolve → approve",
                         "`if`, 2 guards, actions" if part.startswith("3") else "same transitions")].append(
                    run(self.workdir(f"{part}-path-{r}"), p.path_instances, baselines.path_moves, self.sync))
        return [best_of(part, case, detail, runs) for (part, case, detail), runs in samples.items()]

    def fsync_pair(self) -> list[Result] | str:
        """raw and flowengine `note` with an fsync per commit, when the run's level is not already FULL."""
        if self.sync in ("FULL", "EXTRA"):
            return f"the run is already at synchronous={self.sync}"
        if engine_sqlite_sync(self.workdir("full-probe"), "FULL") != "FULL":
            return "this flowengine can't be asked for synchronous=FULL"
        fires = self.plan.note_fires // (4 if self.plan.quick else 2) + baselines.WARMUP_MOVES
        samples: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for r in range(self.plan.rounds):
            for part, name, run in (("1 raw", "raw sqlite3", baselines.raw_sqlite),
                                    ("3 flowengine", "flowengine fire", flow.fire_cases)):
                samples[(part, f"{name}: `note`, synchronous=FULL")].append(
                    run(self.workdir(f"{part}-full-{r}"), NOTE_INSTANCES,
                        lambda ids: baselines.note_moves(ids, fires), "FULL"))
        return [best_of(part, case, "fsync per commit", runs) for (part, case), runs in samples.items()]

    def sqlite_parts(self) -> None:
        p = self.plan
        self.part("1-3 raw, naive and flowengine fire", self.comparisons)
        self.part("3 flowengine repair_service", lambda: flow.repair_service(
            self.workdir("repair"), 5 if p.quick else 100, self.sync))
        self.part("1+3 with synchronous=FULL", self.fsync_pair)
        self.part("6 start and tick", lambda: flow.start_and_tick(self.workdir("tick"), p.starts, p.timers,
                                                                  self.sync, p.rounds))
        self.part("6+7 big store and scale", self.big_store)

    def big_store(self) -> list[Result]:
        p = self.plan
        work = self.workdir("scale")
        small_url = scale.prepare(work / "small.db", p.store_small)
        with Stopwatch() as sw:
            large_url = scale.prepare(work / "large.db", p.store_large)
        log(f"  bulk-inserted {p.store_large:,} instances in {sw.seconds:.1f} s")
        with flow.ticket_engine(large_url, synchronous=self.sync) as engine:
            listed = flow.list_cases(engine, p.store_large)
        smalls, larges = [], []
        for _ in range(p.rounds):  # alternate, so load from elsewhere hits both sizes alike
            smalls.append(scale.run_probe(small_url, p.store_small, p.scale_fires, self.sync))
            larges.append(scale.run_probe(large_url, p.store_large, p.scale_fires, self.sync))
        return listed + scale.scale_results((p.store_small, scale.least_disturbed(smalls)),
                                            (p.store_large, scale.least_disturbed(larges)), p.scale_fires)

    def memory_parts(self) -> None:
        p = self.plan
        self.part("5 in-memory decide", lambda: flow.decide_cases(self.workdir("decide"), p.decisions))
        self.part("5 Machine constructions", lambda: flow.machine_count(self.workdir("machines"), p.starts))

    def pg_parts(self) -> None:
        from benchmarks import pg

        base = pg_base_url()
        why = pg_available(base)
        if why is not None:
            self.notes.append(f"4 postgresql: skipped: {why}")
            log(f"4 postgresql: skipped: {why}")
            return
        self.notes.append(pg_settings(base))

        def run() -> list[Result]:
            with pg_schema(base) as (url, schema):
                return pg.pg_results(url, base, schema, self.plan.workers, self.plan.pg_instances, self.plan.pg_fires,
                                     self.plan.rounds)
        self.part("4 postgresql workers", run)


def fmt(r: Result) -> str:
    if r.unit == "ops/s":
        return f"{r.value:,.0f} ops/s"
    if r.unit in ("µs/decision", "µs") and r.value < 100:
        return f"{r.value:,.2f} {r.unit}"
    if r.unit == "machines":
        return f"{r.value:.0f}"
    return f"{r.value:,.1f} {r.unit}"


def find(results: Sequence[Result], part: str, starts: str) -> Result | None:
    return next((r for r in results if r.part.startswith(part) and r.case.startswith(starts)), None)


def ratios(results: Sequence[Result], plan: Plan) -> dict[str, float]:
    out: dict[str, float] = {}

    def ratio(key: str, top: Result | None, bottom: Result | None) -> None:
        if top is not None and bottom is not None and bottom.value:
            out[key] = top.value / bottom.value

    fe_note, fe_path = find(results, "3", "flowengine fire: `note` self"), find(results, "3", "flowengine fire: assign")
    raw_note = find(results, "1", "raw sqlite3: `note` self")
    for key, top, bottom in (("sqlite_vs_raw", fe_note, raw_note),
                             ("sqlite_path_vs_raw", fe_path, find(results, "1", "raw sqlite3: assign")),
                             ("sqlite_vs_naive", fe_note, find(results, "2", "naive Machine+ORM: `note` self")),
                             ("sqlite_path_vs_naive", fe_path, find(results, "2", "naive Machine+ORM: assign")),
                             # The ceiling of the one above: what the limit itself reaches against naive.
                             ("raw_vs_naive", raw_note, find(results, "2", "naive Machine+ORM: `note` self"))):
        ratio(key, top, bottom)
        if top is not None and bottom is not None and "cpu_us" in top.extra and "cpu_us" in bottom.extra:
            out[f"{key}_cpu"] = bottom.extra["cpu_us"] / top.extra["cpu_us"]  # work per fire, inverted
    ratio("sqlite_full_vs_raw_full", find(results, "3", "flowengine fire: `note`, synchronous=FULL"),
          find(results, "1", "raw sqlite3: `note`, synchronous=FULL"))
    for w in plan.workers:
        flow_pg = find(results, "4", f"flowengine fire `note`, {w} worker")
        if flow_pg is not None:
            out[f"pg_vs_raw_{w}w"] = flow_pg.extra["vs_raw"]
            out[f"pg_fires_per_s_{w}w"] = flow_pg.value
    for key, part, case in (("decide_simple_us", "5", "decide: simple"), ("decide_guarded_us", "5", "decide: guards"),
                            ("machines_built", "5", "transitions.Machine"), ("start_per_s", "6", "start"),
                            ("tick_timers_per_s", "6", "tick"), ("list_page_ms", "6", "list(process")):
        found = find(results, part, case)
        if found is not None:
            out[key] = found.value
    small = find(results, "7", f"fire p50 with {plan.store_small:,} ")
    large = find(results, "7", f"fire p50 with {plan.store_large:,} ")
    if small is not None and large is not None:
        out["p50_large_vs_small"] = large.value / small.value
        out["p99_large_vs_small"] = large.extra["p99_us"] / small.extra["p99_us"]
        out["rss_large_vs_small"] = large.extra["rss_mb"] / small.extra["rss_mb"]
        out["raw_p50_large_vs_small"] = large.extra["raw_p50_us"] / small.extra["raw_p50_us"]
        out["raw_p99_large_vs_small"] = large.extra["raw_p99_us"] / small.extra["raw_p99_us"]
    return out


def report(results: Sequence[Result], notes: Sequence[str], header: str, rates: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(160, Console().width), highlight=False)
    table = Table(title=header, title_justify="left")
    for name, justify in (("part", "left"), ("case", "left"), ("db", "left"), ("ops", "right"),
                          ("result", "right"), ("detail", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        table.add_row(r.part, r.case, r.db, f"{r.ops:,}", fmt(r), r.detail)
    console.print(table)
    for note in notes:
        console.print(f"note: {note}")
    print(ratio_line(rates), flush=True)


# (target, ratio keys, at least (True) or at most (False), bound): the targets, checked on the ratios.
TARGETS: list[tuple[str, tuple[str, ...], bool, float]] = [
    ("flowengine on SQLite ≥ 0.5× raw sqlite3 (`note`; wall, CPU)", ("sqlite_vs_raw", "sqlite_vs_raw_cpu"), True,
     0.5),
    ("flowengine on SQLite ≥ 8× naive (`note`; wall, CPU)", ("sqlite_vs_naive", "sqlite_vs_naive_cpu"), True, 8.0),
    ("PostgreSQL ≥ 0.5× raw psycopg at each worker count", ("pg_vs_raw_1w", "pg_vs_raw_2w", "pg_vs_raw_4w"), True,
     0.5),
    ("in-memory decision ≤ 10 µs (simple; guards+actions)", ("decide_simple_us", "decide_guarded_us"), False, 10.0),
    ("fire latency with the large store ≤ 1.3× the small one (p50; p99)",
     ("p50_large_vs_small", "p99_large_vs_small"), False, 1.3),
    ("memory flat (RSS large / small ≤ 1.1)", ("rss_large_vs_small",), False, 1.1),
    ("tick ≥ 5,000 timers/s on SQLite", ("tick_timers_per_s",), True, 5000.0),
    ("no `transitions.Machine` built by starts and fires", ("machines_built",), False, 0.0),
]


def target_rows(rates: dict[str, float]) -> list[str]:
    rows = ["| target | measured | met |", "|---|---:|---|"]
    for text, keys, at_least, bound in TARGETS:
        found = [(k, rates[k]) for k in keys if k in rates]
        if not found:
            continue
        met = all(v >= bound if at_least else v <= bound for _, v in found)
        shown = "; ".join(f"{v:,.2f}" if v < 100 else f"{v:,.0f}" for _, v in found)
        rows.append(f"| {text} | {shown} | {'yes' if met else 'no'} |")
        if keys[0] == "sqlite_vs_naive" and "raw_vs_naive" in rates:
            ceiling = "; ".join(f"{rates[k]:,.2f}" for k in ("raw_vs_naive", "raw_vs_naive_cpu") if k in rates)
            rows.append(f"| (for scale: raw sqlite3 against naive, the most any engine reaches here) | {ceiling} | |")
    return rows


def markdown(results: Sequence[Result], notes: Sequence[str], header: str, rates: dict[str, float]) -> str:
    """The results as the Markdown that docs/benchmarks.md's results section holds."""
    lines = [header, "", *(f"- {note}" for note in notes)]
    lines += ["", "| part | case | db | ops | result | detail |", "|---|---|---|---:|---:|---|"]
    lines += [f"| {r.part} | {r.case} | {r.db} | {r.ops:,} | {fmt(r)} | {r.detail} |" for r in results]
    lines += ["", "```text", ratio_line(rates), "```", "", "Against the targets of the issue:", ""]
    lines += [*target_rows(rates), ""]
    return "\n".join(lines)


def ratio_line(rates: dict[str, float]) -> str:
    return "ratios: " + " ".join(f"{k}={v:.2f}" if v < 100 else f"{k}={v:.0f}" for k, v in rates.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="every part at a small size (under 30 s)")
    parser.add_argument("--size", type=int, default=None,
                        help="instances in the large store (default 1,000,000; --quick 50,000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--workers", default="1,2,4", help="PostgreSQL worker counts, e.g. 1,2,4")
    parser.add_argument("--sqlite-sync", choices=("engine", "NORMAL", "FULL"), default="engine",
                        help="SQLite synchronous level for flowengine and the baselines (default: the engine's)")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the SQLite files go (default: system temp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the results here as Markdown (the results section of docs/benchmarks.md)")
    args = parser.parse_args(argv)
    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    plan = Plan.make(quick=args.quick, size=args.size, workers=workers)
    header = f"flowengine benchmarks ({'quick' if plan.quick else 'full'}) — {machine()}"
    log(header)
    load_before = load_average()
    with Stopwatch() as total, tempfile.TemporaryDirectory(prefix="flowengine-bench-", dir=args.tmpdir) as tmp:
        sync = engine_sqlite_sync(Path(tmp), None if args.sqlite_sync == "engine" else args.sqlite_sync)
        log(f"SQLite: WAL, synchronous={sync} for flowengine and the baselines")
        runner = Runner(plan, Path(tmp), sync)
        command = " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
        runner.notes.append(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `{command}`")
        runner.notes.append(revision())
        runner.notes.append(f"SQLite {sqlite3.sqlite_version}: WAL, synchronous={sync}, BEGIN IMMEDIATE, for "
                            "flowengine and both baselines")
        if args.db in ("sqlite", "both"):
            runner.sqlite_parts()
        if args.db in ("postgresql", "both"):
            runner.pg_parts()
        runner.memory_parts()
    order = {p: i for i, p in enumerate("1234567")}
    results = sorted(runner.results, key=lambda r: order.get(r.part[0], 9))
    runner.notes.append(f"total run time {total.seconds:.1f} s; load average at start {load_before}, "
                        f"at end {load_average()}")
    runner.notes += [f"FAILED {failure}" for failure in runner.failed]
    rates = ratios(results, plan)
    if args.json is not None:
        document = {"machine": machine(), "plan": dataclasses.asdict(plan), "notes": runner.notes, "ratios": rates,
                    "results": [dataclasses.asdict(r) for r in results]}
        args.json.write_text(json.dumps(document, ensure_ascii=False, indent=2))
    if args.markdown is not None:
        args.markdown.write_text(markdown(results, runner.notes, header, rates))
    report(results, runner.notes, header, rates)
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
