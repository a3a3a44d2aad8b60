"""Bad input at the command line that tests/unit/test_cli.py does not cover: unusable databases, hostile
JSON and hostile process files. Each must end in a one-line `error:` (or file:line:col lines) with its
documented exit code, never a traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowengine.cli import main
from tests.conftest import FIXTURES

HOOKS = "tests.fixture_hooks_module"
SUBTASK = (FIXTURES / "subtask.yaml").read_text(encoding="utf-8")


def run(*args: str, db: str) -> Result:
    return CliRunner().invoke(main, ["--db", db, "--processes", str(FIXTURES), "--hooks", HOOKS, *args])


def clean(result: Result, code: int) -> list[str]:
    """The output lines, after checking the command ended on purpose with `code` and printed no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    return result.output.strip().splitlines()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("db", ["postgresql://postgres@127.0.0.1:{port}/test", "sqlite:///{missing}/flow.db",
                                "nosuchdb://x"], ids=["pg-closed-port", "sqlite-missing-dir", "unknown-scheme"])
def test_unusable_database_is_one_error_line_exit_7(db: str, tmp_path: Path) -> None:
    url = db.format(port=closed_port(), missing=tmp_path / "no" / "such")
    [line] = clean(run("start", "ticket", "--role", "clerk", "--data", '{"customer": "A"}', db=url), 7)
    assert line.startswith("error: ") and ("database" in line), line


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(("data", "code", "expect"), [
    ('{"customer": ' + DEEP + "}", 2, "--data"),
    ('{"customer": "A\\ud800"}', 6, "customer"),
    ('{"customer": "A", "due_at": "0001-01-01T00:00"}', 6, "due_at"),
    ('{"customer": "A", "amount": 1e999}', 6, "amount"),
], ids=["nested-100000", "lone-surrogate", "datetime-year-1", "infinite-number"])
def test_hostile_json_data_is_refused_cleanly(data: str, code: int, expect: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    lines = clean(run("start", "ticket", "--role", "clerk", "--data", data, db=db), code)
    assert any(expect in line for line in lines), lines
    data_file = tmp_path / "data.json"
    data_file.write_text(data, encoding="utf-8")
    lines = clean(run("start", "ticket", "--role", "clerk", "--data-file", str(data_file), db=db), code)
    assert any(expect.replace("--data", "--data-file") in line for line in lines), lines


HOSTILE_FILES: dict[str, bytes] = {
    "python_tag": SUBTASK.replace("initial: todo", "initial: !!python/object/apply:os.system ['id']").encode(),
    "alias_bomb": (SUBTASK + "parameters:\n  a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))).encode(),
    "nested_10000": (SUBTASK + "parameters: {deep: " + DEEP[:10_000] + DEEP[-10_000:] + "}\n").encode(),
    "not_utf8": SUBTASK.encode("utf-16"),
    "nul_character": SUBTASK.replace("initial: todo", "initial: to\x00do").encode(),
    "five_megabytes": SUBTASK.encode() + b"# " + b"x" * 5_000_000 + b"\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_validate_reports_hostile_files_with_locations_exit_1(case: str, tmp_path: Path) -> None:
    path = tmp_path / "subtask.yaml"
    path.write_bytes(HOSTILE_FILES[case])
    lines = clean(CliRunner().invoke(main, ["--hooks", HOOKS, "validate", str(path)]), 1)
    located = [line for line in lines if line.startswith(f"{path}:")]
    assert located, lines
    for line in located:
        _, row, col, *_ = line.split(":")
        assert int(row) >= 1 and int(col) >= 1, line


@pytest.mark.parametrize("args", [
    ["fire", "T-1", "note", "--role", "clerk", "--actor", "\udcff", "--data", '{"note": "x"}'],
    ["start", "ticket", "--role", "clerk", "--id", "T\udcff", "--data", '{"customer": "A"}'],
    ["show", "T\udcff"],
], ids=["actor", "start-id", "show-id"])
def test_arguments_that_are_not_utf8_end_in_one_error_line(args: list[str], tmp_path: Path) -> None:
    """A non-UTF-8 byte in argv reaches Python as a lone surrogate (surrogateescape)."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    clean(run("start", "ticket", "--role", "clerk", "--id", "T-1", "--data", '{"customer": "A"}', db=db), 0)
    result = run(*args, db=db)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(("error: ", "Error: ")), result.output
