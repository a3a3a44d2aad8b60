"""Deciding a step: (compiled process, instance snapshot, event, payload, actor, now) → `Decision`.

Pure: no database, no clock of its own. What it needs from outside (form numbers, a look at other
instances, the working calendar) comes in as a `Services` object, so the engine can bind those to its
transaction. Order per §1.1: roles, payload validated and merged, `if` branch, its guards, actions,
data validated, timers of left scopes cancelled and of entered scopes scheduled (after the actions).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowengine.compile import CompiledProcess, CompiledRow, PayloadRule
from flowengine.datatypes import Invalid, coerce, coerce_all, is_empty, typed, validate_fields
from flowengine.effects import FORMS, ChildPlan, Effects, Services, evaluate
from flowengine.errors import (
    DataValidationError,
    EventNotAllowed,
    FlowEngineError,
    GuardRejected,
    RoleNotAllowed,
)
from flowengine.hooks import Message, Refusal
from flowengine.results import Actor, GuardCheck

__all__ = ["ChildPlan", "Decision", "Services", "Snapshot", "TimerPlan", "decide", "decide_escalation",
           "decide_start", "plan_timers", "validate_data", "validate_payload", "validate_start"]
_UNCHECKED: Any = object()


@dataclass
class Snapshot:
    """An instance as the runtime sees it."""

    id: str
    process: str
    version: int
    state: str
    status: str
    data: dict[str, Any]
    revision: int
    parent_id: str | None = None
    started_by: str | None = None
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class TimerPlan:
    timer: str
    due_at: dt.datetime


@dataclass(slots=True)
class Decision:
    event: str
    source: str | None
    target: str
    status: str
    data: dict[str, Any]
    payload: dict[str, Any]
    row: CompiledRow | None = None
    self_loop: bool = False
    guards: Sequence[GuardCheck] = ()
    messages: Sequence[Message] = ()
    handoffs: Sequence[ChildPlan] = ()
    call: ChildPlan | None = None
    cancel_timers: frozenset[str] = frozenset()
    schedule: Sequence[TimerPlan] = ()


def validate_payload(compiled: CompiledProcess, rule: PayloadRule, event: str,
                     payload: Mapping[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    values = coerce_all(rule.coercers, payload)
    if values is None:
        values, errors = validate_fields(rule.allowed, payload, compiled.tz, f"of event '{event}'")
    if rule.required:
        errors += [f"'{name}' is required by event '{event}'" for name in rule.required if is_empty(payload.get(name))]
    if errors:
        raise DataValidationError(errors, where=f"payload of '{event}'")
    return values


def validate_start(compiled: CompiledProcess, data: Mapping[str, Any]) -> dict[str, Any]:
    values, errors = validate_fields(compiled.start_fields, data, compiled.tz, "of the start data")
    errors.extend(f"'{n}' is required at start" for n in sorted(compiled.start_required)
                  if is_empty(data.get(n)))
    if errors:
        raise DataValidationError(errors, where=f"start data of '{compiled.process_id}'")
    for name, spec in compiled.spec.data.items():
        if name not in values and spec.default is not None:
            values[name] = coerce(spec, spec.default, compiled.tz, name)
    return values


def validate_data(compiled: CompiledProcess, data: dict[str, Any], where: str) -> dict[str, Any]:
    forms = data.pop(FORMS, None)
    values = coerce_all(compiled.coercers, data)
    if values is None:
        values, errors = validate_fields(compiled.fields, data, compiled.tz, f"of '{compiled.process_id}'")
        if errors:
            raise DataValidationError(errors, where=where)
    if forms is not None:
        values[FORMS] = forms
    return values


def _revalidate(compiled: CompiledProcess, before: Mapping[str, Any], data: dict[str, Any],
                trusted: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`data` (this decision's own dict) after actions ran on a copy of `before`, its changes validated in place.

    Only what the actions changed needs checking: the rest was valid when stored, is the payload checked
    just before, or is `trusted` (still the very object the engine put there).
    """
    changed = {k: v for k, v in data.items() if before.get(k, _UNCHECKED) is not v}
    for name, value in trusted.items():
        if changed.get(name, _UNCHECKED) is value:
            del changed[name]
    if changed:
        data.update(validate_data(compiled, changed, where))
    return data


def plan_timers(compiled: CompiledProcess, source: str | None, target: str, self_loop: bool,
                data: Mapping[str, Any], now: dt.datetime,
                services: Services) -> tuple[frozenset[str], list[TimerPlan]]:
    """Timers to cancel (scopes left) and to schedule (scopes entered), due times from data after actions."""
    if self_loop:
        return frozenset(), []
    cancel, enter = compiled.scope_change(source, target)
    return cancel, _schedule(compiled, enter, data, now, services)


def due_time(compiled: CompiledProcess, timer_id: str, data: Mapping[str, Any], entered_at: dt.datetime,
             now: dt.datetime, services: Services) -> dt.datetime | None:
    from flowengine.durations import parse_duration

    timer = compiled.timer(timer_id)
    if timer.after is not None:
        base = entered_at
        duration = timer.after
    else:
        assert timer.at is not None
        raw = typed(compiled.fields.get(timer.at), data.get(timer.at), compiled.tz)
        if raw is None or is_empty(data.get(timer.at)):
            return None  # not scheduled while the field is empty (§1.1)
        base = raw if isinstance(raw, dt.datetime) else dt.datetime.combine(raw, dt.time(), compiled.tz)
        duration = timer.offset or "PT0S"
    if services.calendar is None:
        raise FlowEngineError("a working calendar is needed to schedule timers")
    due: dt.datetime = parse_duration(duration).apply(base, services.calendar)
    return due


def _schedule(compiled: CompiledProcess, enter: tuple[str, ...], data: Mapping[str, Any], now: dt.datetime,
              services: Services) -> list[TimerPlan]:
    plans = []
    for tid in enter:
        due = due_time(compiled, tid, data, now, now, services)
        if due is not None:
            plans.append(TimerPlan(tid, due))
    return plans


def _effects(compiled: CompiledProcess, snap: Snapshot, event: str, data: dict[str, Any],
             payload: Mapping[str, Any], actor: Actor, now: dt.datetime, services: Services,
             row_roles: frozenset[str], target: str) -> Effects:
    return Effects(compiled.constants, snap.id, snap.state, snap.started_by, event, data, payload, actor, now,
                   services, row_roles, target)


def decide(compiled: CompiledProcess, snap: Snapshot, event: str, payload: Mapping[str, Any], actor: Actor,
           now: dt.datetime, services: Services) -> Decision:
    """Work out one fire without writing anything; raises the refusal errors of §1.1.

    What depends only on the definition (scope changes, target status, compiled actions, the checks a
    passing guard records) was worked out per transition row when the process was compiled.
    """
    state = snap.state
    if snap.status != "running":
        raise EventNotAllowed(snap.id, state, event, (), f"can't fire '{event}' on {snap.id}: it is "
                              f"{snap.status} (in '{state}'); no event is allowed")
    moves = compiled.moves.get(state, {}).get(event)
    if moves is None:
        raise EventNotAllowed(snap.id, state, event, compiled.allowed_events(state))
    rows, roles = moves.rows, moves.roles
    if roles.isdisjoint(actor.roles):
        raise RoleNotAllowed(snap.id, state, event, compiled.allowed_events(state),
                             sorted(actor.roles), sorted(roles))
    values = validate_payload(compiled, moves.payload, event, payload) if payload or moves.payload.required else {}
    data = {**snap.data, **values}
    effects: Effects | None = None  # built only if a condition, guard or action needs it
    checks: list[GuardCheck] = []
    chosen: CompiledRow | None = None
    for row in rows:
        if row.if_ is None:
            chosen = row
            break
        effects = effects or _effects(compiled, snap, event, data, values, actor, now, services, roles, state)
        result = evaluate(row.if_text or "if", row.if_, effects)
        assert row.if_checks is not None
        checks.append(row.if_checks[0 if result else 1])
        if result:
            chosen = row
            break
    if chosen is None:
        raise GuardRejected(snap.id, state, event, compiled.allowed_events(state),
                            " / ".join(r.if_text or "" for r in rows), "no branch condition holds")
    if chosen.roles is not roles and chosen.roles.isdisjoint(actor.roles):
        raise RoleNotAllowed(snap.id, state, event, compiled.allowed_events(state), sorted(actor.roles),
                             sorted(chosen.roles))
    if chosen.guards:
        effects = effects or _effects(compiled, snap, event, data, values, actor, now, services, roles, state)
        for name, guard, passed in chosen.guards:
            result = evaluate(name, guard, effects)
            if result:
                checks.append(passed)
                continue
            reason = result.reason if isinstance(result, Refusal) else None
            checks.append(GuardCheck(name, False, reason))
            raise GuardRejected(snap.id, state, event, compiled.allowed_events(state), name,
                                reason or f"'{name}' does not hold")
    target = chosen.target
    decision = Decision(event, state, target, chosen.status, data, values, chosen, chosen.self_loop, checks, (), (),
                        None, chosen.cancel)
    if chosen.actions:
        effects = effects or _effects(compiled, snap, event, data, values, actor, now, services, roles, state)
        before = dict(data)
        effects.target, effects._row_roles = target, chosen.roles
        effects.run(chosen.actions)
        decision.data = _revalidate(compiled, before, data, effects._trusted, f"data after '{event}'")
        decision.messages, decision.handoffs = effects._messages, effects._handoffs
    if chosen.enter:
        decision.schedule = _schedule(compiled, chosen.enter, decision.data, now, services)
    if chosen.calls:
        effects = effects or _effects(compiled, snap, event, data, values, actor, now, services, roles, state)
        effects.data = decision.data
        decision.call = compiled.child_plan(target, effects)
    return decision


def decide_start(compiled: CompiledProcess, snap: Snapshot, data: Mapping[str, Any], actor: Actor,
                 now: dt.datetime, services: Services, *, check_role: bool = True) -> Decision:
    """The start of an instance: start data validated, `on_start` actions, initial timers and call."""
    spec = compiled.spec
    if check_role and not actor.roles & (set(spec.start_roles) | {"system"}):
        raise RoleNotAllowed(snap.id, "(not started)", "start", (), sorted(actor.roles), sorted(spec.start_roles))
    values = validate_start(compiled, data)
    working = dict(values)
    effects = _effects(compiled, snap, "start", working, values, actor, now, services,
                       frozenset(spec.start_roles), spec.initial)
    effects.run(compiled.start_actions)
    new_data = effects.data = validate_data(compiled, working, "data after on_start")
    _, schedule = plan_timers(compiled, None, spec.initial, False, new_data, now, services)
    return Decision("start", None, spec.initial, compiled.status_of(spec.initial), new_data, values,
                    messages=effects._messages, handoffs=effects._handoffs, schedule=schedule,
                    call=compiled.child_plan(spec.initial, effects))


def decide_escalation(compiled: CompiledProcess, snap: Snapshot, timer_id: str, actor: Actor, now: dt.datetime,
                      services: Services) -> Decision:
    """A timer's escalation: its actions run, the state does not change."""
    data = dict(snap.data)
    effects = _effects(compiled, snap, f"!{timer_id}", data, {}, actor, now, services, frozenset({"system"}),
                       snap.state)
    effects.run(compiled.timer_actions[timer_id])
    new_data = _revalidate(compiled, snap.data, data, effects._trusted, f"data after timer '{timer_id}'")
    return Decision(f"!{timer_id}", snap.state, snap.state, snap.status, new_data, {}, self_loop=True,
                    messages=effects._messages, handoffs=effects._handoffs)


def coerce_value(compiled: CompiledProcess, name: str, value: Any) -> Any:
    spec = compiled.fields.get(name)
    if spec is None:
        return value
    try:
        return coerce(spec, value, compiled.tz, name)
    except Invalid as exc:
        raise DataValidationError([str(exc)]) from None
