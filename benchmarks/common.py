"""What every benchmark part shares: sizes, actors, results, timing, memory, and database settings.

The SQLite settings here are the ones `flowengine/store/database.py` gives its own connections (WAL,
busy timeout, foreign keys, BEGIN IMMEDIATE for writes, and the same `synchronous` level, read from a live
engine connection or chosen with --sqlite-sync), so the baselines pay for the same durability as the
engine. Imports only the standard library and flowengine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import os
import re
import resource
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/run.py` puts benchmarks/, not the repo, on the path
    sys.path.insert(0, str(ROOT))

from flowengine import Actor, HookRegistry  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "processes"
PROCESSES = ROOT / "processes"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Shanghai
CLERK = Actor("c1", {"clerk"})
ENGINEER = Actor("e1", {"engineer"})
MANAGER = Actor("m1", {"manager"})
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SQLITE_BUSY_MS = 30_000


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each part does; `--quick` keeps the whole run under 30 seconds."""

    quick: bool
    note_fires: int  # self-loop fires per SQLite engine case
    path_instances: int  # instances walked assign → resolve → approve
    naive_fires: int
    decisions: int  # in-memory `decide` calls per case
    starts: int  # plain starts, and starts checked for Machine constructions
    timers: int  # instances with a due timer for one tick
    store_small: int
    store_large: int  # instances bulk-inserted for `list` and the scale test
    scale_fires: int  # fires whose latency is sampled at each store size
    pg_fires: int  # fires per PostgreSQL worker
    pg_instances: int  # instances per PostgreSQL worker
    workers: tuple[int, ...]
    rounds: int  # interleaved rounds of the SQLite comparisons and of the PostgreSQL runs (best one kept)

    @classmethod
    def make(cls, *, quick: bool, size: int | None, workers: Sequence[int]) -> Plan:
        if quick:
            return cls(True, note_fires=300, path_instances=40, naive_fires=150, decisions=2_000, starts=100,
                       timers=300, store_small=1_000, store_large=size or 50_000, scale_fires=200, pg_fires=100,
                       pg_instances=10, workers=tuple(workers), rounds=1)
        return cls(False, note_fires=3_000, path_instances=500, naive_fires=1_000, decisions=10_000, starts=1_000,
                   timers=5_000, store_small=1_000, store_large=size or 1_000_000, scale_fires=2_000,
                   pg_fires=1_000, pg_instances=100, workers=tuple(workers), rounds=5)


@dataclass(slots=True)
class Result:
    """One row of the report. `value` is in `unit`; ops/s rows also carry per-op latency in `detail`."""

    part: str
    case: str
    db: str
    ops: int
    value: float
    unit: str
    detail: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def throughput(part: str, case: str, db: str, ops: int, seconds: float, detail: str = "",
               **extra: float) -> Result:
    rate = ops / seconds if seconds > 0 else float("inf")
    note = f"{1e6 / rate:,.0f} µs/op" if rate else ""
    return Result(part, case, db, ops, rate, "ops/s", f"{note}; {detail}" if detail else note, dict(extra))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; values need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.seconds` (wall) and `sw.cpu` (this process's CPU time).

    CPU time is what the code itself costs: it leaves out waiting for the disk and for a CPU taken by other
    processes, so it is the steadier figure on a busy machine; wall time is what a caller sees.
    """

    def __init__(self) -> None:
        self.seconds = self.cpu = 0.0
        self._start = self._cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._start, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu = time.process_time() - self._cpu


Sample = tuple[int, float, float]  # operations, wall seconds, CPU seconds


def rss_mb() -> float:
    """Resident set size now (VmRSS), in MiB; falls back to the peak from getrusage off Linux."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def fixture_hooks() -> HookRegistry:
    """The hooks of tests/fixtures/processes (defined once, in tests/fixture_hooks_module.py)."""
    from tests.fixture_hooks_module import fixture_hooks as fixture

    return fixture()


# --- SQLite ---------------------------------------------------------------------------------------

SYNC_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def sqlite_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A raw connection with flowengine's settings; the caller issues BEGIN IMMEDIATE / COMMIT itself."""
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_MS / 1000, isolation_level=None)
    apply_sqlite_settings(conn, synchronous)
    return conn


def apply_sqlite_settings(conn: Any, synchronous: str) -> None:
    """Works on a sqlite3 DBAPI connection (also the one SQLAlchemy wraps)."""
    cursor = conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.close()


def sqlite_engine(url: str, synchronous: str | None) -> Any:
    """flowengine's own SQLAlchemy engine for `url`, at `synchronous` if given and the store supports choosing."""
    from flowengine.store.database import make_engine

    if synchronous is None or "sqlite_synchronous" not in inspect.signature(make_engine).parameters:
        return make_engine(url)
    return make_engine(url, sqlite_synchronous=synchronous)


def engine_sqlite_sync(directory: Path, requested: str | None = None) -> str:
    """The `synchronous` level flowengine's connections actually run with (default, or `requested`)."""
    engine = sqlite_engine(f"sqlite:///{directory / 'sync-probe.db'}", requested)
    try:
        with engine.connect() as conn:
            level = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()
    return SYNC_LEVELS.get(int(level or 0), str(level))


def sqlite_time(moment: dt.datetime) -> str:
    """How `UTCDateTime` stores an instant on SQLite: naive UTC text with microseconds."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


# --- PostgreSQL -----------------------------------------------------------------------------------

def pg_base_url() -> str:
    return os.environ.get("FLOWENGINE_BENCH_PG_URL") or os.environ.get("FLOWENGINE_TEST_PG_URL") or DEFAULT_PG_URL


def pg_connect_kwargs(url: str, schema: str | None = None) -> dict[str, Any]:
    """psycopg.connect() keywords for an SQLAlchemy URL, optionally pinned to `schema`."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    kwargs: dict[str, Any] = {"host": parsed.host or "127.0.0.1", "port": parsed.port or 5432,
                              "dbname": parsed.database, "user": parsed.username}
    if parsed.password:
        kwargs["password"] = parsed.password
    if schema is not None:
        kwargs["options"] = f"-csearch_path={schema}"
    return kwargs


def pg_available(url: str) -> str | None:
    """None if PostgreSQL answers at `url`, else why not (one line)."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg not installed ({exc})"
    try:
        with psycopg.connect(**pg_connect_kwargs(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: skip the PostgreSQL parts, say why
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def pg_schema(url: str) -> contextlib.AbstractContextManager[tuple[str, str]]:
    """A fresh schema for one run: yields (SQLAlchemy URL pinned to it, schema name); dropped afterwards."""
    from flowengine.store.database import scratch_schema

    return scratch_schema(url, "fe_bench")


def pg_settings(url: str) -> str:
    import psycopg

    with psycopg.connect(**pg_connect_kwargs(url)) as conn:
        rows = [conn.execute(f"SHOW {name}").fetchone() for name in ("server_version", "synchronous_commit",
                                                                     "fsync")]
    version, sync, fsync = (r[0] if r else "?" for r in rows)
    return f"PostgreSQL {version}, synchronous_commit={sync}, fsync={fsync}"
