"""Every example path of the spec (examples/scenarios/**) runs through the engine on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowengine import Engine
from flowengine.cli import main
from flowengine.definition.loader import load_directory
from flowengine.scenario import ScenarioRunner, load_scenario
from flowengine.shipped import hooks as shipped
from tests.conftest import PG_URL, PROCESSES, ROOT, _pg_schema_url

SCENARIOS = sorted((ROOT / "examples" / "scenarios").rglob("*.yaml"))
DEFINITIONS = load_directory(PROCESSES, hooks=shipped.names())
SPEC_IDS = {"RS-1", "RS-2", "RS-3", "OS-1", "OS-2", "RP-1", "RP-2", "RP-3", "CH-1", "CH-2", "CH-3", "OC-1", "OC-2",
            "OC-3", "EM-1", "EM-2", "EM-3", "PS-1", "PS-2", "SP-1", "SP-2", "CB-1", "CB-2", "CB-3", "SS-1", "SS-2",
            "CC-1", "CC-2", "CC-3", "CC-4", "NA-1", "NA-2", "NA-3", "OR-1", "OR-2", "OR-3", "OR-4", "FR-1", "FR-2",
            "FR-3", "BR-1", "BR-2"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if request.param == "sqlite":
        e = Engine(f"sqlite:///{tmp_path_factory.mktemp('spec') / 'spec.db'}", processes=DEFINITIONS, hooks=shipped)
        yield e
        e.dispose()
        return
    if PG_URL is None:
        pytest.skip("set FLOWENGINE_TEST_PG_URL (or CI=true) to run PostgreSQL tests")
    for url in _pg_schema_url(PG_URL):
        e = Engine(url, processes=DEFINITIONS, hooks=shipped)
        yield e
        e.dispose()


def test_every_example_path_of_the_spec_has_a_scenario() -> None:
    ids = {load_scenario(p).scenario for p in SCENARIOS}
    assert ids >= SPEC_IDS, sorted(SPEC_IDS - ids)
    processes = {p.parent.name for p in SCENARIOS}
    assert processes == set(DEFINITIONS)
    refusals = {p.parent.name for p in SCENARIOS if "refuse" in p.name}
    assert refusals == set(DEFINITIONS), "each process needs a refusal scenario"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_scenario(engine: Engine, path: Path) -> None:
    result = ScenarioRunner(engine).run(load_scenario(path), path)
    assert result.passed, "\n".join(result.failures)


def test_shipped_processes_validate_without_warnings() -> None:
    result = CliRunner().invoke(main, ["validate", str(PROCESSES)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok: 15 processes valid"


@pytest.mark.parametrize("process", ["remote_service", "repair_service"])
def test_demo_walks_a_process_to_its_end(process: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'demo.db'}", "demo", "--process", process])
    assert result.exit_code == 0, result.output
    assert "final: closed" in result.output and "status completed" in result.output


def test_flowengine_test_reports_like_a_test_runner() -> None:
    result = CliRunner().invoke(main, ["--processes", str(PROCESSES), "test", str(ROOT / "examples" / "scenarios")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"{len(SCENARIOS)} passed, 0 failed")
