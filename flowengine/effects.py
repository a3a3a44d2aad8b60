"""Actions compiled to closures once per process version, and the working state they run against.

Every action of a definition becomes one `Op(effects)` when the process is compiled: constants are
coerced, notify recipients resolved, form specs and hooks looked up and `when` conditions bound then,
so a fire only runs the closures. `Effects` is the one working object of a decision, and the context
every hook of it receives: the data being changed, outbox messages and hand-offs.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from flowengine.clock import iso_text
from flowengine.datatypes import Invalid, coerce, is_empty, reader, to_json_native, typed
from flowengine.definition.schema import Action, FieldSpec, Value
from flowengine.errors import FlowEngineError, HookError
from flowengine.hooks import ActionContext, GuardContext, HookRegistry, InstanceLookup, Message, Outbox, Refusal
from flowengine.results import Actor

if TYPE_CHECKING:
    from flowengine.calendar import WorkingCalendar

FORMS = "forms"
Evaluator = Callable[[GuardContext], "bool | Refusal"]
Op = Callable[["Effects"], None]
# What every hook context of one process version shares: process, version, params, fields, tz.
ProcessConstants = tuple[str, int, Mapping[str, Any], Mapping[str, FieldSpec], ZoneInfo]
ValueFn = Callable[["Effects"], Any]
_PER_FIRE: Any = object()


class Services(Protocol):
    @property
    def calendar(self) -> WorkingCalendar | None: ...

    @property
    def instances(self) -> InstanceLookup | None: ...

    def next_number(self, prefix: str, year: int, *, gap_free: bool) -> int: ...


@dataclass(frozen=True, slots=True)
class ChildPlan:
    process: str
    data: dict[str, Any]


def evaluate(name: str, evaluator: Evaluator, ctx: GuardContext) -> bool | Refusal:
    """A guard or condition's verdict; its own exceptions become `HookError` naming it."""
    try:
        result = evaluator(ctx)
    except FlowEngineError:
        raise
    except Exception as exc:
        raise HookError(name, "guard", ctx.instance_id, exc) from exc
    return result if isinstance(result, Refusal) else bool(result)


class Effects(ActionContext, GuardContext):
    """One decision's working state, and the one context its guards, conditions and actions all receive.

    Guards see it as their `GuardContext`, action hooks as their `ActionContext`: one object for both means
    one to build per decision, and conditions after an action see the data it changed. `data` is changed in
    place by the actions. `_trusted` holds values the engine itself produced in their stored form (coerced
    constants, `now` of a datetime field), which the validation after the actions need not repeat.
    """

    _services: Services
    _row_roles: frozenset[str]
    _started_by: str | None
    _trusted: dict[str, Any]
    _messages: list[Message]
    _handoffs: list[ChildPlan]
    _now_text: str | None

    def __init__(self, base: ProcessConstants, instance_id: str, state: str, started_by: str | None, event: str,
                 data: dict[str, Any], payload: Mapping[str, Any], actor: Actor, now: dt.datetime,
                 services: Services, row_roles: frozenset[str], target: str) -> None:
        # Attributes set one by one, always in this order, instead of the dataclasses' keyword __init__:
        # CPython then shares one key table across instances, a fifth of the cost. tests/unit/test_fast_paths.py
        # checks every hook-visible field is set, and equal to what the constructors would make.
        self.process, self.version, self.params, self.fields, self.tz = base
        self.instance_id, self.state, self.event, self.data, self.payload = instance_id, state, event, data, payload
        self.actor, self.now, self.calendar, self.instances = actor, now, services.calendar, services.instances
        self.target = target
        self._services, self._row_roles, self._started_by = services, row_roles, started_by
        self._trusted, self._messages, self._handoffs, self._now_text = {}, [], [], None
        self._outbox: Outbox | None = None

    # Built when a hook first asks for it: most steps only append to `_messages`, which it shares.
    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self.tz, self._messages)
        return self._outbox

    @outbox.setter
    def outbox(self, value: Outbox) -> None:
        self._outbox, self._messages = value, value.messages

    def now_text(self) -> str:
        """`now` as stored: ISO 8601 in the process's zone, formatted once per decision."""
        if self._now_text is None:
            self._now_text = iso_text(self.now, self.tz)
        return self._now_text

    def run(self, ops: tuple[Op, ...]) -> None:
        for op in ops:
            op(self)


class ActionCompiler:
    """Turns a definition's actions and values into closures; `condition` compiles a `when` or names one."""

    def __init__(self, spec: Any, fields: Mapping[str, FieldSpec], tz: ZoneInfo, hooks: HookRegistry,
                 condition: Callable[[Any], Evaluator], reference: Callable[[str], Evaluator]) -> None:
        self.spec, self.fields, self.tz, self.hooks = spec, fields, tz, hooks
        self.condition, self.reference = condition, reference

    def actions(self, actions: list[Action]) -> tuple[Op, ...]:
        return tuple(self.action(a) for a in actions)

    def action(self, action: Action) -> Op:
        op: Op = getattr(self, "_" + action.verb)(action)
        if action.when is None:
            return op
        when, inner = self.condition(action.when), op

        def conditional(e: Effects) -> None:
            if when(e):
                inner(e)
        return conditional

    # --- values ----------------------------------------------------------------------------------

    def value(self, value: Value) -> ValueFn:
        """A `Value` as stored JSON, read at run time from the effects."""
        if value.has_const:
            const = value.const
            if type(const) in (dict, list):
                return lambda e: copy.deepcopy(const)  # a hook may change the stored value in place
            return lambda e: const
        if value.field is not None:
            return self._field_value(value.field, value.offset)
        if value.param is not None:
            param = self.spec.parameters.get(value.param)
            return lambda e: param
        if value.now:
            return lambda e: e.now_text()
        if value.actor:
            return lambda e: e.actor.id
        if value.condition is not None:
            name, evaluator = value.condition, self.reference(value.condition)
            return lambda e: bool(evaluate(name, evaluator, e))
        if value.form_number is not None:
            form = value.form_number

            def number(e: Effects) -> Any:
                records = [r for r in e.data.get(FORMS) or [] if r["form"] == form]
                return records[-1]["number"] if records else None
            return number
        raise AssertionError("Value validates that one key is set")  # pragma: no cover

    def _field_value(self, name: str, offset: str | None) -> ValueFn:
        if offset is None:
            return lambda e: e.data.get(name)
        from flowengine.durations import parse_duration

        duration, spec, tz = parse_duration(offset), self.fields.get(name), self.tz

        def shifted(e: Effects) -> Any:
            raw = e.data.get(name)
            if is_empty(raw):
                return raw
            base = typed(spec, raw, tz)
            if isinstance(base, dt.date) and not isinstance(base, dt.datetime):
                base = dt.datetime.combine(base, dt.time(), tz)
            calendar = e.calendar
            if calendar is None:
                raise FlowEngineError("a working calendar is needed to add working time")
            return to_json_native(duration.apply(base, calendar), tz)
        return shifted

    def mapping(self, values: Mapping[str, Value]) -> Callable[[Effects], dict[str, Any]]:
        fns = tuple((k, self.value(v)) for k, v in values.items())
        return lambda e: {k: fn(e) for k, fn in fns}

    # --- verbs -----------------------------------------------------------------------------------

    def _create_form(self, action: Action) -> Op:
        form_id = action.create_form or action.create_new_form
        assert form_id is not None
        form, tz, new = self.spec.forms[form_id], self.tz, action.create_new_form is not None
        prefix, gap_free = form.prefix, form.gap_free

        def create_form(e: Effects) -> None:
            forms: list[dict[str, Any]] = list(e.data.get(FORMS) or ())
            fields = to_json_native(dict(e.payload), tz)
            at = next((i for i in range(len(forms) - 1, -1, -1) if forms[i]["form"] == form_id), None) \
                if forms and not new else None
            if at is not None:
                latest = forms[at] = dict(forms[at])  # the stored record is not changed in place
                latest["revision"] += 1
                latest["fields"] = {**latest["fields"], **fields}
                latest["updated_by"] = e.actor.id
                latest["updated_at"] = e.now_text()
            else:
                roles = e.actor.roles & e._row_roles or e.actor.roles
                stamp = e.now_text()
                year = int(stamp[:4])  # the year in the process's zone, as the stored stamp shows it
                number = e._services.next_number(prefix, year, gap_free=gap_free)
                forms.append({"form": form_id, "number": f"{prefix}-{year}-{number:06d}", "revision": 1,
                              "fields": fields, "created_by": e.actor.id, "role": min(roles) if roles else None,
                              "created_at": stamp})
            e.data[FORMS] = forms
        return create_form

    _create_new_form = _create_form

    def _notify(self, action: Action) -> Op:
        spec = self.spec
        channel, message, process = action.channel or "message", action.message or "", spec.process
        # Each target resolved now: fixed roles (a group's, or one), or read per fire ("" names which).
        targets: list[tuple[str, list[tuple[str, str]]]] = []
        for target in action.notify or ():
            if target in spec.role_groups:
                targets.append(("", [("role", r) for r in spec.role_groups[target]]))
            elif target == "requester":
                targets.append(("requester", []))
            elif target in spec.data and target not in spec.roles:
                targets.append((target, []))  # a data field naming a person
            else:
                targets.append(("", [("role", target)]))

        def notify(e: Effects) -> None:
            for source, fixed in targets:
                if source == "requester":
                    fixed = [("actor", e._started_by or "")]
                elif source:
                    who = e.data.get(source)
                    fixed = [("actor", str(who))] if not is_empty(who) else []
                for kind, to in fixed:
                    # Every value is text already: what Outbox.add would store, without its conversion pass.
                    e._messages.append(Message("notify", {
                        "to": to, "to_kind": kind, "channel": channel, "message": message,
                        "instance": e.instance_id, "process": process, "event": e.event, "state": e.target}))
        return notify

    def _set(self, action: Action) -> Op:
        assignments: list[tuple[str, str, Any]] = []  # (field, how, what)
        for name, value in (action.set_ or {}).items():
            spec = self.fields.get(name)
            stored = self._stored_const(spec, value, name) if value.has_const and spec is not None else _PER_FIRE
            if stored is not _PER_FIRE:
                assignments.append((name, "trusted", stored))
            elif value.now and spec is not None and spec.type == "datetime":
                assignments.append((name, "now", None))
            else:
                assignments.append((name, "value", self.value(value)))

        def set_(e: Effects) -> None:
            data, trusted = e.data, e._trusted
            for name, how, what in assignments:
                if how == "trusted":
                    data[name] = trusted[name] = what
                elif how == "now":
                    data[name] = trusted[name] = e.now_text()
                else:
                    data[name] = what(e)
        return set_

    def _stored_const(self, spec: FieldSpec, value: Value, name: str) -> Any:
        """A constant in its stored form, or `_PER_FIRE` when it must be checked per fire: it does not fit the
        field (stored as written and refused by the validation after the actions) or is mutable."""
        try:
            stored = coerce(spec, value.const, self.tz, name)
        except Invalid:
            return _PER_FIRE
        return stored if type(stored) in (str, int, float, bool, type(None)) else _PER_FIRE

    def _increment(self, action: Action) -> Op:
        name = action.increment
        assert name is not None
        read, tz = reader(self.fields.get(name), self.tz), self.tz

        def increment(e: Effects) -> None:
            e.data[name] = to_json_native((read(e.data.get(name)) or 0) + 1, tz)
        return increment

    def _clear(self, action: Action) -> Op:
        names = tuple(action.clear or ())

        def clear(e: Effects) -> None:
            for name in names:
                e.data.pop(name, None)
        return clear

    def _run(self, action: Action) -> Op:
        name = action.run
        assert name is not None
        try:
            fn = self.hooks.action_fn(name)
        except KeyError:
            # The compiler reports every unregistered action as a problem and refuses the definition;
            # this op is never run.
            def fn(ctx: ActionContext) -> None:
                raise FlowEngineError(f"action '{name}' is not registered")

        def run(e: Effects) -> None:
            try:
                fn(e)
            except FlowEngineError:
                raise
            except Exception as exc:
                raise HookError(name, "action", e.instance_id, exc) from exc
        return run

    def _start(self, action: Action) -> Op:
        assert action.start is not None
        process, data = action.start.process, self.mapping(action.start.data)
        return lambda e: e._handoffs.append(ChildPlan(process, data(e)))

    def _outbox(self, action: Action) -> Op:
        assert action.outbox is not None
        topic, data, process = action.outbox.topic, self.mapping(action.outbox.data), self.spec.process
        return lambda e: e._messages.append(Message(topic, {**data(e), "instance": e.instance_id,
                                                           "process": process}))
