"""flowengine: business processes in YAML, validated, persisted and advanced by a generic engine."""

from __future__ import annotations

from flowengine.clock import Clock, ManualClock, SystemClock
from flowengine.engine import Engine
from flowengine.errors import (
    ConcurrencyConflict,
    DataValidationError,
    DefinitionError,
    EventNotAllowed,
    FlowEngineError,
    GuardRejected,
    HookError,
    InstanceExists,
    MigrationError,
    Problem,
    RoleNotAllowed,
    StoreError,
    UnknownInstance,
    UnknownProcess,
)
from flowengine.hooks import ActionContext, GuardContext, HookRegistry, Refusal
from flowengine.results import SYSTEM, Actor, HistoryEntry, Instance, Step, TimerInfo

__all__ = [
    "ActionContext",
    "Actor",
    "Clock",
    "ConcurrencyConflict",
    "DataValidationError",
    "DefinitionError",
    "Engine",
    "EventNotAllowed",
    "FlowEngineError",
    "GuardContext",
    "GuardRejected",
    "HistoryEntry",
    "HookError",
    "HookRegistry",
    "Instance",
    "InstanceExists",
    "ManualClock",
    "MigrationError",
    "Problem",
    "Refusal",
    "RoleNotAllowed",
    "SYSTEM",
    "Step",
    "StoreError",
    "SystemClock",
    "TimerInfo",
    "UnknownInstance",
    "UnknownProcess",
]
