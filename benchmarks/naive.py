"""The naive baseline: what a typical user writes without flowengine.

A `transitions.Machine` built per instance on a plain model object whose methods are the guards and
actions, SQLAlchemy ORM declarative models for instance and history (`version_id_col` as the optimistic
lock), and a session and a commit per step, on SQLite with the same settings as flowengine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, Integer, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from transitions import Machine

from benchmarks.baselines import Move, start_data, warm_then_time
from benchmarks.common import T0, Sample, apply_sqlite_settings
from flowengine import Actor

STATES = ["open", "assigned", "review", "waiting", "delegated", "closed", "cancelled"]
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "assign", "source": "open", "dest": "assigned", "after": "count_attempt"},
    {"trigger": "resolve", "source": "assigned", "dest": "review", "conditions": "is_big"},
    {"trigger": "resolve", "source": "assigned", "dest": "closed", "after": "stamp_closed"},
    {"trigger": "approve", "source": "review", "dest": "closed", "conditions": ["has_engineer", "amount_ok"],
     "after": "approve_and_stamp"},
    {"trigger": "note", "source": "*", "dest": None},
    {"trigger": "cancel", "source": ["open", "assigned", "review", "waiting", "delegated"], "dest": "cancelled"},
]


class Base(DeclarativeBase):
    pass


class NaiveInstance(Base):
    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    process_id: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    __mapper_args__ = {"version_id_col": revision}


class NaiveHistory(Base):
    __tablename__ = "history"
    instance_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(100))
    from_state: Mapped[str | None] = mapped_column(String(100))
    to_state: Mapped[str] = mapped_column(String(100))
    actor_id: Mapped[str] = mapped_column(String(200))
    actor_roles: Mapped[list[str]] = mapped_column(JSON)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class TicketModel:
    """The per-request model object a `transitions` user decorates with callbacks."""

    state: str

    def __init__(self, data: dict[str, Any], actor: Actor, now: dt.datetime) -> None:
        self.data, self.actor, self.now = data, actor, now

    def is_big(self) -> bool:
        return Decimal(self.data.get("amount") or 0) > 1000

    def has_engineer(self) -> bool:
        return bool(self.data.get("engineer"))

    def amount_ok(self) -> bool:
        return Decimal(self.data.get("amount") or 0) <= 5000

    def count_attempt(self) -> None:
        self.data["attempts"] = int(self.data.get("attempts") or 0) + 1

    def stamp_closed(self) -> None:
        self.data["closed_at"] = self.now.isoformat()

    def approve_and_stamp(self) -> None:
        self.data.update(approved=True, closed_at=self.now.isoformat(), note="stamped by " + self.actor.id)


def naive_sqlite(directory: Path, instances: int, moves_for: Callable[[list[str]], list[Move]],
                 synchronous: str) -> Sample:
    """Seed `instances` rows, then time the moves; returns (transitions, wall seconds, CPU seconds)."""
    engine = create_engine(f"sqlite:///{directory / 'naive.db'}")
    event.listen(engine, "connect", lambda dbapi_conn, _record: apply_sqlite_settings(dbapi_conn, synchronous))
    Base.metadata.create_all(engine)
    ids = [f"naive-{i:06d}" for i in range(instances)]
    with Session(engine) as session:
        session.add_all(NaiveInstance(id=iid, process_id="ticket", state="open", status="running", data=start_data(i),
                                      created_at=T0, updated_at=T0) for i, iid in enumerate(ids))
        session.commit()
    sample = warm_then_time(lambda some: _naive_moves(engine, some), moves_for(ids))
    engine.dispose()
    return sample


def _naive_moves(engine: Engine, moves: Sequence[Move]) -> None:
    for iid, name, payload, actor in moves:
        now = dt.datetime.now(dt.UTC)
        with Session(engine) as session:
            inst = session.get(NaiveInstance, iid)
            assert inst is not None
            model = TicketModel({**inst.data, **payload}, actor, now)
            Machine(model=model, states=STATES, transitions=TRANSITIONS, initial=inst.state, auto_transitions=False)
            source = inst.state
            if not getattr(model, name)():
                raise RuntimeError(f"{name} refused on {iid}")
            session.add(NaiveHistory(instance_id=iid, seq=inst.revision + 1, event=name, from_state=source,
                                     to_state=model.state, actor_id=actor.id, actor_roles=sorted(actor.roles),
                                     payload=payload, at=now))
            inst.state, inst.data, inst.updated_at = model.state, model.data, now
            inst.status = "completed" if model.state == "closed" else "running"
            session.commit()
