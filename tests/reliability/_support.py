"""What the reliability tests share: actors, engines on the fixture processes, the consistency check of
one instance, subprocesses that can be killed, and the `[reliability]` figure lines.

Imports flowengine only through its public API, plus the store's table definitions for counting rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as SAEngine
from sqlalchemy import event

from flowengine import Actor, Clock, Engine
from flowengine.store.database import make_engine
from tests.conftest import FIXTURES, ROOT, fixture_hooks

CLERK = Actor("c1", {"clerk"})
ENGINEER = Actor("e1", {"engineer"})
MANAGER = Actor("m1", {"manager"})
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Shanghai


def db_kind(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def open_engine(url: str | SAEngine, *, clock: Clock | None = None) -> Engine:
    return Engine(url, processes=FIXTURES, hooks=fixture_hooks(), clock=clock)


def impatient_db(url: str, wait_ms: int) -> SAEngine:
    """flowengine's own SQLAlchemy engine for `url`, but waiting at most `wait_ms` for a lock.

    make_engine sets SQLite's busy timeout (30 s) in a "connect" listener; ours is registered after it,
    so it runs after it and wins. On PostgreSQL the equivalent is `lock_timeout`.
    """
    db = make_engine(url)

    @event.listens_for(db, "connect")
    def _wait_less(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        if db.dialect.name == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout={wait_ms}")
        else:
            cursor.execute(f"SET lock_timeout = {wait_ms}")
            dbapi_conn.commit()  # a SET inside a transaction that is rolled back would be undone
        cursor.close()

    return db


def report(test: str, url: str, **figures: Any) -> None:
    """Print the figures a test reached (run pytest with -s to see them); also append them as JSON lines
    to $FLOWENGINE_RELIABILITY_LOG when set, which is how docs/reliability.md was filled in."""
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n[reliability] {test} [{db_kind(url)}]: {line}")
    log = os.environ.get("FLOWENGINE_RELIABILITY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, "db": db_kind(url), **figures}, default=str) + "\n")


def consistency_problems(engine: Engine, instance_id: str) -> list[str]:
    """Everything wrong with one stored instance; [] when its row, history, timers and outbox agree."""
    inst = engine.get(instance_id)
    history = engine.history(instance_id)
    compiled = engine.compiled(inst.process, inst.version)
    spec = compiled.spec
    where = f"{instance_id} ({inst.process} in {inst.state}, revision {inst.revision})"
    problems: list[str] = []
    if inst.state not in spec.states:
        problems.append(f"{where}: state is not in the definition")
    seqs = [h.seq for h in history]
    if seqs != list(range(1, len(history) + 1)):
        problems.append(f"{where}: history seq not contiguous: {seqs}")
    if inst.revision != len(history):
        problems.append(f"{where}: revision != {len(history)} history entries")
    if not history or history[0].event != "start" or history[0].source is not None:
        problems.append(f"{where}: history does not begin with start")
    elif history[-1].target != inst.state:
        problems.append(f"{where}: last history target is {history[-1].target}")
    for before, after in itertools.pairwise(history):
        if after.source != before.target:
            problems.append(f"{where}: seq {after.seq} leaves {after.source}, seq {before.seq} entered {before.target}")
    final = inst.state in compiled.finals
    if final == (inst.status == "running"):
        problems.append(f"{where}: status {inst.status} does not fit the state")
    for timer in inst.timers:
        if inst.status != "running" or inst.state not in spec.timers[timer.timer].scope:
            problems.append(f"{where}: timer {timer.timer} pending outside its scope")
    for message in engine.outbox(instance_id):
        if message["seq"] not in seqs:
            problems.append(f"{where}: outbox message of seq {message['seq']} without its history entry")
    return problems


class Child:
    """A `python -m tests.reliability._child MODE` subprocess; its stdout lines arrive on a queue."""

    def __init__(self, mode: str, args: dict[str, Any], stderr_file: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.stderr_file = stderr_file
        self._stderr = stderr_file.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability._child", mode, json.dumps(args)],
                                     cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, *, count: int = 1, timeout: float = 60.0) -> list[str]:
        """Wait for `count` stdout lines starting with `prefix`; fail with the child's stderr if it ends first."""
        found: list[str] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {count}× '{prefix}' from the child in {timeout}s; "
                                     f"stderr: {self.stderr_tail()}") from None
            if line is None:
                raise AssertionError(f"child ended (code {self.proc.wait()}) after {len(found)}× '{prefix}'; "
                                     f"stderr: {self.stderr_tail()}")
            if line.startswith(prefix):
                found.append(line)
        return found

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> int:
        """SIGKILL: no cleanup, no rollback by the process itself."""
        os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout=30)
        self._stderr.close()
        return code

    def finish(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._stderr.close()
        return code

    def stderr_tail(self) -> str:
        self._stderr.flush()
        return self.stderr_file.read_text(errors="replace")[-2000:]


def all_ids(engine: Engine, processes: Sequence[str] = ("ticket", "subtask")) -> list[str]:
    return [i.id for p in processes for i in engine.list(process=p)]
