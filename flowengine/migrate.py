"""Moving running instances from one definition version to another: explicit, all or nothing, recorded.

Instances pin the version they started with; only this module moves them. Every state an instance is
in must exist in the target version or be mapped (`--map old=new`); the data must fit the target's
schema. One transaction moves them all, each gaining a `migrate` history entry; timers are rescheduled
for the new state as if it had just been entered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from flowengine.errors import DataValidationError, MigrationError
from flowengine.results import SYSTEM, Actor
from flowengine.runtime import plan_timers, validate_data
from flowengine.store import hotpath as hp
from flowengine.store import repository as repo
from flowengine.store.tx import Tx

if TYPE_CHECKING:
    from flowengine.engine import Engine


@dataclass(frozen=True, slots=True)
class MigrationItem:
    instance_id: str
    from_state: str
    to_state: str


@dataclass(frozen=True, slots=True)
class MigrationReport:
    process: str
    from_version: int
    to_version: int
    items: tuple[MigrationItem, ...]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"process": self.process, "from_version": self.from_version, "to_version": self.to_version,
                "dry_run": self.dry_run, "instances": [
                    {"id": i.instance_id, "from": i.from_state, "to": i.to_state} for i in self.items]}


def migrate(engine: Engine, process: str, from_version: int, to_version: int, mapping: Mapping[str, str], *,
            dry_run: bool = False, actor: Actor = SYSTEM, now: dt.datetime | None = None) -> MigrationReport:
    if from_version == to_version:
        raise MigrationError(f"{process}: from and to are both version {from_version}")
    old = engine.compiled(process, from_version)
    new = engine.compiled(process, to_version)
    bad = [f"'{k}' is not a state of version {from_version}" for k in mapping if k not in old.spec.states]
    bad += [f"'{v}' is not a state of version {to_version}" for v in mapping.values() if v not in new.spec.states]
    bad += [f"'{v}' is final in version {to_version}" for v in mapping.values() if v in new.finals]
    if bad:
        raise MigrationError(f"can't migrate {process}: " + "; ".join(bad))
    when = now or engine.clock.now()

    def run(conn: Connection) -> MigrationReport:
        rows = repo.list_rows(conn, process=process, version=from_version, status="running")
        tx = Tx.of(conn)
        snaps = [hp.snapshot_of(r) for r in rows]
        unmapped = sorted({s.state for s in snaps if s.state not in mapping and s.state not in new.spec.states})
        if unmapped:
            raise MigrationError(f"can't migrate {process} v{from_version} → v{to_version}: no mapping for "
                                 f"state{'s' if len(unmapped) > 1 else ''} {', '.join(unmapped)} "
                                 f"(give --map {unmapped[0]}=NEW_STATE)")
        items = []
        for snap in snaps:
            target = mapping.get(snap.state, snap.state)
            try:
                data = validate_data(new, dict(snap.data), f"data of {snap.id} under version {to_version}")
            except DataValidationError as exc:
                raise MigrationError(f"can't migrate {snap.id}: {exc}") from exc
            items.append(MigrationItem(snap.id, snap.state, target))
            if dry_run:
                continue
            moved = replace(snap, version=to_version, state=target, data=data, revision=snap.revision + 1)
            if not hp.update_instance(tx, moved, snap.revision, when):
                raise MigrationError(f"{snap.id} changed during the migration; nothing was migrated, try again")
            hp.insert_history(tx, snap.id, moved.revision, "migrate", snap.state, target, actor, {}, when,
                              "migrate", {"from_version": from_version, "to_version": to_version})
            hp.cancel_timers(tx, snap.id, None, when)
            _, schedule = plan_timers(new, None, target, False, data, when, engine._services(tx))
            hp.schedule_timers(tx, snap.id, schedule, when)
        return MigrationReport(process, from_version, to_version, tuple(items), dry_run)

    return engine._write_core(run, f"migrating {process}")
