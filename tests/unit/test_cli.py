"""The CLI through click's runner (fast, precise) and through a real subprocess (what users run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowengine.cli import main
from tests.conftest import FIXTURES, ROOT

HOOKS_MODULE = "tests.fixture_hooks_module"


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--processes", str(FIXTURES), "--hooks", HOOKS_MODULE]

    def invoke(*args: str, now: str | None = None):  # type: ignore[no-untyped-def]
        extra = ["--now", now] if now else []
        return runner.invoke(main, [*base, *extra, *args], catch_exceptions=False)
    return invoke


def test_start_fire_show_history_as_json(run) -> None:  # type: ignore[no-untyped-def]
    result = run("start", "ticket", "--data", '{"customer": "A"}', "--role", "clerk", "--id", "T-1", "--json")
    assert result.exit_code == 0, result.output
    inst = json.loads(result.output)
    assert set(inst) >= {"id", "process", "version", "state", "status", "data", "revision", "allowed_events"}
    assert (inst["id"], inst["state"], inst["revision"]) == ("T-1", "open", 1)
    result = run("fire", "T-1", "assign", "--data", '{"engineer": "e1"}', "--role", "clerk", "--actor", "li")
    assert result.exit_code == 0, result.output
    assert "open (Open) → assigned (Assigned)" in result.output
    shown = json.loads(run("show", "T-1", "--json").output)
    assert (shown["state"], shown["revision"], shown["allowed_events"]) == ("assigned", 2, [
        "resolve", "note", "park", "delegate", "cancel"])
    entries = json.loads(run("history", "T-1", "--json").output)
    assert [set(e) >= {"seq", "event", "from", "to", "actor", "at", "payload"} for e in entries] == [True, True]
    assert entries[1]["actor"] == {"id": "li", "roles": ["clerk"]} and entries[1]["payload"] == {"engineer": "e1"}
    listed = json.loads(run("list", "--state", "assigned", "--json").output)
    assert [i["id"] for i in listed] == ["T-1"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["fire", "nope", "assign", "--role", "clerk"], 3, "error: unknown instance 'nope'"),
    (["fire", "T-1", "approve", "--role", "manager"], 4, "error: can't fire 'approve' on T-1: it is in 'open'"),
    (["fire", "T-1", "assign", "--role", "engineer", "--data", '{"engineer": "e"}'], 4, "allowed roles: clerk"),
    (["fire", "T-1", "assign", "--role", "clerk", "--data", "{bad"], 2, "not valid JSON"),
    (["fire", "T-1", "assign", "--role", "clerk", "--data", "[1]"], 2, "must be a JSON object"),
    (["fire", "T-1", "assign", "--role", "clerk", "--data", '{"engineer": 5}'], 6, "expected text"),
    (["fire", "T-1", "assign", "--role", "clerk", "--data", '{"engineer": "e"}', "--expect-revision", "7"], 5,
     "expected revision 7"),
    (["start", "nope"], 3, "unknown process 'nope'"),
    (["start", "ticket", "--id", "T-1", "--role", "clerk", "--data", '{"customer": "B"}'], 5, "already exists"),
])
def test_errors_are_one_line_with_documented_exit_codes(run, args, code, message) -> None:  # type: ignore[no-untyped-def]
    assert run("start", "ticket", "--data", '{"customer": "A"}', "--role", "clerk", "--id", "T-1").exit_code == 0
    result = run(*args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_validate_reports_locations_and_exit_1(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = ROOT / "tests" / "bad" / "unknown_role.yaml"
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:16:44: transitions[0].roles[0]: unknown role 'clark'" in result.output
    ok = run("validate")
    assert ok.exit_code == 0 and "ok: 3 processes valid" in ok.output


def test_schema_is_json_schema_of_the_format(run) -> None:  # type: ignore[no-untyped-def]
    schema = json.loads(run("schema").output)
    assert schema["title"] == "ProcessSpec"
    assert {"process", "states", "events", "transitions", "timers"} <= set(schema["properties"])


def test_tick_with_fixed_clock(run) -> None:  # type: ignore[no-untyped-def]
    run("start", "ticket", "--data", '{"customer": "A", "due_at": "2026-03-02T12:00"}', "--role", "clerk",
        "--id", "T-2", now="2026-03-02T09:00")
    assert run("tick", now="2026-03-02T11:59").output.strip().endswith("0 timers fired at 2026-03-02T11:59:00+08:00")
    result = run("tick", "--json", now="2026-03-02T12:00")
    [fired] = json.loads(result.output)
    assert (fired["instance"], fired["timer"], fired["outcome"]) == ("T-2", "deadline", "escalated")
    overdue = json.loads(run("list", "--overdue", "--json", now="2026-03-02T12:00").output)
    assert [i["id"] for i in overdue] == ["T-2"]
    run("fire", "T-2", "cancel", "--data", '{"reason": "x"}', "--role", "clerk", now="2026-03-02T12:01")
    assert json.loads(run("list", "--overdue", "--json", now="2026-03-02T12:01").output) == []


def test_unknown_hook_module_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--processes", str(FIXTURES), "--hooks", "no_such_module_x", "validate"])
    assert result.exit_code == 2 and "can't import hook module 'no_such_module_x'" in result.output


def test_real_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWENGINE_DB": f"sqlite:///{tmp_path / 'p.db'}", "FLOWENGINE_PROCESSES": str(FIXTURES),
           "FLOWENGINE_HOOKS": HOOKS_MODULE, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "flowengine"]
    started = subprocess.run([*cmd, "start", "ticket", "--data", '{"customer": "A"}', "--role", "clerk", "--id",
                              "S-1", "--json"], env=env, capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["state"] == "open"
    refused = subprocess.run([*cmd, "fire", "S-1", "resolve", "--role", "engineer"], env=env, capture_output=True,
                             text=True, check=False)
    assert refused.returncode == 4
    assert refused.stderr.strip().splitlines() == [
        "error: can't fire 'resolve' on S-1: it is in 'open'; allowed: assign, note, cancel"]
