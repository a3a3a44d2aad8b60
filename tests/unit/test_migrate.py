"""Explicit migration of running instances between versions, and Alembic upgrades of a populated database."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowengine import Actor, Engine, ManualClock, MigrationError
from flowengine.store.database import current_revision, head_revision, make_engine, upgrade
from flowengine.store.tables import metadata
from tests.conftest import FIXTURES, fixture_hooks

CLERK = Actor("c1", {"clerk"})
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


def two_versions(db_url: str, tmp_path: Path) -> tuple[Engine, str, str]:
    folder = tmp_path / "procs"
    shutil.copytree(FIXTURES, folder)
    e1 = Engine(db_url, processes=folder, hooks=fixture_hooks(), clock=ManualClock(T0))
    in_open = e1.start("ticket", data={"customer": "A"}, actor=CLERK, instance_id="open-1").id
    e1.start("ticket", data={"customer": "B"}, actor=CLERK, instance_id="assigned-1")
    e1.fire("assigned-1", "assign", data={"engineer": "e1"}, actor=CLERK)
    e1.dispose()
    path = folder / "ticket.yaml"
    text = path.read_text().replace("  assigned: {label: {zh: 已分派, en: Assigned}, roles: [engineer]}",
                                    "  in_progress: {label: {zh: 处理中, en: In progress}, roles: [engineer]}")
    text = text.replace("to: assigned", "to: in_progress").replace("from: assigned", "from: in_progress")
    text = text.replace("scope: [open, assigned, review]", "scope: [open, in_progress, review]")
    path.write_text(text)
    return Engine(db_url, processes=folder, hooks=fixture_hooks(), clock=ManualClock(T0)), in_open, "assigned-1"


def test_migration_refuses_unmapped_states_then_moves_all(db_url: str, tmp_path: Path) -> None:
    engine, in_open, assigned = two_versions(db_url, tmp_path)
    with pytest.raises(MigrationError, match="no mapping for state assigned"):
        engine.migrate("ticket", from_version=1, to_version=2)
    assert engine.get(assigned).version == 1
    dry = engine.migrate("ticket", from_version=1, to_version=2, mapping={"assigned": "in_progress"}, dry_run=True)
    assert {(i.instance_id, i.to_state) for i in dry.items} == {(in_open, "open"), (assigned, "in_progress")}
    assert engine.get(assigned).version == 1
    report = engine.migrate("ticket", from_version=1, to_version=2, mapping={"assigned": "in_progress"})
    assert len(report.items) == 2
    moved = engine.get(assigned)
    assert (moved.version, moved.state, moved.revision) == (2, "in_progress", 3)
    last = engine.history(assigned)[-1]
    assert (last.event, last.kind, last.source, last.target) == ("migrate", "migrate", "assigned", "in_progress")
    assert last.details == {"from_version": 1, "to_version": 2}
    assert engine.fire(assigned, "park", actor=Actor("e", {"engineer"})).target == "waiting"
    engine.dispose()


def test_migration_rejects_bad_mapping(db_url: str, tmp_path: Path) -> None:
    engine, _, _ = two_versions(db_url, tmp_path)
    with pytest.raises(MigrationError, match="'nowhere' is not a state of version 2"):
        engine.migrate("ticket", from_version=1, to_version=2, mapping={"assigned": "nowhere"})
    with pytest.raises(MigrationError, match="is final"):
        engine.migrate("ticket", from_version=1, to_version=2, mapping={"assigned": "closed"})
    engine.dispose()


def test_upgrade_a_database_created_by_the_previous_revision(db_url: str) -> None:
    db = make_engine(db_url)
    upgrade(db, "0001")
    assert current_revision(db) == "0001"
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with db.begin() as conn:
        conn.execute(sa.text("INSERT INTO fe_idempotency (instance_id, key, seq) VALUES ('i-1', 'k', 2)"))
        conn.execute(sa.text(
            "INSERT INTO fe_history (instance_id, seq, event, from_state, to_state, actor_id, actor_roles, payload, "
            "at, kind, details) VALUES ('i-1', 1, 'start', NULL, 'open', 'c', '[]', '{}', :at, 'start', '{}')"),
            {"at": now.replace(tzinfo=None) if db.dialect.name == "sqlite" else now})
    upgrade(db)
    assert current_revision(db) == head_revision() == "0003"
    columns = {c["name"] for c in sa.inspect(db).get_columns("fe_idempotency")}
    assert "created_at" in columns
    # What the migrations built is what tables.py declares, index by index.
    for table in metadata.sorted_tables:
        built = {(i["name"], tuple(i["column_names"])) for i in sa.inspect(db).get_indexes(table.name)
                 if not i.get("duplicates_constraint")}  # PostgreSQL lists unique constraints as indexes too
        declared = {(i.name, tuple(c.name for c in i.columns)) for i in table.indexes}
        assert built == declared, table.name
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT seq FROM fe_idempotency WHERE key = 'k'")).scalar() == 2
        assert conn.execute(sa.text("SELECT count(*) FROM fe_history")).scalar() == 1
    db.dispose()
