"""Immutable results the engine returns: never ORM rows, always plain frozen dataclasses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who fires an event: an id and roles, taken from the caller (flowengine does no user management)."""

    id: str
    roles: frozenset[str] = frozenset()

    def __init__(self, id: str, roles: Any = ()) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "roles", frozenset([roles] if isinstance(roles, str) else roles))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "roles": sorted(self.roles)}


SYSTEM = Actor("system", {"system"})


@dataclass(frozen=True, slots=True)
class InstanceView:
    """Another instance as a hook sees it (read-only)."""

    id: str
    process: str
    state: str
    status: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TimerInfo:
    timer: str
    due_at: dt.datetime
    kind: str  # "fire" or "escalate"
    event: str | None = None


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    process: str
    version: int
    state: str
    status: str
    data: Mapping[str, Any]
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime
    parent_id: str | None = None
    allowed_events: tuple[str, ...] = ()
    timers: tuple[TimerInfo, ...] = ()
    children: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "process": self.process, "version": self.version, "state": self.state,
                "status": self.status, "data": dict(self.data), "revision": self.revision,
                "allowed_events": list(self.allowed_events), "parent": self.parent_id,
                "children": list(self.children),
                "timers": [{"timer": t.timer, "due_at": t.due_at.isoformat(), "kind": t.kind, "event": t.event}
                           for t in self.timers],
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True, slots=True)
class GuardCheck:
    """One guard or condition evaluated during a fire, and what it said."""

    name: str
    passed: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: int
    event: str
    source: str | None  # None for the start entry
    target: str
    actor: Actor
    at: dt.datetime
    payload: Mapping[str, Any]
    kind: str = "fire"  # start, fire, timer, escalation, outcome, cascade, migrate
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "event": self.event, "from": self.source, "to": self.target,
                "actor": self.actor.to_json(), "at": self.at.isoformat(), "payload": dict(self.payload),
                "kind": self.kind, "details": dict(self.details)}


@dataclass(frozen=True, slots=True)
class Step:
    """The result of one fire: where the instance went, what ran, what it became."""

    instance_id: str
    event: str
    source: str
    target: str
    revision: int
    seq: int
    transition: str | None  # the definition's transition id (T-number) if it has one
    guards: tuple[GuardCheck, ...]
    instance: Instance
    started: tuple[str, ...] = ()  # instances started by this step (children, hand-offs)
    replayed: bool = False  # True when an idempotency key returned an earlier result

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance_id, "event": self.event, "from": self.source, "to": self.target,
                "revision": self.revision, "seq": self.seq, "transition": self.transition,
                "guards": [{"name": g.name, "passed": g.passed, "reason": g.reason} for g in self.guards],
                "started": list(self.started), "replayed": self.replayed, "state": self.instance.to_json()}
