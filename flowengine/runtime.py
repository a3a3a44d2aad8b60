"""Deciding a step: (compiled process, instance snapshot, event, payload, actor, now) → `Decision`.

Pure: no database, no clock of its own. What it needs from outside (form numbers, a look at other
instances, the working calendar) comes in as a `Services` object, so the engine can bind those to its
transaction. Order per §1.1: roles, payload validated and merged, `if` branch, its guards, actions,
data validated, timers of left scopes cancelled and of entered scopes scheduled (after the actions).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flowengine.compile import UNCHECKED as _UNCHECKED
from flowengine.compile import CompiledProcess, CompiledRow
from flowengine.datatypes import Invalid, coerce, is_empty, to_json_native, typed, validate_fields
from flowengine.definition.schema import Action, Value
from flowengine.errors import (
    DataValidationError,
    EventNotAllowed,
    FlowEngineError,
    GuardRejected,
    HookError,
    RoleNotAllowed,
)
from flowengine.hooks import ActionContext, GuardContext, InstanceLookup, Message, Outbox, Refusal
from flowengine.results import Actor, GuardCheck

if TYPE_CHECKING:
    from flowengine.calendar import WorkingCalendar

FORMS = "forms"


class Services(Protocol):
    @property
    def calendar(self) -> WorkingCalendar | None: ...

    @property
    def instances(self) -> InstanceLookup | None: ...

    def next_number(self, prefix: str, year: int, *, gap_free: bool) -> int: ...


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


@dataclass(frozen=True, slots=True)
class ChildPlan:
    process: str
    data: dict[str, Any]


@dataclass
class Decision:
    event: str
    source: str | None
    target: str
    status: str
    data: dict[str, Any]
    payload: dict[str, Any]
    row: CompiledRow | None = None
    self_loop: bool = False
    guards: list[GuardCheck] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    handoffs: list[ChildPlan] = field(default_factory=list)
    call: ChildPlan | None = None
    cancel_timers: frozenset[str] = frozenset()
    schedule: list[TimerPlan] = field(default_factory=list)


def _guard_context(compiled: CompiledProcess, snap: Snapshot, event: str, data: Any, payload: Mapping[str, Any],
                   actor: Actor, now: dt.datetime, services: Services) -> GuardContext:
    return GuardContext(instance_id=snap.id, process=snap.process, version=snap.version, state=snap.state,
                        event=event, data=data, payload=payload, actor=actor, now=now,
                        params=compiled.spec.parameters, fields=compiled.fields, tz=compiled.tz,
                        calendar=services.calendar, instances=services.instances)


def _evaluate(name: str, evaluator: Any, ctx: GuardContext) -> bool | Refusal:
    try:
        result = evaluator(ctx)
    except FlowEngineError:
        raise
    except Exception as exc:
        raise HookError(name, "guard", ctx.instance_id, exc) from exc
    return result if isinstance(result, Refusal) else bool(result)


def validate_payload(compiled: CompiledProcess, state: str, event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    rule = compiled.payloads[(state, event)]
    values, errors = validate_fields(rule.allowed, payload, compiled.tz, f"of event '{event}'")
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
    values, errors = validate_fields(compiled.fields, data, compiled.tz, f"of '{compiled.process_id}'")
    if errors:
        raise DataValidationError(errors, where=where)
    if forms is not None:
        values[FORMS] = forms
    return values


def _revalidate(compiled: CompiledProcess, before: Mapping[str, Any], data: dict[str, Any],
                where: str, trusted: Mapping[str, Any]) -> dict[str, Any]:
    """`data` after actions ran on a copy of `before`; only what they changed needs checking again.

    The rest was valid when stored, is the payload checked just before, or is `trusted` (still the
    very object the engine put there).
    """
    changed = {k: v for k, v in data.items()
               if k != FORMS and (k not in before or before[k] is not v) and trusted.get(k, _UNCHECKED) is not v}
    if not changed:
        return data
    new_data = dict(data)
    new_data.update(validate_data(compiled, changed, where))
    return new_data


class _Effects:
    """Runs actions against working data, collecting messages and hand-offs."""

    def __init__(self, compiled: CompiledProcess, snap: Snapshot, event: str, data: dict[str, Any],
                 payload: Mapping[str, Any], actor: Actor, now: dt.datetime, services: Services,
                 row_roles: frozenset[str], target: str) -> None:
        self.compiled, self.snap, self.event, self.data = compiled, snap, event, data
        self.payload, self.actor, self.now, self.services = payload, actor, now, services
        self.row_roles, self.target = row_roles, target
        self.outbox = Outbox(compiled.tz)
        self.handoffs: list[ChildPlan] = []
        # Values the engine itself produced in their stored form (coerced constants, `now` of a
        # datetime field): re-validating them after the actions would only repeat the work.
        self.trusted: dict[str, Any] = {}
        self._guard: GuardContext | None = None
        self._action: ActionContext | None = None
        self._now_text: str | None = None

    def guard_ctx(self) -> GuardContext:
        # One per decision: it holds `data` by reference, so conditions after an action see its changes.
        if self._guard is None:
            self._guard = _guard_context(self.compiled, self.snap, self.event, self.data, self.payload, self.actor,
                                         self.now, self.services)
        return self._guard

    def action_ctx(self) -> ActionContext:
        # The guard context's fields plus target and outbox: copied, not rebuilt field by field.
        if self._action is None or self._action.target != self.target:
            ctx = ActionContext.__new__(ActionContext)
            ctx.__dict__.update(self.guard_ctx().__dict__)
            ctx.target, ctx.outbox = self.target, self.outbox
            self._action = ctx
        return self._action

    def now_text(self) -> str:
        if self._now_text is None:
            self._now_text = self.now.astimezone(self.compiled.tz).isoformat()
        return self._now_text

    def value(self, value: Value) -> Any:
        if value.now:
            return self.now_text()
        return evaluate_value(self.compiled, value, self.data, self.actor, self.now, self.services,
                              self.guard_ctx)

    def run(self, actions: list[tuple[str, Action]]) -> None:
        for handler, action in actions:
            if action.when is not None and not self.compiled.whens[id(action)](self.guard_ctx()):
                continue
            getattr(self, handler)(action)

    def do_create_form(self, action: Action, *, new: bool = False) -> None:
        form_id = action.create_form or action.create_new_form
        assert form_id is not None
        form = self.compiled.spec.forms[form_id]
        forms: list[dict[str, Any]] = [dict(r) for r in self.data.get(FORMS) or []]
        fields = to_json_native(dict(self.payload), self.compiled.tz)
        role = sorted(self.actor.roles & self.row_roles) or sorted(self.actor.roles)
        latest = next((r for r in reversed(forms) if r["form"] == form_id), None)
        if latest is not None and not new:
            latest["revision"] += 1
            latest["fields"] = {**latest["fields"], **fields}
            latest["updated_by"] = self.actor.id
            latest["updated_at"] = self.now_text()
        else:
            year = self.now.astimezone(self.compiled.tz).year
            number = self.services.next_number(form.prefix, year, gap_free=form.gap_free)
            forms.append({"form": form_id, "number": f"{form.prefix}-{year}-{number:06d}", "revision": 1,
                          "fields": fields, "created_by": self.actor.id, "role": role[0] if role else None,
                          "created_at": self.now_text()})
        self.data[FORMS] = forms

    def do_create_new_form(self, action: Action) -> None:
        self.do_create_form(action, new=True)

    def do_notify(self, action: Action) -> None:
        spec = self.compiled.spec
        for target in action.notify or ():
            recipients: list[tuple[str, str]]
            if target in spec.role_groups:
                recipients = [("role", r) for r in spec.role_groups[target]]
            elif target == "requester":
                recipients = [("actor", self.snap.started_by or "")]
            elif target in spec.data and not (target in spec.roles or target in self.compiled.spec.roles):
                who = self.data.get(target)
                recipients = [("actor", str(who))] if not is_empty(who) else []
            else:
                recipients = [("role", target)]
            for kind, who in recipients:
                self.outbox.add("notify", to=who, to_kind=kind, channel=action.channel or "message",
                                message=action.message or "", instance=self.snap.id, process=self.snap.process,
                                event=self.event, state=self.target)

    def do_set(self, action: Action) -> None:
        fields = self.compiled.fields
        for name, value in (action.set_ or {}).items():
            spec = fields.get(name)
            if value.has_const and spec is not None:
                stored = self.compiled.const_value(name, value)
                if stored is not _UNCHECKED:
                    self.data[name] = self.trusted[name] = stored
                    continue
            elif value.now and spec is not None and spec.type == "datetime":
                self.data[name] = self.trusted[name] = self.now_text()
                continue
            self.data[name] = self.value(value)

    def do_increment(self, action: Action) -> None:
        name = action.increment
        assert name is not None
        self.data[name] = (typed(self.compiled.fields.get(name), self.data.get(name), self.compiled.tz) or 0) + 1
        self.data[name] = to_json_native(self.data[name], self.compiled.tz)

    def do_clear(self, action: Action) -> None:
        for name in action.clear or ():
            self.data.pop(name, None)

    def do_run(self, action: Action) -> None:
        name = action.run
        assert name is not None
        fn = self.compiled.hooks.action_fn(name)
        ctx = self.action_ctx()
        try:
            fn(ctx)
        except FlowEngineError:
            raise
        except Exception as exc:
            raise HookError(name, "action", self.snap.id, exc) from exc

    def do_start(self, action: Action) -> None:
        assert action.start is not None
        data = {k: self.value(v) for k, v in action.start.data.items()}
        self.handoffs.append(ChildPlan(action.start.process, data))

    def do_outbox(self, action: Action) -> None:
        assert action.outbox is not None
        payload = {k: self.value(v) for k, v in action.outbox.data.items()}
        self.outbox.messages.append(Message(action.outbox.topic, {**payload, "instance": self.snap.id,
                                                                   "process": self.snap.process}))


def evaluate_value(compiled: CompiledProcess, value: Value, data: Mapping[str, Any], actor: Actor,
                   now: dt.datetime, services: Services, guard_ctx: Any) -> Any:
    """A `Value` as stored JSON (mappings, `set`)."""
    tz = compiled.tz
    if value.has_const:
        return value.const
    if value.field is not None:
        raw = data.get(value.field)
        if value.offset is None or is_empty(raw):
            return raw
        from flowengine.durations import parse_duration

        base = typed(compiled.fields.get(value.field), raw, tz)
        if isinstance(base, dt.date) and not isinstance(base, dt.datetime):
            base = dt.datetime.combine(base, dt.time(), tz)
        if services.calendar is None:
            raise FlowEngineError("a working calendar is needed to add working time")
        return to_json_native(parse_duration(value.offset).apply(base, services.calendar), tz)
    if value.param is not None:
        return compiled.spec.parameters.get(value.param)
    if value.now:
        return now.astimezone(tz).isoformat()
    if value.actor:
        return actor.id
    if value.condition is not None:
        evaluator = compiled.conditions.get(value.condition)
        if evaluator is None:
            evaluator = compiled.hooks.predicate(value.condition)
        return bool(_evaluate(value.condition, evaluator, guard_ctx()))
    if value.form_number is not None:
        records = [r for r in data.get(FORMS) or [] if r["form"] == value.form_number]
        return records[-1]["number"] if records else None
    return None  # pragma: no cover - Value validates that one key is set


def plan_timers(compiled: CompiledProcess, source: str | None, target: str, self_loop: bool,
                data: Mapping[str, Any], now: dt.datetime,
                services: Services) -> tuple[frozenset[str], list[TimerPlan]]:
    """Timers to cancel (scopes left) and to schedule (scopes entered), due times from data after actions."""
    if self_loop:
        return frozenset(), []
    cancel, enter = compiled.scope_change(source, target)
    plans = []
    for tid in enter:
        due = due_time(compiled, tid, data, now, now, services)
        if due is not None:
            plans.append(TimerPlan(tid, due))
    return cancel, plans


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


def decide(compiled: CompiledProcess, snap: Snapshot, event: str, payload: Mapping[str, Any], actor: Actor,
           now: dt.datetime, services: Services) -> Decision:
    """Work out one fire without writing anything; raises the refusal errors of §1.1."""
    state = snap.state
    if snap.status != "running":
        raise EventNotAllowed(snap.id, state, event, (), f"can't fire '{event}' on {snap.id}: it is "
                              f"{snap.status} (in '{state}'); no event is allowed")
    rows = compiled.rows.get((state, event))
    if not rows:
        raise EventNotAllowed(snap.id, state, event, compiled.allowed_events(state))
    roles = compiled.event_roles[(state, event)]
    if not roles & actor.roles:
        raise RoleNotAllowed(snap.id, state, event, compiled.allowed_events(state),
                             sorted(actor.roles), sorted(roles))
    values = validate_payload(compiled, state, event, payload)
    data = {**snap.data, **values}
    effects: _Effects | None = None  # built only if a condition, guard or action needs it
    ctx: GuardContext | None = None
    checks: list[GuardCheck] = []
    chosen: CompiledRow | None = None
    for row in rows:
        if row.if_ is None:
            chosen = row
            break
        effects = effects or _Effects(compiled, snap, event, data, values, actor, now, services, roles, state)
        ctx = ctx or effects.guard_ctx()
        result = _evaluate(row.if_text or "if", row.if_, ctx)
        checks.append(GuardCheck(f"if {row.if_text}", bool(result), None))
        if result:
            chosen = row
            break
    if chosen is None:
        raise GuardRejected(snap.id, state, event, compiled.allowed_events(state),
                            " / ".join(r.if_text or "" for r in rows), "no branch condition holds")
    if not chosen.roles & actor.roles:
        raise RoleNotAllowed(snap.id, state, event, compiled.allowed_events(state), sorted(actor.roles),
                             sorted(chosen.roles))
    for name, guard in chosen.guards:
        effects = effects or _Effects(compiled, snap, event, data, values, actor, now, services, roles, state)
        ctx = ctx or effects.guard_ctx()
        result = _evaluate(name, guard, ctx)
        reason = result.reason if isinstance(result, Refusal) else None
        checks.append(GuardCheck(name, bool(result), reason))
        if not result:
            raise GuardRejected(snap.id, state, event, compiled.allowed_events(state), name,
                                reason or f"'{name}' does not hold")
    actions = compiled.actions[chosen.spec_index]
    messages: list[Message] = []
    handoffs: list[ChildPlan] = []
    if actions:
        effects = effects or _Effects(compiled, snap, event, data, values, actor, now, services, roles, state)
        messages, handoffs = effects.outbox.messages, effects.handoffs
        effects.target = chosen.target
        effects.row_roles = chosen.roles
        effects.run(actions)
        new_data = _revalidate(compiled, {**snap.data, **values}, data, f"data after '{event}'", effects.trusted)
    else:
        new_data = data
    cancel, schedule = plan_timers(compiled, state, chosen.target, chosen.self_loop, new_data, now, services)
    decision = Decision(event, state, chosen.target, compiled.status_of(chosen.target), new_data, values, chosen,
                        chosen.self_loop, checks, messages, handoffs,
                        cancel_timers=cancel, schedule=schedule)
    if not chosen.self_loop:
        decision.call = child_plan(compiled, chosen.target, new_data, actor, now, services)
    return decision


def child_plan(compiled: CompiledProcess, state: str, data: Mapping[str, Any], actor: Actor, now: dt.datetime,
               services: Services) -> ChildPlan | None:
    call = compiled.spec.states[state].call
    if call is None:
        return None
    mapped = {k: evaluate_value(compiled, v, data, actor, now, services, lambda: None)
              for k, v in call.data.items()}
    return ChildPlan(call.process, {k: v for k, v in mapped.items() if v is not None})


def decide_start(compiled: CompiledProcess, snap: Snapshot, data: Mapping[str, Any], actor: Actor,
                 now: dt.datetime, services: Services, *, check_role: bool = True) -> Decision:
    """The start of an instance: start data validated, `on_start` actions, initial timers and call."""
    spec = compiled.spec
    if check_role and not actor.roles & (set(spec.start_roles) | {"system"}):
        raise RoleNotAllowed(snap.id, "(not started)", "start", (), sorted(actor.roles), sorted(spec.start_roles))
    values = validate_start(compiled, data)
    working = dict(values)
    effects = _Effects(compiled, snap, "start", working, values, actor, now, services,
                       frozenset(spec.start_roles), spec.initial)
    effects.run(compiled.start_actions)
    new_data = validate_data(compiled, working, "data after on_start")
    _, schedule = plan_timers(compiled, None, spec.initial, False, new_data, now, services)
    decision = Decision("start", None, spec.initial, compiled.status_of(spec.initial), new_data, values,
                        messages=effects.outbox.messages, handoffs=effects.handoffs, schedule=schedule)
    decision.call = child_plan(compiled, spec.initial, new_data, actor, now, services)
    return decision


def decide_escalation(compiled: CompiledProcess, snap: Snapshot, timer_id: str, actor: Actor, now: dt.datetime,
                      services: Services) -> Decision:
    """A timer's escalation: its actions run, the state does not change."""
    data = dict(snap.data)
    effects = _Effects(compiled, snap, f"!{timer_id}", data, {}, actor, now, services, frozenset({"system"}),
                       snap.state)
    effects.run(compiled.timer_actions[timer_id])
    new_data = _revalidate(compiled, snap.data, data, f"data after timer '{timer_id}'", effects.trusted)
    return Decision(f"!{timer_id}", snap.state, snap.state, snap.status, new_data, {}, self_loop=True,
                    messages=effects.outbox.messages, handoffs=effects.handoffs)


def coerce_value(compiled: CompiledProcess, name: str, value: Any) -> Any:
    spec = compiled.fields.get(name)
    if spec is None:
        return value
    try:
        return coerce(spec, value, compiled.tz, name)
    except Invalid as exc:
        raise DataValidationError([str(exc)]) from None
