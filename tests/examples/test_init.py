"""`flowengine init`: the scaffold validates, its scenario and README commands work, it never overwrites."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowengine.cli import main
from flowengine.scaffold import LAYOUT, TEMPLATES

PREFIX = ["python", "-m", "flowengine"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def fresh_hooks_module() -> Iterator[None]:
    """Each scaffold has its own `hooks.py`: never let one test's import stand in for another's."""
    sys.modules.pop("hooks", None)
    yield
    sys.modules.pop("hooks", None)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_hooks_module: None) -> Path:
    """`flowengine init expense-desk`, then work from inside it as its README says."""
    folder = tmp_path / "expense-desk"
    result = invoke("init", str(folder))
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))  # what `python -m flowengine` does for the current folder
    for var in ("FLOWENGINE_DB", "FLOWENGINE_PROCESSES", "FLOWENGINE_HOOKS", "FLOWENGINE_NOW"):
        monkeypatch.delenv(var, raising=False)
    return folder


def test_init_writes_the_layout_named_after_the_folder(project: Path) -> None:
    written = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert written == ["README.md", "hooks.py", "processes/expense_desk.yaml", "scenarios/expense_desk-1.yaml"]
    text = (project / "processes" / "expense_desk.yaml").read_text(encoding="utf-8")
    assert "process: expense_desk" in text and 'title: {zh: "expense_desk 审批", en: "Expense desk"}' in text
    assert "$" not in text + (project / "README.md").read_text(encoding="utf-8")


def test_scaffold_validates_and_its_scenario_passes(project: Path) -> None:
    db = f"sqlite:///{project.parent / 'scaffold.db'}"
    validated = invoke("--db", db, "--hooks", "hooks", "validate")
    assert validated.exit_code == 0, validated.output
    assert "ok: 1 process valid" in validated.output
    tested = invoke("--db", db, "--hooks", "hooks", "test", "-v", "scenarios/")
    assert tested.exit_code == 0, tested.output
    assert "scenarios/expense_desk-1.yaml::expense_desk-1 PASSED" in tested.output
    assert "1 passed, 0 failed" in tested.output


def test_the_sample_process_uses_the_scaffolds_hooks(project: Path) -> None:
    result = invoke("validate")  # without --hooks hooks
    assert result.exit_code == 1
    assert "within_approval_limit" in result.output and "record_approval" in result.output


def readme_commands(readme: Path) -> list[list[str]]:
    lines = [line for line in readme.read_text(encoding="utf-8").splitlines() if line.startswith("python -m")]
    return [shlex.split(line, comments=True) for line in lines]


def test_every_readme_command_works_from_the_folder(project: Path) -> None:
    commands = readme_commands(project / "README.md")
    assert len(commands) == 8 and all(c[:3] == PREFIX for c in commands)
    outputs = {}
    for command in commands:
        args = command[3:]
        result = invoke(*args)
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
        outputs[next(a for a in args if a in main.commands)] = result.output
    assert '"approved_by": "bo"' in outputs["show"]
    assert "stateDiagram" in outputs["render"]
    assert (project / "expense_desk.db").exists()


def test_the_guard_refuses_an_amount_over_the_limit(project: Path) -> None:
    db = ["--db", "sqlite:///limits.db", "--hooks", "hooks"]
    assert invoke(*db, "start", "expense_desk", "--role", "requester", "--id", "R-9",
                  "--data", '{"subject": "Server", "amount": "9000"}').exit_code == 0
    assert invoke(*db, "fire", "R-9", "start_review", "--role", "approver").exit_code == 0
    result = CliRunner().invoke(main, [*db, "fire", "R-9", "approve", "--role", "approver"])
    assert result.exit_code == 4
    assert "guard 'within_approval_limit' rejected it: 9000 is over the approval limit of 5000" in result.output


def test_a_second_init_refuses_and_changes_nothing(project: Path) -> None:
    hooks = project / "hooks.py"
    hooks.write_text("# my own work\n", encoding="utf-8")
    result = invoke("init", str(project))
    assert result.exit_code == 1
    assert f"Error: {project} is not empty" in result.output
    assert hooks.read_text(encoding="utf-8") == "# my own work\n"


def test_init_into_an_existing_empty_folder_with_a_chosen_name(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("init", str(tmp_path / "empty"), "--name", "leave_request")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "empty" / "processes" / "leave_request.yaml").is_file()
    assert (tmp_path / "empty" / "scenarios" / "leave_request-1.yaml").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["2024 plans"], "can't make a process id from the folder name '2024 plans': pass --name"),
    (["ok", "--name", "Leave-Request"], "'Leave-Request' is not a process id"),
])
def test_bad_names_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("init", str(tmp_path / args[0]), *args[1:])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / args[0]).exists()


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x", encoding="utf-8")
    result = invoke("init", str(tmp_path / "taken"))
    assert result.exit_code == 2 and "is a file" in result.output


def test_templates_are_package_data() -> None:
    assert sorted(t for t, _ in LAYOUT) == sorted(p.name for p in TEMPLATES.iterdir() if p.name.endswith(".tmpl"))
