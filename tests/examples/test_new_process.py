"""examples/new_process: the README's commands, run as written, and the RMA scenarios run from Python."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from examples.new_process.hooks import hooks
from flowengine import Actor, Engine, GuardRejected, ManualClock
from flowengine.cli import main
from flowengine.scenario import ScenarioRunner, load_scenario
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "new_process"
README = EXAMPLE / "README.md"
SCENARIOS = sorted((EXAMPLE / "scenarios").glob("*.yaml"))
SHANGHAI = ZoneInfo("Asia/Shanghai")
START = {"customer_name": "Customer D", "order_no": "SO-1", "product": "Headset H2", "purchase_date": "2026-02-20",
         "price": "1500.00", "return_reason": "Wrong model ordered"}


def readme_commands() -> list[list[str]]:
    """Every command line in the README's bash blocks (continuations joined), split as the shell would."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                commands.append(shlex.split(line))
    return commands


@pytest.fixture
def in_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory where the README's relative paths resolve and its rma.db is a throw-away file."""
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for var in ("FLOWENGINE_DB", "FLOWENGINE_PROCESSES", "FLOWENGINE_HOOKS", "FLOWENGINE_NOW"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path


def test_readme_gives_the_validate_and_test_commands_of_the_brief() -> None:
    lines = [" ".join(c) for c in readme_commands()]
    base = "flowengine --processes examples/new_process/processes --hooks examples.new_process.hooks"
    assert f"{base} validate" in lines
    assert f"{base} test examples/new_process/scenarios/" in lines
    assert any(" render rma --format mermaid" in line for line in lines)
    assert any(" start rma " in line for line in lines) and any(" show RMA-1001" in line for line in lines)


def test_every_readme_command_succeeds_in_order(in_sandbox: Path) -> None:
    runner = CliRunner()
    env: dict[str, str] = {}
    results: dict[str, Result] = {}
    ran = 0
    for command in readme_commands():
        if command[0] == "export":
            env.update(item.partition("=")[::2] for item in command[1:])
            continue
        assert command[0] == "flowengine", command
        args = command[1:]
        if "render" in args and "render" not in main.commands:
            continue  # `flowengine render` is not in this flowengine yet
        result = runner.invoke(main, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
        verb = next(a for a in args if a in main.commands)
        results.setdefault(verb, result)
        ran += 1
    assert ran >= 9
    assert "ok: 1 process valid" in results["validate"].output
    assert "3 passed, 0 failed" in results["test"].output
    assert '"refund_amount": "1275.00"' in results["show"].output
    if "render" in results:
        assert "awaiting_goods" in results["render"].output and "inspection" in results["render"].output
    assert (in_sandbox / "rma.db").exists()


def test_validate_without_the_hooks_names_both_hooks(in_sandbox: Path) -> None:
    result = CliRunner().invoke(main, ["--processes", "examples/new_process/processes", "validate"])
    assert result.exit_code == 1
    assert "unknown condition or guard 'within_return_period'" in result.output
    assert "unknown action hook 'compute_refund'" in result.output


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine(f"sqlite:///{tmp_path / 'rma.db'}", processes=EXAMPLE / "processes", hooks=hooks,
               clock=ManualClock(dt.datetime(2026, 3, 2, 9, tzinfo=SHANGHAI)))
    yield e
    e.dispose()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_passes_from_python(engine: Engine, path: Path) -> None:
    result = ScenarioRunner(engine).run(load_scenario(path), path)
    assert result.passed, result.failures
    assert result.steps == len(load_scenario(path).steps)


def test_there_are_the_three_scenarios_the_readme_describes() -> None:
    assert [p.name for p in SCENARIOS] == ["RMA-1.yaml", "RMA-2.yaml", "RMA-3.yaml"]


def test_guard_refuses_late_returns_with_its_reason(engine: Engine) -> None:
    agent = Actor("cs-liu", {"cs_agent"})
    late = engine.start("rma", actor=agent, data={**START, "purchase_date": "2026-01-30"})
    with pytest.raises(GuardRejected) as refused:
        engine.fire(late.id, "approve_return", actor=agent)
    assert refused.value.guard == "within_return_period"
    assert refused.value.reason == "bought on 2026-01-30: the 30-day return period ended on 2026-03-01"
    on_time = engine.start("rma", actor=agent, data={**START, "purchase_date": "2026-01-31"})
    assert engine.fire(on_time.id, "approve_return", actor=agent).target == "awaiting_goods"


def test_a_confirmed_defect_refunds_the_full_price(engine: Engine) -> None:
    case = engine.start("rma", actor=Actor("cs-liu", {"cs_agent"}), data=START).id
    engine.fire(case, "approve_return", actor=Actor("cs-liu", {"cs_agent"}))
    engine.fire(case, "goods_received", actor=Actor("wh", {"warehouse_clerk"}), data={"received_condition": "ok"})
    step = engine.fire(case, "inspection_passed", actor=Actor("qi", {"quality_inspector"}),
                       data={"defect_confirmed": True})
    assert step.instance.data["refund_amount"] == "1500.00"
    assert step.target == "refund_pending"


def test_roles_and_form_come_from_the_process_file_not_a_catalogue() -> None:
    assert not (EXAMPLE / "processes" / "_catalog.yaml").exists()
