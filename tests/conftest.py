"""Shared fixtures. `db_url` runs a test on SQLite and on PostgreSQL.

CI (CI=true) always has PostgreSQL at 127.0.0.1:5432: there the PostgreSQL tests must run, and fail if it is
down. Each PostgreSQL test gets its own schema, created here and dropped afterwards, so runs (and tests)
never see each other's rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowengine.hooks import HookRegistry
from tests.fixture_hooks_module import fixture_hooks as fixture_hooks  # re-exported for the tests

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "processes"
PROCESSES = ROOT / "processes"

PG_URL = os.environ.get("FLOWENGINE_TEST_PG_URL") or (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test" if os.environ.get("CI") == "true" else None)


def _pg_schema_url(base: str) -> Iterator[str]:
    from flowengine.store.database import scratch_schema

    with scratch_schema(base, "fe_test") as (url, _):
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flow.db'}"
        return
    if PG_URL is None:
        pytest.skip("set FLOWENGINE_TEST_PG_URL (or CI=true) to run PostgreSQL tests")
    yield from _pg_schema_url(PG_URL)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flow.db'}"


@pytest.fixture
def hooks() -> HookRegistry:
    return fixture_hooks()
